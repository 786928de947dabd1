"""Putting a submission's graded cells back in order before nbgrader's own checks (first sanitize step).

nbgrader 0.9.6 assumes the student kept the notebook's nbgrader cells as handed out. Measured:
a copy-pasted solution cell (it carries the cell's metadata) fails the whole submission with a
misleading "run nbgrader update" error; a deleted test cell silently scores 0 and is flagged for
manual grading.

:class:`RepairSubmission` rebuilds the notebook's graded structure from the gradebook: every
locked cell (set-up, tests) exactly once, in the assignment's order, with its original source;
each solution cell identified by its content as well as its metadata (so swapped ``grade_id`` s,
a cell re-typed without metadata and copy-pasted duplicates all grade as what they are); metadata
(points, grade flags) from the gradebook. Missing solution cells come back as the unanswered
stub, so they earn nothing, never more. The student's own extra cells stay where they were,
relative to the graded cells. It then runs the static scan (``vae_grader.preprocessors.scan``). What was done
goes into the notes (``vae_grader.notes``).
"""

from __future__ import annotations

import copy
import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode, from_dict
from nbgrader.api import Gradebook
from nbgrader.preprocessors import NbGraderPreprocessor

from vae_grader.cells import Markers, grade_id, hidden_test_markers
from vae_grader.notes import add_note
from vae_grader.preprocessors.scan import scan_notebook

log = logging.getLogger(__name__)

STUB_LINES = {"# YOUR CODE HERE", "raise NotImplementedError()", "raise NotImplementedError"}
SOLUTION_MATCH = 0.5
"""Share of a solution cell's template lines (the code around ``# YOUR CODE HERE``) a cell must contain to be that cell."""
LOCKED_COPY_MATCH = 0.8
"""An untagged cell holding this share of a locked cell's lines is a copy of it (a re-typed test)."""

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
        meta = {
            "grade": self.grade,
            "grade_id": self.name,
            "locked": self.locked,
            "schema_version": 3,
            "solution": self.solution,
        }
        if self.grade:
            meta["points"] = self.points
        if self.checksum:
            meta["checksum"] = self.checksum
        return meta

    def template(self) -> set[str]:
        """The stripped lines of the handed-out cell that are not the stub a student replaces."""
        return {
            line.strip()
            for line in self.source.splitlines()
            if line.strip() and line.strip() not in STUB_LINES
        }


def canonical_cells(
    db_url: str, notebook_id: str, assignment_id: str, master: Path | None = None
) -> list[Canonical]:
    """The assignment's nbgrader cells in notebook order (order taken from the master when readable)."""
    with Gradebook(db_url) as gb:
        notebook = gb.find_notebook(notebook_id, assignment_id)
        points = {cell.name: float(cell.max_score) for cell in notebook.grade_cells}
        solutions = {cell.name for cell in notebook.solution_cells}
        cells = [
            Canonical(
                name=cell.name,
                cell_type=cell.cell_type,
                locked=bool(cell.locked),
                grade=cell.name in points,
                solution=cell.name in solutions,
                points=points.get(cell.name),
                checksum=cell.checksum,
                source=cell.source,
            )
            for cell in notebook.source_cells
        ]
    if master is not None and master.is_file():
        try:
            order = [
                c.metadata["nbgrader"]["grade_id"]
                for c in nbformat.read(master, as_version=4).cells
                if isinstance(c.metadata.get("nbgrader"), dict)
                and "grade_id" in c.metadata["nbgrader"]
            ]
        except (
            Exception
        ):  # the master is the instructor's; if unreadable, keep the gradebook's order
            order = []
        rank = {name: i for i, name in enumerate(order)}
        cells.sort(key=lambda c: rank.get(c.name, len(rank)))
    return cells


def _lines(source: str) -> set[str]:
    return {line.strip() for line in source.splitlines() if line.strip()}


def _visible_lines(source: str, hidden: Markers) -> set[str]:
    """The lines a student saw of a locked cell: hidden-test regions are not in the release."""
    return {text for text in (line.strip() for line in hidden.outside(source)) if text}


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


@dataclass
class _Match:
    """What :func:`repair` found in a submission: which cells are the locked cells (or copies of them),
    which cell answers each solution cell, and the cells that were candidates for an answer."""

    canon: list[Canonical]
    hidden: Markers
    role: dict[int, tuple[str, str]] = field(default_factory=dict)
    """Cell index -> ("locked", name) or ("copy", name)."""
    assigned: dict[str, int] = field(default_factory=dict)
    """Solution cell name -> the index of the cell that answers it."""
    candidates: list[int] = field(default_factory=list)

    @functools.cached_property
    def by_name(self) -> dict[str, Canonical]:
        return {c.name: c for c in self.canon}

    @functools.cached_property
    def locked(self) -> list[Canonical]:
        return [c for c in self.canon if c.locked]

    @functools.cached_property
    def templates(self) -> dict[str, set[str]]:
        return {c.name: c.template() for c in self.canon if c.solution and not c.locked}

    @functools.cached_property
    def locked_lines(self) -> dict[str, set[str]]:
        return {c.name: _visible_lines(c.source, self.hidden) for c in self.locked}

    def looks_like_solution(self, lines: set[str]) -> bool:
        return any(_share(t, lines) >= SOLUTION_MATCH for t in self.templates.values())


def repair(nb: NotebookNode, canon: list[Canonical], hidden: Markers | None = None) -> NotebookNode:
    """Rebuild ``nb``'s graded structure (see the module docstring); notes go into its metadata.

    ``hidden``: nbgrader's hidden-test markers (default: nbgrader's own defaults).
    """
    match = _Match(canon, hidden or hidden_test_markers())
    _find_locked_cells(nb, match)
    _find_answers(nb, match)
    _note_findings(nb, match)
    return _rebuild(nb, match)


def _find_locked_cells(nb: NotebookNode, match: _Match) -> None:
    """What is each submitted cell? A cell tagged as a locked cell is that cell (whatever was edited
    in it), unless it holds a solution cell's code (grade_ids swapped). An untagged (or mis-tagged)
    cell that holds most of a locked cell's lines is that cell, or a copy of it."""
    role, locked_lines = match.role, match.locked_lines
    for i, cell in enumerate(nb.cells):
        claimed = grade_id(cell)
        if claimed in locked_lines and not match.looks_like_solution(_lines(cell.source)):
            role[i] = ("locked", claimed)
    for i, cell in enumerate(nb.cells):
        lines = _lines(cell.source)
        if i in role or cell.cell_type != "code" or not lines or match.looks_like_solution(lines):
            continue
        best = max(locked_lines, key=lambda name: _share(locked_lines[name], lines), default=None)
        if best is not None and _share(locked_lines[best], lines) >= LOCKED_COPY_MATCH:
            taken_locked = {name for kind, name in role.values() if kind == "locked"}
            role[i] = ("copy", best) if best in taken_locked else ("locked", best)
    match.candidates = [
        i
        for i, cell in enumerate(nb.cells)
        if i not in role and cell.cell_type in ("code", "markdown", "raw")
    ]


def _find_answers(nb: NotebookNode, match: _Match) -> None:
    """Which cell answers each solution cell? Content first, then the metadata claim."""
    templates, candidates, assigned = match.templates, match.candidates, match.assigned
    score = {
        (i, s): _share(templates[s], _lines(nb.cells[i].source))
        for i in candidates
        for s in templates
    }

    def best_for(i: int, s: str) -> bool:
        return score[(i, s)] >= SOLUTION_MATCH and score[(i, s)] >= max(
            score[(i, other)] for other in templates
        )

    for s in templates:
        claimed = [i for i in candidates if grade_id(nb.cells[i]) == s and best_for(i, s)]
        if claimed:
            assigned[s] = claimed[-1]  # the last copy is the one whose definitions win when run
    taken = set(assigned.values())
    for s in templates:
        if s in assigned:
            continue
        free = [i for i in candidates if i not in taken and best_for(i, s)]
        if free:
            assigned[s] = max(free, key=lambda i: (score[(i, s)], i))
            taken.add(assigned[s])
    for s in templates:
        if s in assigned:
            continue
        claimed = [i for i in candidates if i not in taken and grade_id(nb.cells[i]) == s]
        if claimed:
            assigned[s] = claimed[-1]
            taken.add(assigned[s])


def _note_findings(nb: NotebookNode, match: _Match) -> None:
    """A note in ``nb``'s metadata for everything :func:`repair` changed or put back."""
    role, assigned, by_name = match.role, match.assigned, match.by_name
    templates, locked_lines = match.templates, match.locked_lines
    taken = set(assigned.values())
    seen_locked: dict[str, int] = {}
    for i, (kind, name) in sorted(role.items()):
        if kind == "copy":
            add_note(
                nb,
                f"A copy of the cell {name} was removed before grading (the original is graded once).",
                cell=name,
            )
            continue
        seen_locked[name] = seen_locked.get(name, 0) + 1
        claimed = grade_id(nb.cells[i])
        if claimed != name:
            how = f"was tagged as {claimed}" if claimed else "had lost its grading tag"
            add_note(
                nb,
                f"The cell {name} {how}; it was recognised by its content and graded as {name}.",
                cell=name,
            )
        elif (
            _lines(nb.cells[i].source) != locked_lines[name]
            and nb.cells[i].source.strip() != by_name[name].source.strip()
        ):
            add_note(
                nb,
                f"The locked cell {name} had been edited; it was graded as handed out.",
                cell=name,
            )
    for name, count in seen_locked.items():
        if count > 1:
            add_note(nb, f"The cell {name} appeared {count} times; it was graded once.", cell=name)
    for i, (kind, name) in sorted(role.items()):
        if kind == "locked" and _metadata_changed(nb.cells[i], by_name[name]):
            add_note(
                nb,
                f"The grading metadata of the cell {name} (points or grade flags) had been changed; "
                "it was graded with the original metadata.",
                cell=name,
            )
    for s, i in assigned.items():
        claimed = grade_id(nb.cells[i])
        if claimed != s:
            how = f"was tagged as {claimed}" if claimed else "had lost its grading tag"
            add_note(
                nb,
                f"The cell that answers {s} {how}; it was recognised by its content and graded as {s}.",
                cell=s,
            )
        elif _metadata_changed(nb.cells[i], by_name[s]):
            add_note(
                nb,
                f"The grading metadata of the cell {s} had been changed; it was graded with the original metadata.",
                cell=s,
            )
    for i in match.candidates:
        claimed = grade_id(nb.cells[i])
        if claimed in templates and assigned.get(claimed) != i and i not in taken:
            add_note(
                nb,
                f"Your notebook had more than one {claimed} cell (a copy of the cell); the last one is graded, "
                "the others run as ordinary cells.",
                cell=claimed,
            )
    missing_tests = [c.name for c in match.locked if c.name not in seen_locked]
    missing_answers = [s for s in templates if s not in assigned]
    if not seen_locked and not assigned:
        add_note(
            nb,
            "Your notebook contained none of the assignment's cells; they were put back unanswered, "
            "so every part scores 0.",
            flag="the notebook contained none of the assignment's cells",
        )
    else:
        if missing_tests:
            add_note(
                nb,
                f"Cells missing from your notebook were put back and graded: {', '.join(missing_tests)}.",
            )
        if missing_answers:
            add_note(
                nb,
                f"Solution cells missing from your notebook were put back unanswered, so their tests score 0: "
                f"{', '.join(missing_answers)}.",
            )
    for i in match.candidates:
        claimed = grade_id(nb.cells[i])
        if claimed is not None and claimed not in by_name:
            add_note(
                nb,
                f"A cell carried the unknown grading tag {claimed!r}; it was graded as an ordinary cell.",
            )


def _rebuild(nb: NotebookNode, match: _Match) -> NotebookNode:
    """Graded cells in the assignment's order, each followed by the student's own cells that followed
    it in the submission."""
    anchor_of = {i: name for i, (kind, name) in match.role.items()}
    anchor_of.update({i: s for s, i in match.assigned.items()})
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
    rank = {c.name: k for k, c in enumerate(match.canon)}
    if [rank[n] for n in student_order] != sorted(rank[n] for n in student_order):
        add_note(
            nb,
            "Some graded cells were out of order in your notebook; they were run in the assignment's order.",
        )
    cells: list[NotebookNode] = list(attached.get(None, []))
    for c in match.canon:
        if c.solution and not c.locked and c.name in match.assigned:
            cell = copy.deepcopy(nb.cells[match.assigned[c.name]])
        else:
            cell = _new_cell(c.cell_type, c.source)
        if cell.cell_type != c.cell_type:
            cell = _new_cell(c.cell_type, cell.source)
        if c.locked:
            cell.source = c.source
        cell.metadata["nbgrader"] = from_dict(c.metadata())
        cells.append(cell)
        cells.extend(attached.get(c.name, []))
    # Notes first: they were added to nb.metadata above.
    repaired = copy.deepcopy(nb)
    repaired.cells = cells
    return repaired


def _new_cell(cell_type: str, source: str) -> NotebookNode:
    if cell_type == "code":
        return nbformat.v4.new_code_cell(source=source)
    return nbformat.v4.new_markdown_cell(source=source)


class RepairSubmission(NbGraderPreprocessor):
    """First sanitize step of ``autograde``: see :func:`repair` and :func:`scan_source`."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        info = resources["nbgrader"]
        master = None
        try:
            coursedir = getattr(self.parent, "coursedir", None) or getattr(
                getattr(self.parent, "parent", None), "coursedir", None
            )
            if coursedir is not None:
                master = (
                    Path(coursedir.format_path(coursedir.source_directory, ".", info["assignment"]))
                    / f"{info['notebook']}.ipynb"
                )
        except Exception:
            master = None
        canon = canonical_cells(info["db_url"], info["notebook"], info["assignment"], master)
        try:
            nb = repair(nb, canon, hidden_test_markers(self.config))
        except (
            Exception
        ):  # a bug here must not cost the student their grade: nbgrader's own checks follow
            log.exception(
                "Could not repair %s of %s; grading it as submitted",
                info["notebook"],
                info["student"],
            )
        for finding in scan_notebook(nb, graded_locked={c.name for c in canon if c.locked}):
            add_note(nb, finding.message(), cell=finding.cell)
        return nb, resources
