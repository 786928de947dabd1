"""Building sample submissions from the release and the master, so they follow the master.

A sample submission is the student notebook (``release/``) with some solution cells filled from
the master and, optionally, one plausible mistake applied by an exact text substitution. A
substitution that no longer matches the master raises at once, so a changed master can never
silently turn a "broken" sample into a correct one. Both the demo set (:mod:`vae_samples.demo`)
and the adversarial corpus (:mod:`vae_samples.adversarial`) are lists of
:class:`vae_grader.submissions.Submission` built with these helpers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import nbformat

from vae_grader.cells import require_cell, solution_markers
from vae_grader.preprocessors.restructure import Canonical
from vae_grader.paths import MASTER, RELEASE
from vae_grader.submissions import PARTS, points_by_cell, test_cells

NOT_ATTEMPTED = "not attempted: the part still raises NotImplementedError"
"""Why a cell of a part left as the release's stub scores nothing (the manifest's words)."""


def solution_source(master: nbformat.NotebookNode, grade_id: str) -> str:
    """The master's solution cell with the nbgrader markers removed: what a correct student types."""
    source = require_cell(master, grade_id).source
    return "\n".join(line for line, _ in solution_markers().regions(source))


def replace_once(text: str, old: str, new: str) -> str:
    count = text.count(old)
    if count != 1:
        raise ValueError(
            f"expected exactly one {old!r} in the master's solution, found {count}: update the sample submission"
        )
    return text.replace(old, new)


def filled(
    parts: Iterable[str],
    mistakes: Mapping[str, tuple[str, str]] | None = None,
) -> Callable[[nbformat.NotebookNode, nbformat.NotebookNode], nbformat.NotebookNode]:
    """A builder: the release with the given solution cells filled from the master.

    ``mistakes`` maps a solution cell id to one (old, new) substitution applied to its source.
    """
    parts = tuple(parts)
    mistakes = dict(mistakes or {})

    def build(
        master: nbformat.NotebookNode, release: nbformat.NotebookNode
    ) -> nbformat.NotebookNode:
        nb = copy.deepcopy(release)
        for grade_id in parts:
            source = solution_source(master, grade_id)
            if grade_id in mistakes:
                source = replace_once(source, *mistakes[grade_id])
            require_cell(nb, grade_id).source = source
        unknown = set(mistakes) - set(parts)
        if unknown:
            raise ValueError(f"mistakes given for cells that are not filled: {sorted(unknown)}")
        return nb

    return build


def full_points(
    master: nbformat.NotebookNode,
    parts: Iterable[str] = PARTS,
    minus: Iterable[str] = (),
    partial: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Expected points when the given parts pass all their tests, except the cells in ``minus`` (0 points)
    and those in ``partial`` (the points given there: the checks of the cell that still pass)."""
    points = points_by_cell(master)
    expected = {cell: points[cell] for part in parts for cell in test_cells(part)}
    for cell in minus:
        expected.pop(cell, None)
    for cell, kept in (partial or {}).items():
        if not 0 < kept < points[cell]:
            raise ValueError(
                f"{cell}: partial credit {kept} must lie strictly between 0 and {points[cell]}"
            )
        expected[cell] = kept
    return expected


def load_master_and_release() -> tuple[nbformat.NotebookNode, nbformat.NotebookNode]:
    return nbformat.read(MASTER, as_version=4), nbformat.read(RELEASE, as_version=4)


def canonical() -> list[Canonical]:
    """The gradebook's view of the assignment (what ``RepairSubmission`` restores), built from the master
    and the release without a gradebook."""
    master, release = load_master_and_release()
    released = {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in release.cells
        if "nbgrader" in c.metadata
    }
    points = points_by_cell(master)
    out = []
    for cell in master.cells:
        meta = cell.metadata.get("nbgrader")
        if not meta:
            continue
        name = meta["grade_id"]
        out.append(
            Canonical(
                name=name,
                cell_type=cell.cell_type,
                locked=bool(meta.get("locked")),
                grade=bool(meta.get("grade")),
                solution=bool(meta.get("solution")),
                points=points.get(name),
                checksum=None,
                source=cell.source if meta.get("locked") else released[name],
            )
        )
    return out


def restored_cells(repaired: nbformat.NotebookNode, canon: list[Canonical]) -> list:
    """The nbgrader cells of a repaired notebook, after checking that they are the gradebook's: same ids in
    the same order, the same metadata, and each locked cell's source as released."""
    tagged = [c for c in repaired.cells if "nbgrader" in c.metadata]
    assert [c.metadata["nbgrader"]["grade_id"] for c in tagged] == [c.name for c in canon]
    by_name = {c.name: c for c in canon}
    for cell in tagged:
        want = by_name[cell.metadata["nbgrader"]["grade_id"]]
        assert cell.metadata["nbgrader"] == want.metadata()
        if want.locked:
            assert cell.source == want.source
    return tagged


def feedback_page(nb: nbformat.NotebookNode, score: float = 0.0) -> str:
    """The page ``nbgrader generate_feedback`` makes of a graded notebook: the grader's notes rendered as the
    executor does, then ``StudentFeedback`` and nbgrader's feedback template (``GetGrades``, which reads
    the gradebook, is left to the caller)."""
    from nbconvert.exporters import HTMLExporter
    import nbgrader

    from vae_grader.notes import render_notes
    from vae_grader.preprocessors.feedback import StudentFeedback

    nb = copy.deepcopy(nb)
    render_notes(nb)
    nb, _ = StudentFeedback().preprocess(nb, {})
    base = Path(nbgrader.__file__).parent / "server_extensions" / "formgrader"
    exporter = HTMLExporter(
        template_name="feedback",
        extra_template_basedirs=[str(base / "templates")],
        extra_template_paths=[str(base / "static" / "node_modules" / "bootstrap" / "dist" / "css")],
    )
    page, _ = exporter.from_notebook_node(
        nb, resources={"nbgrader": {"score": score, "max_score": 40, "late_penalty": 0}}
    )
    return page
