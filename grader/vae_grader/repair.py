"""Reading a submission as far as it can be read, and putting its cells back in order before grading.

nbgrader 0.9.6 assumes the student kept the notebook's nbgrader cells as handed out. Measured:
a copy-pasted solution cell (it carries the cell's metadata) fails the whole submission with a
misleading "run nbgrader update" error; a deleted test cell silently scores 0 and is flagged for
manual grading; a file that is not JSON, or a notebook under another name, stops ``autograde``
for that student with a traceback and no feedback at all. This module, wired in through
``nbgrader_config.py``, makes every such submission gradable and tells the student what was done:

* :func:`intake_hook` (``Autograde.pre_convert_hook``, before nbgrader reads or copies anything)
  removes every entry of the submission folder that is not a plain file: symbolic links (a
  notebook linked to the master graded the master), named pipes, devices, sockets, hard links
  (issue 10). A notebook that was one is graded as an empty notebook, with a note. It also finds
  a notebook submitted under another name (``VAE (1).ipynb``) and grades it as ``vae.ipynb``.
* :class:`TolerantNotebookExporter` reads the submitted file, never through a link
  (:func:`read_plain_file`). A file that is not a notebook (bad JSON, wrong structure, too
  large) becomes an empty notebook with a note, so the student gets a feedback page that says
  why they scored 0; cells with a broken structure are salvaged.
* :class:`RepairSubmission` (first sanitize step) rebuilds the notebook's graded structure from
  the gradebook: every locked cell (set-up, tests) exactly once, in the assignment's order, with
  its original source; each solution cell identified by its content as well as its metadata (so
  swapped ``grade_id`` s, a cell re-typed without metadata and copy-pasted duplicates all grade
  as what they are); metadata (points, grade flags) from the gradebook. Missing solution cells
  come back as the unanswered stub, so they earn nothing, never more. The student's own extra
  cells stay where they were, relative to the graded cells.
* :func:`scan_source` looks for code that tampers with the grading tools (``checks.expect = ...``,
  ``np.testing...`` assignments, ``builtins``, IPython hooks) or with processes (``os.kill``); the
  executor (``vae_grader.robust_execute``) also detects tampering at run time.

Notes for the student travel in the notebook's metadata (``vae_grading``) and are rendered at the
top of the autograded notebook, so they appear in the feedback page.
"""

from __future__ import annotations

import ast
import copy
import json
import logging
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbconvert.exporters import NotebookExporter
from nbformat.notebooknode import NotebookNode, from_dict
from nbgrader.api import Gradebook
from nbgrader.preprocessors import NbGraderPreprocessor

log = logging.getLogger(__name__)

METADATA_KEY = "vae_grading"
MAX_NOTEBOOK_BYTES = 50 * 2**20
"""A submitted file larger than this is not read (the master notebook is ~60 kB; outputs add a few MB)."""
STUB_LINES = {"# YOUR CODE HERE", "raise NotImplementedError()", "raise NotImplementedError"}
SOLUTION_MATCH = 0.5
"""Share of a solution cell's template lines (the code around ``# YOUR CODE HERE``) a cell must contain to be that cell."""
LOCKED_COPY_MATCH = 0.8
"""An untagged cell holding this share of a locked cell's lines is a copy of it (a re-typed test)."""


# --- notes --------------------------------------------------------------------------------------------


def add_note(nb: NotebookNode, text: str, *, cell: str | None = None, flag: str | None = None) -> None:
    """Record a note for the student (``flag``: a reason the instructor must look at ``cell``)."""
    state = nb.metadata.setdefault(METADATA_KEY, {})
    notes = state.setdefault("notes", [])
    entry = {"text": text, "cell": cell}
    if entry not in notes:
        notes.append(entry)
    if flag:
        state.setdefault("flags", {}).setdefault(cell or "*", [])
        if flag not in state["flags"][cell or "*"]:
            state["flags"][cell or "*"].append(flag)


def notes_of(nb: NotebookNode) -> list[dict]:
    return list(nb.metadata.get(METADATA_KEY, {}).get("notes", []))


def flags_of(nb: NotebookNode) -> dict[str, list[str]]:
    return dict(nb.metadata.get(METADATA_KEY, {}).get("flags", {}))


# --- reading the submitted file -----------------------------------------------------------------------
#
# Only plain files are read. nbgrader 0.9.6 reads the submitted notebook with open() and, before any
# preprocessor runs, copies every other file of submitted/<student>/<assignment>/ into autograded/
# with shutil.copy (BaseConverter.init_assignment): both follow symbolic links, so a notebook that
# is a link to ../../../source/vae/vae.ipynb graded the master, and a link to the gradebook or to a
# file under /root was copied next to the graded notebook; a named pipe or a device file blocks the
# copy. The intake below looks at every entry with lstat (never through a link) and refuses what is
# not a plain file; the notebook itself is opened with O_NOFOLLOW.


class NotPlainFile(Exception):
    """A submitted entry that is not a plain file (``what`` is a phrase: "a symbolic link")."""

    def __init__(self, relpath: str, what: str) -> None:
        super().__init__(f"{relpath} was {what}")
        self.relpath = relpath
        self.what = what

    def sentence(self, graded: str) -> str:
        """One sentence for the student; ``graded`` says what became of the entry."""
        if self.relpath == ".":
            return (f"Your submission folder was {self.what}, not a folder; links are not followed, so nothing "
                    f"in it was read and it {graded}.")
        why = {"a symbolic link": "links are not followed",
               "a hard link": "a file with a second name elsewhere is not read"}.get(self.what, "only plain files are read")
        return f"{self.relpath} was {self.what}, not a file; {why}, so it {graded}."


GRADED_AS_MISSING = "was graded as missing"
LEFT_OUT = "was left out of grading"


def not_plain(st: os.stat_result) -> str | None:
    """What an entry is when it is not a plain file or folder (from ``lstat``), else None.

    A regular file with more than one name (``st_nlink > 1``) is a hard link: its other name may be
    the gradebook or another student's notebook, and nothing here can tell where it lives.
    """
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return None
    if stat.S_ISREG(mode):
        return "a hard link" if st.st_nlink > 1 else None
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


def read_plain_file(path: str, limit: int, beneath: str | None = None) -> bytes:
    """The bytes of ``path``, refusing links, special files and hard links on the way.

    Every folder between ``beneath`` (trusted, e.g. the course's ``submitted/``) and the file is
    opened with O_NOFOLLOW, and so is the file itself, so no component is ever resolved through a
    link. The file is inspected with lstat before it is opened (opening a device can have effects)
    and again with fstat after (the same inode, still plain). Raises :class:`NotPlainFile`,
    ``OSError`` or ``ValueError`` (larger than ``limit``).
    """
    path = os.path.abspath(path)
    start = os.path.abspath(beneath) if beneath else os.path.dirname(path)
    rel = os.path.relpath(path, start)
    if rel.startswith(os.pardir) or os.path.isabs(rel):
        start, rel = os.path.dirname(path), os.path.basename(path)
    *folders, name = rel.split(os.sep)
    nofollow = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    dir_fd = os.open(start, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for folder in folders:
            st = os.stat(folder, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                raise NotPlainFile(".", not_plain(st) or "not a folder")
            inner = os.open(folder, nofollow | os.O_DIRECTORY, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = inner
        before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        what = "a folder" if stat.S_ISDIR(before.st_mode) else not_plain(before)
        if what:
            raise NotPlainFile(name, what)
        fd = os.open(name, nofollow | os.O_NONBLOCK, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "rb") as handle:
        after = os.fstat(fd)
        if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino) or not_plain(after):
            raise NotPlainFile(name, not_plain(after) or "replaced while it was read")
        if after.st_size > limit:
            raise ValueError(f"it is {after.st_size / 2**20:.0f} MB, more than the {limit // 2**20} MB a notebook may have")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"it is more than the {limit // 2**20} MB a notebook may have")
    return data


class SubmittedNotebook(str):
    """A path in nbgrader's own notebook list that carries what intake found to the exporter.

    :func:`intake_hook` replaces the entries of the list nbgrader hands it with these, and nbgrader
    passes each entry unchanged to ``exporter.from_filename``, so the notes reach the notebook's
    metadata (:func:`add_note`) without state shared between students. ``read_from`` is the file to
    read (another name for an aliased notebook) or None when there is nothing to read.
    """

    read_from: str | None
    notes: tuple[tuple[str, str | None], ...]

    def __new__(cls, path: str, read_from: str | None, notes: Iterable[tuple[str, str | None]] = ()) -> "SubmittedNotebook":
        entry = super().__new__(cls, path)
        entry.read_from = read_from
        entry.notes = tuple(notes)
        return entry


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def salvage(raw: object) -> tuple[NotebookNode, list[str]]:
    """A valid v4 notebook from whatever JSON was submitted, and what had to be dropped."""
    problems: list[str] = []
    nb = nbformat.v4.new_notebook()
    if not isinstance(raw, dict):
        return nb, ["the file holds JSON but not a notebook (no cell list)"]
    cells = raw.get("cells")
    if not isinstance(cells, list):
        return nb, ["the file holds JSON but not a notebook (no cell list)"]
    metadata = raw.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("kernelspec"), dict):
        nb.metadata["kernelspec"] = from_dict(metadata["kernelspec"])
    dropped = 0
    for item in cells:
        if not isinstance(item, dict) or item.get("cell_type") not in ("code", "markdown", "raw"):
            dropped += 1
            continue
        source = item.get("source", "")
        if isinstance(source, list) and all(isinstance(s, str) for s in source):
            source = "".join(source)
        if not isinstance(source, str):
            dropped += 1
            continue
        cell_metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
        kind = item["cell_type"]
        maker = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell, "raw": nbformat.v4.new_raw_cell}[kind]
        cell = maker(source=source)
        cell.metadata = from_dict(copy.deepcopy(cell_metadata))
        nb.cells.append(cell)
    if dropped:
        problems.append(f"{dropped} cell(s) had a broken structure and were left out")
    return nb, problems


def load_submission(path: str, beneath: str | None = None) -> NotebookNode:
    """The submitted notebook, or an empty one with a note that says why it could not be read.

    ``path`` may be a :class:`SubmittedNotebook` (what :func:`intake_hook` put in nbgrader's list);
    ``beneath`` is the trusted folder below which no component of the path may be a link.
    """
    actual = getattr(path, "read_from", path)
    notes: list[tuple[str, str | None]] = list(getattr(path, "notes", ()))
    nb: NotebookNode | None = None
    if actual is not None:
        name = os.path.basename(actual)
        try:
            data = read_plain_file(actual, MAX_NOTEBOOK_BYTES, beneath)
            text = data.decode("utf-8")
            if not text.strip():
                raise ValueError("the file is empty (0 bytes of JSON)")
            raw = json.loads(text)
        except NotPlainFile as exc:
            notes.append((exc.sentence(GRADED_AS_MISSING), f"the submitted notebook was {exc.what}"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            reason = f"line {exc.lineno}, column {exc.colno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else _first_line(exc)
            notes.append((f"Your file {name} could not be read as a notebook ({reason}), so nothing in it could be "
                          "graded and every part scores 0. Open it in Jupyter, save it again and resubmit.",
                          "the submitted file is not a readable notebook"))
        else:
            nb, problems = salvage(raw)
            for problem in problems:
                notes.append((f"Your file {name}: {problem}.", None))
    if nb is None:
        nb = nbformat.v4.new_notebook()
    nb.metadata.pop(METADATA_KEY, None)  # never trust grading notes a student wrote
    for text, flag in notes:
        add_note(nb, text, flag=flag)
    return nb


class TolerantNotebookExporter(NotebookExporter):
    """nbgrader's notebook exporter, but a submission it cannot parse still becomes a (noted) notebook."""

    def from_filename(self, filename, resources=None, **kw):
        if not getattr(self.parent, "_sanitizing", False):
            return super().from_filename(filename, resources=resources, **kw)
        if resources is None:
            resources = {}
        resources.setdefault("metadata", {})
        path, basename = os.path.split(filename)
        resources["metadata"]["name"] = os.path.splitext(basename)[0]
        resources["metadata"]["path"] = path
        return self.from_notebook_node(load_submission(filename, self._submitted_root()), resources=resources, **kw)

    def _submitted_root(self) -> str | None:
        """``submitted/`` of the course: the folders below it are the students' and may be links."""
        coursedir = getattr(self.parent, "coursedir", None)
        try:
            return os.path.normpath(coursedir.format_path(coursedir.submitted_directory, ".", "."))
        except Exception:  # not run by nbgrader (a test, a script): only the file itself is checked
            return None


def refuse_entries(folder: Path) -> list[NotPlainFile]:
    """Find and remove every entry of a submission folder that is not a plain file or folder.

    Entries are looked at with lstat only; nothing is opened. They are removed because nbgrader
    copies the folder right after the pre-convert hook (``BaseConverter.init_assignment``, which
    follows links and blocks on pipes), and a hook gets no handle on the converter to make it skip
    them. Removing loses nothing of the student's: a link, pipe, device or socket holds no content
    of its own, and a hard link's content stays under its other name. When the folder itself (or
    the student's folder above it) is a link, the link is removed, never anything behind it.
    Raises SystemExit with one line when an entry cannot be removed: nbgrader swallows a hook's
    exceptions and would then follow it.
    """
    refused: list[NotPlainFile] = []
    for level in (folder.parent, folder):
        try:
            st = os.lstat(level)
        except FileNotFoundError:
            return refused
        if stat.S_ISLNK(st.st_mode):
            _remove(level, os.readlink(level))
            return [NotPlainFile(".", "a symbolic link")]
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for entry in sorted(dirnames + filenames):
            full = os.path.join(dirpath, entry)
            try:
                what = not_plain(os.lstat(full))
            except FileNotFoundError:
                continue
            if what:
                _remove(Path(full), os.readlink(full) if what == "a symbolic link" else what)
                refused.append(NotPlainFile(os.path.relpath(full, folder), what))
                if entry in dirnames:
                    dirnames.remove(entry)
    return refused


def _remove(path: Path, what: str) -> None:
    try:
        os.unlink(path)
    except OSError as exc:
        raise SystemExit(f"vae_grader intake: cannot remove {path} ({exc.strerror}); nbgrader would follow it, "
                         "so grading stops here. Remove it by hand and grade again.") from None
    log.warning("Refused %s (%s) before grading", path, what)


def intake_hook(assignment: str = "", student: str = "", notebooks: list[str] | None = None, **_: object) -> None:
    """``Autograde.pre_convert_hook``: make a submission safe to read, and find its notebook.

    ``notebooks`` is nbgrader's own list for this submission (``submitted/<student>/<assignment>/*.ipynb``)
    and is changed in place; its entries become :class:`SubmittedNotebook` s carrying the notes.

    1. Every entry that is not a plain file is removed (:func:`refuse_entries`); a notebook that was
       one is graded as an empty notebook with a note, never as what it pointed to.
    2. With exactly one expected notebook missing and exactly one unexpected notebook present, that
       one is graded in its place; with none (or several) the expected name is graded as an empty
       notebook that explains what was found, so the student still gets feedback.
    """
    if not notebooks:
        return
    folder = Path(notebooks[0]).parent
    try:
        refused = refuse_entries(folder)
    except OSError as exc:  # nbgrader would log this at INFO level and go on to copy what was not checked
        raise SystemExit(f"vae_grader intake: cannot check {folder} ({exc.strerror or exc}); "
                         "grading stops here rather than read it unchecked.") from None
    whole = any(r.relpath == "." for r in refused)
    by_name = {r.relpath: r for r in refused}
    common = [(r.sentence(LEFT_OUT), None) for r in refused if not r.relpath.endswith(".ipynb") and r.relpath != "."]
    entries: dict[str, SubmittedNotebook] = {}
    for path in notebooks:
        name = os.path.basename(path)
        refusal = by_name.get(".") if whole else by_name.get(name)
        if refusal is not None:
            entries[Path(path).stem] = SubmittedNotebook(
                path, None, [(refusal.sentence(GRADED_AS_MISSING), f"the submitted notebook was {refusal.what}")])
        else:
            entries[Path(path).stem] = SubmittedNotebook(path, path)

    root = folder.parents[2] if len(folder.parents) > 2 else folder
    expected = sorted(p.stem for p in (root / "source" / folder.name).glob("*.ipynb"))
    readable = {stem for stem, entry in entries.items() if entry.read_from is not None}
    missing = [name for name in expected if name not in readable]
    extra = [stem for stem in readable if stem not in expected and not stem.startswith(".")]
    for name in missing:
        nominal = str(folder / f"{name}.ipynb")
        refused_notes = entries[name].notes if name in entries else ()
        if len(missing) == 1 and len(extra) == 1:
            found = entries.pop(extra[0])
            note = (f"Your notebook was submitted as {os.path.basename(found)}, not {name}.ipynb; "
                    f"it was graded as {name}.ipynb.", None)
            entries[name] = SubmittedNotebook(nominal, found.read_from, (*refused_notes, note))
        elif name not in entries:
            listing = ", ".join(os.path.basename(entries[stem]) for stem in sorted(extra)) or "no notebook at all"
            entries[name] = SubmittedNotebook(nominal, None, [
                (f"No {name}.ipynb was submitted (found: {listing}), so every part of it scores 0.", "the notebook was missing")])
    notebooks[:] = [SubmittedNotebook(entry, entry.read_from, (*entry.notes, *common)) for entry in entries.values()]


# --- the graded structure, from the gradebook ----------------------------------------------------------


@dataclass(frozen=True)
class Canonical:
    """One nbgrader cell as the gradebook knows it."""

    name: str
    cell_type: str
    locked: bool
    grade: bool
    solution: bool
    points: float | None
    checksum: str | None
    source: str

    def metadata(self) -> dict:
        meta = {"grade": self.grade, "grade_id": self.name, "locked": self.locked, "schema_version": 3,
                "solution": self.solution}
        if self.grade:
            meta["points"] = self.points
        if self.checksum:
            meta["checksum"] = self.checksum
        return meta

    def template(self) -> set[str]:
        """The stripped lines of the handed-out cell that are not the stub a student replaces."""
        return {line.strip() for line in self.source.splitlines() if line.strip() and line.strip() not in STUB_LINES}


def canonical_cells(db_url: str, notebook_id: str, assignment_id: str, master: Path | None = None) -> list[Canonical]:
    """The assignment's nbgrader cells in notebook order (order taken from the master when readable)."""
    with Gradebook(db_url) as gb:
        notebook = gb.find_notebook(notebook_id, assignment_id)
        points = {cell.name: float(cell.max_score) for cell in notebook.grade_cells}
        solutions = {cell.name for cell in notebook.solution_cells}
        cells = [
            Canonical(name=cell.name, cell_type=cell.cell_type, locked=bool(cell.locked), grade=cell.name in points,
                      solution=cell.name in solutions, points=points.get(cell.name), checksum=cell.checksum,
                      source=cell.source)
            for cell in notebook.source_cells
        ]
    if master is not None and master.is_file():
        try:
            order = [c.metadata["nbgrader"]["grade_id"] for c in nbformat.read(master, as_version=4).cells
                     if isinstance(c.metadata.get("nbgrader"), dict) and "grade_id" in c.metadata["nbgrader"]]
        except Exception:  # the master is the instructor's; if unreadable, keep the gradebook's order
            order = []
        rank = {name: i for i, name in enumerate(order)}
        cells.sort(key=lambda c: rank.get(c.name, len(rank)))
    return cells


def _lines(source: str) -> set[str]:
    return {line.strip() for line in source.splitlines() if line.strip()}


def _visible_lines(source: str) -> set[str]:
    """The lines a student saw of a locked cell: hidden-test regions are not in the release."""
    lines, hidden = set(), False
    for line in source.splitlines():
        text = line.strip()
        if "BEGIN HIDDEN TESTS" in text:
            hidden = True
        elif "END HIDDEN TESTS" in text:
            hidden = False
        elif text and not hidden:
            lines.add(text)
    return lines


def _share(needles: set[str], haystack: set[str]) -> float:
    return len(needles & haystack) / len(needles) if needles else 0.0


def _metadata_changed(cell: NotebookNode, canonical: Canonical) -> bool:
    meta = cell.metadata.get("nbgrader")
    if not isinstance(meta, dict):
        return False
    want = canonical.metadata()
    for key in ("grade", "solution", "locked"):
        if bool(meta.get(key, False)) != bool(want[key]):
            return True
    if canonical.grade:
        try:
            return float(meta.get("points", -1)) != float(canonical.points or 0)
        except (TypeError, ValueError):
            return True
    return "points" in meta and meta.get("points") not in (None, 0, 0.0)


def _claimed_id(cell: NotebookNode) -> str | None:
    meta = cell.metadata.get("nbgrader")
    if isinstance(meta, dict) and isinstance(meta.get("grade_id"), str):
        return meta["grade_id"]
    return None


def repair(nb: NotebookNode, canon: list[Canonical]) -> NotebookNode:
    """Rebuild ``nb``'s graded structure (see the module docstring); notes go into its metadata."""
    by_name = {c.name: c for c in canon}
    locked = [c for c in canon if c.locked]
    solutions = [c for c in canon if c.solution and not c.locked]
    templates = {c.name: c.template() for c in solutions}
    locked_lines = {c.name: _visible_lines(c.source) for c in locked}

    def looks_like_solution(lines: set[str]) -> bool:
        return any(_share(t, lines) >= SOLUTION_MATCH for t in templates.values())

    # 1. What is each submitted cell? A cell tagged as a locked cell is that cell (whatever was
    #    edited in it), unless it holds a solution cell's code (grade_ids swapped). An untagged (or
    #    mis-tagged) cell that holds most of a locked cell's lines is that cell, or a copy of it.
    role: dict[int, tuple[str, str]] = {}  # index -> ("locked", name) | ("copy", name)
    for i, cell in enumerate(nb.cells):
        claimed = _claimed_id(cell)
        if claimed in locked_lines and not looks_like_solution(_lines(cell.source)):
            role[i] = ("locked", claimed)
    for i, cell in enumerate(nb.cells):
        lines = _lines(cell.source)
        if i in role or cell.cell_type != "code" or not lines or looks_like_solution(lines):
            continue
        best = max(locked_lines, key=lambda name: _share(locked_lines[name], lines), default=None)
        if best is not None and _share(locked_lines[best], lines) >= LOCKED_COPY_MATCH:
            taken_locked = {name for kind, name in role.values() if kind == "locked"}
            role[i] = ("copy", best) if best in taken_locked else ("locked", best)
    candidates = [i for i, cell in enumerate(nb.cells) if i not in role and cell.cell_type in ("code", "markdown", "raw")]
    score = {(i, s): _share(templates[s], _lines(nb.cells[i].source)) for i in candidates for s in templates}

    # 2. Which cell answers each solution cell? Content first, then the metadata claim.
    assigned: dict[str, int] = {}
    for s in templates:
        claimed = [i for i in candidates if _claimed_id(nb.cells[i]) == s and score[(i, s)] >= SOLUTION_MATCH
                   and score[(i, s)] >= max(score[(i, other)] for other in templates)]
        if claimed:
            assigned[s] = claimed[-1]  # the last copy is the one whose definitions win when run
    taken = set(assigned.values())
    for s in templates:
        if s in assigned:
            continue
        free = [i for i in candidates if i not in taken and score[(i, s)] >= SOLUTION_MATCH
                and score[(i, s)] >= max(score[(i, other)] for other in templates)]
        if free:
            assigned[s] = max(free, key=lambda i: (score[(i, s)], i))
            taken.add(assigned[s])
    for s in templates:
        if s in assigned:
            continue
        claimed = [i for i in candidates if i not in taken and _claimed_id(nb.cells[i]) == s]
        if claimed:
            assigned[s] = claimed[-1]
            taken.add(assigned[s])

    # 3. Notes on what was found.
    seen_locked: dict[str, int] = {}
    for i, (kind, name) in sorted(role.items()):
        if kind == "copy":
            add_note(nb, f"A copy of the cell {name} was removed before grading (the original is graded once).", cell=name)
            continue
        seen_locked[name] = seen_locked.get(name, 0) + 1
        claimed = _claimed_id(nb.cells[i])
        if claimed != name:
            how = f"was tagged as {claimed}" if claimed else "had lost its grading tag"
            add_note(nb, f"The cell {name} {how}; it was recognised by its content and graded as {name}.", cell=name)
        elif _lines(nb.cells[i].source) != locked_lines[name] and nb.cells[i].source.strip() != by_name[name].source.strip():
            add_note(nb, f"The locked cell {name} had been edited; it was graded as handed out.", cell=name)
    for name, count in seen_locked.items():
        if count > 1:
            add_note(nb, f"The cell {name} appeared {count} times; it was graded once.", cell=name)
    for i, (kind, name) in sorted(role.items()):
        if kind == "locked" and _metadata_changed(nb.cells[i], by_name[name]):
            add_note(nb, f"The grading metadata of the cell {name} (points or grade flags) had been changed; "
                         "it was graded with the original metadata.", cell=name)
    for s, i in assigned.items():
        claimed = _claimed_id(nb.cells[i])
        if claimed != s:
            how = f"was tagged as {claimed}" if claimed else "had lost its grading tag"
            add_note(nb, f"The cell that answers {s} {how}; it was recognised by its content and graded as {s}.", cell=s)
        elif _metadata_changed(nb.cells[i], by_name[s]):
            add_note(nb, f"The grading metadata of the cell {s} had been changed; it was graded with the original metadata.", cell=s)
    for i in candidates:
        claimed = _claimed_id(nb.cells[i])
        if claimed in templates and assigned.get(claimed) != i and i not in taken:
            add_note(nb, f"Your notebook had more than one {claimed} cell (a copy of the cell); the last one is graded, "
                         "the others run as ordinary cells.", cell=claimed)
    missing_tests = [c.name for c in locked if c.name not in seen_locked]
    missing_answers = [s for s in templates if s not in assigned]
    if not seen_locked and not assigned:
        add_note(nb, "Your notebook contained none of the assignment's cells; they were put back unanswered, "
                     "so every part scores 0.", flag="the notebook contained none of the assignment's cells")
    else:
        if missing_tests:
            add_note(nb, f"Cells missing from your notebook were put back and graded: {', '.join(missing_tests)}.")
        if missing_answers:
            add_note(nb, f"Solution cells missing from your notebook were put back unanswered, so their tests score 0: "
                         f"{', '.join(missing_answers)}.")
    for i in candidates:
        claimed = _claimed_id(nb.cells[i])
        if claimed is not None and claimed not in by_name:
            add_note(nb, f"A cell carried the unknown grading tag {claimed!r}; it was graded as an ordinary cell.")

    # 4. Rebuild: graded cells in the assignment's order, each followed by the student's own cells
    #    that followed it in the submission.
    anchor_of = {i: name for i, (kind, name) in role.items()}
    anchor_of.update({i: s for s, i in assigned.items()})
    attached: dict[str | None, list[NotebookNode]] = {}
    current: str | None = None
    student_order: list[str] = []
    for i, cell in enumerate(nb.cells):
        if i in anchor_of:
            current = anchor_of[i]
            if current not in student_order:
                student_order.append(current)
            continue
        plain = copy.deepcopy(cell)
        plain.metadata.pop("nbgrader", None)
        attached.setdefault(current, []).append(plain)
    rank = {c.name: k for k, c in enumerate(canon)}
    if [rank[n] for n in student_order] != sorted(rank[n] for n in student_order):
        add_note(nb, "Some graded cells were out of order in your notebook; they were run in the assignment's order.")
    cells: list[NotebookNode] = list(attached.get(None, []))
    for c in canon:
        if c.solution and not c.locked and c.name in assigned:
            cell = copy.deepcopy(nb.cells[assigned[c.name]])
        else:
            cell = nbformat.v4.new_code_cell(source=c.source) if c.cell_type == "code" else nbformat.v4.new_markdown_cell(source=c.source)
        if cell.cell_type != c.cell_type:
            cell = (nbformat.v4.new_code_cell(source=cell.source) if c.cell_type == "code"
                    else nbformat.v4.new_markdown_cell(source=cell.source))
        if c.locked:
            cell.source = c.source
        cell.metadata["nbgrader"] = from_dict(c.metadata())
        cells.append(cell)
        cells.extend(attached.get(c.name, []))
    # Notes first: they were added to nb.metadata above.
    repaired = copy.deepcopy(nb)
    repaired.cells = cells
    return repaired


class RepairSubmission(NbGraderPreprocessor):
    """First sanitize step of ``autograde``: see :func:`repair` and :func:`scan_source`."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        info = resources["nbgrader"]
        master = None
        try:
            coursedir = getattr(self.parent, "coursedir", None) or getattr(getattr(self.parent, "parent", None), "coursedir", None)
            if coursedir is not None:
                master = Path(coursedir.format_path(coursedir.source_directory, ".", info["assignment"])) / f"{info['notebook']}.ipynb"
        except Exception:
            master = None
        canon = canonical_cells(info["db_url"], info["notebook"], info["assignment"], master)
        try:
            nb = repair(nb, canon)
        except Exception:  # a bug here must not cost the student their grade: nbgrader's own checks follow
            log.exception("Could not repair %s of %s; grading it as submitted", info["notebook"], info["student"])
        for finding in scan_notebook(nb, graded_locked={c.name for c in canon if c.locked}):
            add_note(nb, finding.message(), cell=finding.cell)
        return nb, resources


# --- static scan ----------------------------------------------------------------------------------------

TOOL_NAMES = {"checks", "np", "numpy", "course", "keras", "ops", "layers", "norm", "scipy", "builtins",
              "sys", "math", "random", "tf", "tensorflow", "plotting"}
"""Names whose attributes the tests rely on: assigning to them changes what the tests check."""
PROCESS_CALLS = {("os", "kill"), ("os", "killpg"), ("os", "_exit"), ("os", "abort"), ("signal", "pthread_kill"),
                 ("os", "fork"), ("os", "forkpty"), ("sys", "exit")}


@dataclass(frozen=True)
class Finding:
    cell: str | None
    line: int
    what: str
    kind: str  # "tamper" | "process" | "unparsable"

    def message(self) -> str:
        where = f"{self.cell}" if self.cell else "one of your own cells"
        if self.kind == "tamper":
            return (f"In {where} (line {self.line}) your code {self.what}. Code that changes the tools the tests use "
                    "is not run for grading when it takes effect; the tests then grade your notebook without it.")
        if self.kind == "process":
            return (f"In {where} (line {self.line}) your code {self.what}. The notebook is graded in a sandbox; "
                    "this cannot affect anything outside it, and if the kernel stops, the grader restarts it.")
        return f"In {where}: {self.what}."


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _target_leaves(node: ast.AST) -> list[ast.AST]:
    """What an assignment target binds: ``a.b``, ``a[0]`` or each element of ``a.b, c = ...``."""
    if isinstance(node, (ast.Tuple, ast.List)):
        return [leaf for element in node.elts for leaf in _target_leaves(element)]
    if isinstance(node, ast.Starred):
        return _target_leaves(node.value)
    return [node]


def _dotted(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except Exception:
        return "an attribute"


def scan_source(source: str, cell: str | None = None) -> list[Finding]:
    """Tampering and process-control patterns in one cell's code (IPython magics are skipped)."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return []  # the kernel reports it, with the line, when the cell runs
    found: list[Finding] = []

    def add(node: ast.AST, what: str, kind: str) -> None:
        found.append(Finding(cell, getattr(node, "lineno", 0), what, kind))

    for node in ast.walk(tree):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = list(node.targets)
        for target in targets:
            for leaf in _target_leaves(target):
                if isinstance(leaf, ast.Attribute) and _root_name(leaf) in TOOL_NAMES:
                    add(node, f"replaces {_dotted(leaf)}", "tamper")
                elif isinstance(leaf, ast.Subscript) and _dotted(leaf.value) in ("sys.modules", "__builtins__"):
                    add(node, f"replaces an entry of {_dotted(leaf.value)}", "tamper")
        if isinstance(node, ast.Call):
            func = node.func
            name = _dotted(func)
            if name in ("setattr", "delattr") and node.args and _root_name(node.args[0]) in TOOL_NAMES:
                add(node, f"calls {name} on {_dotted(node.args[0])}", "tamper")
            elif name in ("get_ipython", "sys.settrace", "sys.setprofile", "threading.settrace", "importlib.reload"):
                add(node, f"calls {name}()", "tamper")
            elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and (func.value.id, func.attr) in PROCESS_CALLS:
                add(node, f"calls {func.value.id}.{func.attr}()", "process")
            elif name in ("exit", "quit"):
                add(node, f"calls {name}()", "process")
        if isinstance(node, ast.Name) and node.id == "__builtins__":
            add(node, "uses __builtins__", "tamper")
    unique: dict[tuple[int, str], Finding] = {}
    for finding in found:
        unique.setdefault((finding.line, finding.what), finding)
    return sorted(unique.values(), key=lambda f: f.line)


def scan_notebook(nb: NotebookNode, graded_locked: Iterable[str] = ()) -> list[Finding]:
    """Findings in every cell a student wrote (locked cells are the instructor's and skipped)."""
    locked = set(graded_locked)
    findings: list[Finding] = []
    for cell in nb.cells:
        if cell.cell_type != "code" or _claimed_id(cell) in locked:
            continue
        findings.extend(scan_source(cell.source, _claimed_id(cell)))
    return findings


def student_text(text: str) -> str:
    """Make a note safe to show in Markdown (no HTML, no runaway length)."""
    text = re.sub(r"[<>]", "", text)
    return text if len(text) <= 600 else text[:597] + "..."


__all__ = [
    "METADATA_KEY", "Canonical", "Finding", "NotPlainFile", "RepairSubmission", "SubmittedNotebook",
    "TolerantNotebookExporter", "add_note", "canonical_cells", "flags_of", "intake_hook", "load_submission",
    "not_plain", "notes_of", "read_plain_file", "refuse_entries", "repair", "salvage", "scan_notebook",
    "scan_source", "student_text",
]
