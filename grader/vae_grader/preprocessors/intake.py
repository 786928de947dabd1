"""Reading a submission as far as it can be read, safely (the first thing ``autograde`` does).

nbgrader 0.9.6 assumes a submission folder holds plain files and a well-formed notebook under the
expected name. Measured: a file that is not JSON, or a notebook under another name, stops
``autograde`` for that student with a traceback and no feedback at all; links, pipes and devices
are followed or block (below). Wired in through ``nbgrader_config.py``:

* :func:`intake_hook` (``Autograde.pre_convert_hook``, before nbgrader reads or copies anything)
  removes every entry of the submission folder that is not a plain file: symbolic links (a
  notebook linked to the master graded the master), named pipes, devices, sockets and hard
  links. A notebook that was one is graded as an empty notebook, with a note. It also finds
  a notebook submitted under another name (``VAE (1).ipynb``) and grades it as ``vae.ipynb``.
* :class:`TolerantNotebookExporter` reads the submitted file, never through a link
  (:func:`read_plain_file`). A file that is not a notebook (bad JSON, wrong structure, too
  large, nested deeper than any JSON reader of the toolchain can follow) becomes an empty
  notebook with a note, so the student gets a feedback page that says why they scored 0; cells
  with a broken structure are salvaged. A notebook in an old format (nbformat 1-3) is converted
  with nbformat's own upgrade and graded as converted, with a note. Bounds, each
  named below with what real notebooks measure: the file's size, its nesting (checked on the bytes
  before Python's recursive JSON parser sees them), parts nested deeper than any real notebook
  (left out after parsing, so nothing recursive downstream meets them), each cell's source and
  metadata, the number of cells.

What intake finds travels as notes in the notebook's metadata (``vae_grader.notes``).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import stat
import warnings
from collections.abc import Iterable
from pathlib import Path

import nbformat
from nbconvert.exporters import NotebookExporter
from nbformat.notebooknode import NotebookNode, from_dict

from course.untrusted import json_nesting_depth
from vae_grader.notes import METADATA_KEY, add_note

log = logging.getLogger(__name__)

MAX_NOTEBOOK_BYTES = 50 * 2**20
"""A submitted file larger than this is not read (the master notebook is ~60 kB; outputs add a few MB).
Parsing the largest file allowed costs the grader at most ~0.6 GB for 1 s (measured: 48 MB of 2,300,000
empty cells, the worst case of small JSON objects)."""
MAX_NOTEBOOK_DEPTH = 500
"""Deepest nesting of a submitted file that is parsed at all (found by a scan of its bytes,
``course.untrusted.json_nesting_depth``, before ``json.loads`` sees it). Measured: real notebooks nest 4 to 7
levels (the master, the release, 97 notebooks on this machine, graded ones with their outputs included);
Jupyter opens a cell whose metadata a plugin nested 450 levels deep. Python's ``json`` recurses once per
level and raises ``RecursionError`` (not ``ValueError``) near 1,000 levels minus the caller's stack: a file
nested 200,000 levels deep made ``nbgrader autograde`` exit 1 for that student, with no feedback page."""
MAX_KEPT_DEPTH = 32
"""Parts of a parsed notebook nested deeper than this (counted from the file's top) are left out before
anything else reads it (a note says so): ``copy.deepcopy``, nbformat's conversion and validation and
nbgrader recurse too. Measured: 7 at most in real notebooks (cell sources sit at depth 3 to 4, so only
metadata and outputs, which grading clears, can reach it)."""
MAX_CELLS = 1_000
"""Cells graded. Measured: the master has 42. Beyond this, empty cells without nbgrader metadata are left
out first (a notebook of 2,300,000 empty cells fits in ``MAX_NOTEBOOK_BYTES``), then every cell after the
first ``MAX_CELLS`` (graded cells are put back from the gradebook by ``restructure``)."""
MAX_CELL_SOURCE_CHARS = 1 * 2**20
"""Longest cell source graded. Measured: the master's longest cell has 2,735 characters; a longer cell is
graded as empty, with a note."""
MAX_CELL_METADATA_BYTES = 64 * 2**10
"""Largest metadata of one cell (as JSON) kept whole. Measured: 385 bytes at most (a graded cell's nbgrader
metadata after autograding); beyond it only the cell's ``nbgrader`` entry is kept."""
OLD_FORMATS = (1, 2, 3)
"""nbformat major versions converted with nbformat's own upgrade (``nbformat.convert``)."""

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
            return (
                f"Your submission folder was {self.what}, not a folder; links are not followed, so nothing "
                f"in it was read and it {graded}."
            )
        why = {
            "a symbolic link": "links are not followed",
            "a hard link": "a file with a second name elsewhere is not read",
        }.get(self.what, "only plain files are read")
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
            raise ValueError(
                f"it is {after.st_size / 2**20:.0f} MB, more than the {limit // 2**20} MB a notebook may have"
            )
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

    def __new__(
        cls, path: str, read_from: str | None, notes: Iterable[tuple[str, str | None]] = ()
    ) -> "SubmittedNotebook":
        entry = super().__new__(cls, path)
        entry.read_from = read_from
        entry.notes = tuple(notes)
        return entry


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def prune_deep(raw: object, limit: int = MAX_KEPT_DEPTH) -> int:
    """Remove, in place, every array or object of ``raw`` nested deeper than ``limit``; how many were removed.

    Iterative (no recursion, whatever the depth ``json.loads`` accepted), so what is left can be walked by
    recursive code. ``raw`` itself counts as depth 1, as in ``json_nesting_depth``.
    """
    removed = 0
    stack: list[tuple[object, int]] = [(raw, 1)]
    while stack:
        container, depth = stack.pop()
        if isinstance(container, dict):
            for key in list(container):
                value = container[key]
                if isinstance(value, (dict, list)):
                    if depth + 1 > limit:
                        del container[key]
                        removed += 1
                    else:
                        stack.append((value, depth + 1))
        elif isinstance(container, list):
            kept = []
            for value in container:
                if isinstance(value, (dict, list)) and depth + 1 > limit:
                    removed += 1
                    continue
                kept.append(value)
                if isinstance(value, (dict, list)):
                    stack.append((value, depth + 1))
            container[:] = kept
    return removed


def upgrade(raw: object) -> tuple[object, int | None]:
    """``raw`` as a v4 notebook when it is an older one (nbformat 1-3), with the version it was in.

    nbformat's own reader and upgrade (what ``nbformat.reads(text, as_version=4)`` does, on the parsed
    dict); raises ``ValueError`` when the old notebook is too broken for them to convert.
    """
    if not isinstance(raw, dict):
        return raw, None
    major = raw.get("nbformat")
    if isinstance(major, bool) or major not in OLD_FORMATS:
        return raw, None
    minor = raw.get("nbformat_minor", 0)
    minor = minor if isinstance(minor, int) and not isinstance(minor, bool) else 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            old = nbformat.versions[major].to_notebook_json(raw, minor=minor)
            return nbformat.convert(old, 4), major
    except Exception as exc:  # nbformat raises many kinds on a broken old notebook
        raise ValueError(
            f"it is in nbformat {major}, and nbformat could not convert it: "
            f"{type(exc).__name__} {_first_line(exc)}"
        ) from None


def _json_size(value: object) -> int:
    try:
        return len(json.dumps(value))
    except (TypeError, ValueError, RecursionError):
        return MAX_CELL_METADATA_BYTES + 1


def _kept_metadata(metadata: dict) -> tuple[dict, bool]:
    """A cell's metadata, or only its ``nbgrader`` entry when the whole is larger than ``MAX_CELL_METADATA_BYTES``."""
    if _json_size(metadata) <= MAX_CELL_METADATA_BYTES:
        return metadata, False
    grading = metadata.get("nbgrader")
    if isinstance(grading, dict) and _json_size(grading) <= MAX_CELL_METADATA_BYTES:
        return {"nbgrader": grading}, True
    return {}, True


def _is_empty(item: object) -> bool:
    """An empty cell that nbgrader does not track: nothing to run, nothing to grade."""
    if not isinstance(item, dict):
        return False
    source = item.get("source", "")
    text = (
        "".join(source)
        if isinstance(source, list) and all(isinstance(s, str) for s in source)
        else source
    )
    metadata = item.get("metadata")
    return (
        isinstance(text, str)
        and not text.strip()
        and not (isinstance(metadata, dict) and "nbgrader" in metadata)
    )


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
    if (
        isinstance(metadata, dict)
        and isinstance(metadata.get("kernelspec"), dict)
        and _json_size(metadata["kernelspec"]) <= MAX_CELL_METADATA_BYTES
    ):
        nb.metadata["kernelspec"] = from_dict(metadata["kernelspec"])
    if len(cells) > MAX_CELLS:
        total = len(cells)
        cells = [item for item in cells if not _is_empty(item)]
        if total > len(cells):
            problems.append(
                f"it has {total:,} cells, more than the {MAX_CELLS:,} graded; its "
                f"{total - len(cells):,} empty cells were left out"
            )
        if len(cells) > MAX_CELLS:
            problems.append(
                f"only its first {MAX_CELLS:,} cells were graded ({len(cells) - MAX_CELLS:,} more were "
                "left out; graded cells among them were put back as released)"
            )
            cells = cells[:MAX_CELLS]
    dropped = long_sources = big_metadata = 0
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
        if len(source) > MAX_CELL_SOURCE_CHARS:
            long_sources += 1
            source = ""
        cell_metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
        cell_metadata, cut = _kept_metadata(cell_metadata)
        big_metadata += cut
        kind = item["cell_type"]
        maker = {
            "code": nbformat.v4.new_code_cell,
            "markdown": nbformat.v4.new_markdown_cell,
            "raw": nbformat.v4.new_raw_cell,
        }[kind]
        cell = maker(source=source)
        cell.metadata = from_dict(copy.deepcopy(cell_metadata))
        nb.cells.append(cell)
    if dropped:
        problems.append(f"{dropped} cell(s) had a broken structure and were left out")
    if long_sources:
        problems.append(
            f"{long_sources} cell(s) held more than {MAX_CELL_SOURCE_CHARS:,} characters and were graded as empty"
        )
    if big_metadata:
        problems.append(
            f"the metadata of {big_metadata} cell(s) was larger than {MAX_CELL_METADATA_BYTES:,} bytes; only its "
            "nbgrader entry was kept"
        )
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
            depth = json_nesting_depth(data)
            if depth > MAX_NOTEBOOK_DEPTH:
                raise ValueError(
                    f"it is nested {depth:,} levels deep; a notebook is read up to {MAX_NOTEBOOK_DEPTH} levels "
                    "and real ones nest fewer than 10"
                )
            raw = json.loads(text)
            pruned = prune_deep(raw) if depth > MAX_KEPT_DEPTH else 0
            raw, old_format = upgrade(raw)
        except NotPlainFile as exc:
            notes.append(
                (exc.sentence(GRADED_AS_MISSING), f"the submitted notebook was {exc.what}")
            )
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            reason = (
                f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
                if isinstance(exc, json.JSONDecodeError)
                else _first_line(exc)
            )
            notes.append(
                (
                    f"Your file {name} could not be read as a notebook ({reason}), so nothing in it could be "
                    "graded and every part scores 0. Open it in Jupyter, save it again and resubmit.",
                    "the submitted file is not a readable notebook",
                )
            )
        else:
            if old_format is not None:
                notes.append(
                    (
                        f"Your notebook was in an old format (v{old_format}); it was converted to the current "
                        "one (v4) with nbformat's own upgrade and graded as converted.",
                        None,
                    )
                )
            if pruned:
                notes.append(
                    (
                        f"Your file {name}: {pruned:,} part(s) of it nested more than {MAX_KEPT_DEPTH} levels deep "
                        "(metadata, not code) were left out.",
                        None,
                    )
                )
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
        if not self.is_submitted(filename):
            return super().from_filename(filename, resources=resources, **kw)
        if resources is None:
            resources = {}
        resources.setdefault("metadata", {})
        path, basename = os.path.split(filename)
        resources["metadata"]["name"] = os.path.splitext(basename)[0]
        resources["metadata"]["path"] = path
        return self.from_notebook_node(
            load_submission(filename, self._submitted_root()), resources=resources, **kw
        )

    def is_submitted(self, filename: str) -> bool:
        """Whether nbgrader is reading the student's file (its sanitize pass), not its own autograded copy.

        nbgrader has no public flag for the pass it is in (``Autograde._sanitizing`` is private), so
        the file tells: intake's :class:`SubmittedNotebook` entries, or any path under ``submitted/``.
        """
        if isinstance(filename, SubmittedNotebook):
            return True
        root = self._submitted_root()
        return root is not None and os.path.abspath(filename).startswith(
            os.path.abspath(root) + os.sep
        )

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
        raise SystemExit(
            f"vae_grader intake: cannot remove {path} ({exc.strerror}); nbgrader would follow it, "
            "so grading stops here. Remove it by hand and grade again."
        ) from None
    log.warning("Refused %s (%s) before grading", path, what)


def intake_hook(
    assignment: str = "", student: str = "", notebooks: list[str] | None = None, **_: object
) -> None:
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
    except (
        OSError
    ) as exc:  # nbgrader would log this at INFO level and go on to copy what was not checked
        raise SystemExit(
            f"vae_grader intake: cannot check {folder} ({exc.strerror or exc}); "
            "grading stops here rather than read it unchecked."
        ) from None
    whole = any(r.relpath == "." for r in refused)
    by_name = {r.relpath: r for r in refused}
    common = [
        (r.sentence(LEFT_OUT), None)
        for r in refused
        if not r.relpath.endswith(".ipynb") and r.relpath != "."
    ]
    entries: dict[str, SubmittedNotebook] = {}
    for path in notebooks:
        name = os.path.basename(path)
        refusal = by_name.get(".") if whole else by_name.get(name)
        if refusal is not None:
            entries[Path(path).stem] = SubmittedNotebook(
                path,
                None,
                [
                    (
                        refusal.sentence(GRADED_AS_MISSING),
                        f"the submitted notebook was {refusal.what}",
                    )
                ],
            )
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
            note = (
                f"Your notebook was submitted as {os.path.basename(found)}, not {name}.ipynb; "
                f"it was graded as {name}.ipynb.",
                None,
            )
            entries[name] = SubmittedNotebook(nominal, found.read_from, (*refused_notes, note))
        elif name not in entries:
            listing = (
                ", ".join(os.path.basename(entries[stem]) for stem in sorted(extra))
                or "no notebook at all"
            )
            entries[name] = SubmittedNotebook(
                nominal,
                None,
                [
                    (
                        f"No {name}.ipynb was submitted (found: {listing}), so every part of it scores 0.",
                        "the notebook was missing",
                    )
                ],
            )
    notebooks[:] = [
        SubmittedNotebook(entry, entry.read_from, (*entry.notes, *common))
        for entry in entries.values()
    ]
