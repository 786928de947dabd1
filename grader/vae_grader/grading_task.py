"""What one grading task carries to a worker and what it brings back, as plain bytes and numbers.

Workers share no file system with the coordinator (a Slurm node, a Kubernetes pod): a task holds
everything nbgrader needs to grade one student (the course configuration, the master and release
of the assignment, the student's submitted files) and the result holds everything the coordinator
writes (the autograded files and the gradebook record the worker's own nbgrader produced). Both
are frozen dataclasses of bytes, strings and numbers, so Dask sends them as they are.
"""

from __future__ import annotations

import hashlib
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
    submission: dict[str, bytes]


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
