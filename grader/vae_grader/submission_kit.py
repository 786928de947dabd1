"""Building sample submissions from the release and the master, so they follow the master.

A sample submission is the student notebook (``release/``) with some solution cells filled from
the master and, optionally, one plausible mistake applied by an exact text substitution. A
substitution that no longer matches the master raises at once, so a changed master can never
silently turn a "broken" sample into a correct one. Both the demo set (issue 4) and the
adversarial corpus (issue 5) are lists of :class:`Submission` built with these helpers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import nbformat

from vae_grader.paths import MASTER, RELEASE

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"

# Graded test cells per part, in notebook order; the points come from the master's metadata.
PARTS = (
    "encoder",
    "sampling",
    "decoder",
    "loss_layer",
    "vae_model",
    "data",
    "training",
    "manifold",
)


def test_cells(part: str) -> tuple[str, str]:
    """The (visible, hidden) grade cell ids of one part."""
    return f"test_{part}", f"test_{part}_hidden"


def cell_by_id(nb: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return cell
    raise KeyError(f"no cell with grade_id {grade_id!r}")


def points_by_cell(master: nbformat.NotebookNode) -> dict[str, float]:
    """grade_id -> points of every graded cell, read from the master."""
    return {
        c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"]["points"])
        for c in master.cells
        if c.metadata.get("nbgrader", {}).get("grade")
    }


def solution_source(master: nbformat.NotebookNode, grade_id: str) -> str:
    """The master's solution cell with the nbgrader markers removed: what a correct student types."""
    lines = cell_by_id(master, grade_id).source.splitlines()
    return "\n".join(line for line in lines if line.strip() not in (BEGIN, END))


def replace_once(text: str, old: str, new: str) -> str:
    count = text.count(old)
    if count != 1:
        raise ValueError(
            f"expected exactly one {old!r} in the master's solution, found {count}: update the sample submission"
        )
    return text.replace(old, new)


@dataclass(frozen=True)
class Submission:
    """One sample student: how to build the notebook and what it must score."""

    student: str
    description: str
    build: Callable[[nbformat.NotebookNode, nbformat.NotebookNode], nbformat.NotebookNode | bytes]
    expected: Mapping[str, float]
    """Expected points per graded cell id (cells not listed: 0)."""
    filename: str = "vae.ipynb"
    expected_feedback: tuple[str, ...] = field(default=())
    """Phrases the student's feedback page must contain."""
    lost: Mapping[str, str] = field(default_factory=dict)
    """Why each graded cell missing from ``expected`` scores nothing: grade_id -> one-line reason."""
    partial: Mapping[str, str] = field(default_factory=dict)
    """Why each cell of ``expected`` below its maximum keeps only part of its points: grade_id -> reason."""


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
            cell_by_id(nb, grade_id).source = source
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
