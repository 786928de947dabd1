"""What one grading task carries to a worker and what it brings back, as plain bytes and numbers.

Workers share no file system with the coordinator (a Slurm node, a Kubernetes pod): a task holds
everything nbgrader needs to grade one student (the course configuration, the master and release
of the assignment, the student's submitted files) and the result holds everything the coordinator
writes (the autograded files and the gradebook record the worker's own nbgrader produced). Both
are frozen dataclasses of bytes, strings and numbers, so Dask sends them as they are.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from vae_grader.paths import ASSIGNMENT

COURSE_FILES = ("nbgrader_config.py",)
COURSE_FOLDERS = ("source", "release")


def read_tree(folder: Path) -> dict[str, bytes]:
    """relative path -> bytes of every regular file under ``folder`` (links are not followed:
    nbgrader's intake refuses them, and the worker must see the folder as the coordinator does)."""
    files: dict[str, bytes] = {}
    if not folder.is_dir():
        return files
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            files[path.relative_to(folder).as_posix()] = path.read_bytes()
    return files


@dataclass(frozen=True)
class NotAFile:
    """An entry of a submission folder that is not a plain file (:func:`vae_grader.preprocessors.intake.not_plain`).

    Carried by its kind and, for a symbolic link, the text of its target, never by what it leads to:
    that may be the master, another student's notebook or the gradebook. The worker makes the same
    kind of entry again (:func:`write_submission`), so that its intake refuses it with the same note
    as it would in the central course."""

    what: str
    target: str = ""


def read_submission(folder: Path) -> dict[str, bytes | NotAFile]:
    """relative path -> bytes of every plain file under ``folder``, or what the entry is otherwise.

    Looks with lstat only and opens nothing but plain files with one name; ``"."`` names the folder
    itself (or the student's folder above it) when it is a link."""
    from vae_grader.preprocessors.intake import not_plain

    entries: dict[str, bytes | NotAFile] = {}
    for level in (folder.parent, folder):
        try:
            st = os.lstat(level)
        except FileNotFoundError:
            return entries
        if stat.S_ISLNK(st.st_mode):
            return {".": NotAFile("a symbolic link", os.readlink(level))}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for entry in sorted(dirnames + filenames):
            full = os.path.join(dirpath, entry)
            relative = Path(os.path.relpath(full, folder)).as_posix()
            st = os.lstat(full)
            what = not_plain(st)
            if what:
                link = os.readlink(full) if what == "a symbolic link" else ""
                entries[relative] = NotAFile(what, link)
                if entry in dirnames:
                    dirnames.remove(entry)
            elif stat.S_ISREG(st.st_mode):
                descriptor = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                with os.fdopen(descriptor, "rb") as handle:
                    entries[relative] = handle.read()
    return entries


def write_submission(folder: Path, entries: dict[str, bytes | NotAFile], partners: Path) -> None:
    """Make the entries of :func:`read_submission` again under ``folder``.

    A link becomes a link with the same target text, a pipe a pipe, a socket a socket; a hard link
    becomes an empty file with a second name in ``partners`` (outside the submission); a device, which
    only root may make, a pipe. Nothing made here is followed or opened."""
    import socket

    whole = entries.get(".")
    if isinstance(whole, NotAFile):
        folder.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(whole.target, folder)
        return
    folder.mkdir(parents=True, exist_ok=True)
    for name, item in entries.items():
        parts = Path(name).parts
        if Path(name).is_absolute() or ".." in parts or not parts:
            raise ValueError(f"{name!r} would be written outside {folder}")
        target = folder.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(item, bytes):
            target.write_bytes(item)
        elif item.what == "a symbolic link":
            os.symlink(item.target, target)
        elif item.what == "a hard link":
            target.write_bytes(b"")
            partners.mkdir(parents=True, exist_ok=True)
            os.link(target, partners / f"{len(os.listdir(partners))}")
        elif item.what == "a socket":
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.bind(str(target))
            except OSError:  # a path too long for a socket's address: a pipe is refused alike
                os.mkfifo(target)
        else:
            os.mkfifo(target)


def write_tree(folder: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (from :func:`read_tree`) under ``folder``; refuse a path that leaves it."""
    folder.mkdir(parents=True, exist_ok=True)
    base = folder.resolve()
    for name, content in files.items():
        target = (folder / name).resolve()
        if base not in target.parents:
            raise ValueError(f"{name!r} would be written outside {folder}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


@dataclass(frozen=True)
class CourseBundle:
    """The course as a worker needs it: configuration, master and release of the assignment."""

    files: dict[str, bytes]
    digest: str
    """sha256 of the files and the due date: a worker keeps one prepared scratch course per digest."""
    duedate: str | None = None
    """The assignment's due date in the central gradebook (``nbgrader db assignment add --duedate``):
    it lives in no file, and nbgrader's late-submission plugins read it from the worker's gradebook."""

    @classmethod
    def of(cls, root: Path, duedate: str | None = None) -> CourseBundle:
        files = {name: (root / name).read_bytes() for name in COURSE_FILES}
        for folder in COURSE_FOLDERS:
            tree = read_tree(root / folder / ASSIGNMENT)
            files.update({f"{folder}/{ASSIGNMENT}/{name}": data for name, data in tree.items()})
        digest = hashlib.sha256()
        for name in sorted(files):
            digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
        digest.update(f"duedate={duedate}".encode())
        return cls(files=files, digest=digest.hexdigest()[:16], duedate=duedate)


@dataclass(frozen=True)
class GradingTask:
    """One student to grade: the course and the files of ``submitted/<student>/<assignment>/``."""

    student: str
    course: CourseBundle
    submission: dict[str, bytes | NotAFile]
    """From :func:`read_submission`: plain files by content, every other entry by its kind."""


@dataclass(frozen=True)
class GradeRecord:
    """One graded cell as nbgrader's ``SaveAutoGrades`` and the course's plugins left it."""

    notebook: str
    cell: str
    auto_score: float | None
    manual_score: float | None
    extra_credit: float | None
    needs_manual_grade: bool


@dataclass(frozen=True)
class CommentRecord:
    notebook: str
    cell: str
    auto_comment: str | None
    manual_comment: str | None


@dataclass(frozen=True)
class NotebookRecord:
    notebook: str
    flagged: bool
    late_submission_penalty: float | None


@dataclass(frozen=True)
class GradedSubmission:
    """What a worker returns: nbgrader's outcome for one student, ready for the central gradebook."""

    student: str
    ok: bool
    """nbgrader autograde exited 0."""
    summary: str
    """One line: the telling line of nbgrader's log when it failed, else empty."""
    seconds: float
    """Wall seconds of the worker's ``nbgrader autograde`` for this student."""
    worker: str
    recorded: bool = False
    """The worker's gradebook holds a submission for the student (nbgrader got that far)."""
    timestamp: str | None = None
    notebooks: tuple[NotebookRecord, ...] = ()
    grades: tuple[GradeRecord, ...] = ()
    comments: tuple[CommentRecord, ...] = ()
    autograded: dict[str, bytes] = field(default_factory=dict)
    """relative path -> bytes of ``autograded/<student>/<assignment>/``."""
    log: str = ""
    """nbgrader's log of this student, kept beside the central course's other logs."""
    cell_seconds: float | None = None
    """Seconds the student's own cells ran (from the autograded notebook), for the overhead figure."""

    @property
    def scores(self) -> dict[str, float]:
        return {
            g.cell: float(g.manual_score if g.manual_score is not None else g.auto_score or 0.0)
            for g in self.grades
        }
