"""The few ways the grader reads nbgrader cells: by grade id, and the marked regions of their source.

One place for both, so that every module agrees on them. The markers are nbgrader's own settings
(``ClearSolutions.begin_solution_delimeter`` ..., ``ClearHiddenTests.begin_test_delimeter`` ...;
nbgrader spells it "delimeter"), read from the configuration nbgrader runs with, never copied.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions
from traitlets.config import Config


def grade_id(cell: NotebookNode) -> str | None:
    """The cell's nbgrader ``grade_id``, or None when it has none (or metadata that is not nbgrader's)."""
    meta = cell.get("metadata", {}).get("nbgrader")
    if isinstance(meta, dict) and isinstance(meta.get("grade_id"), str):
        return meta["grade_id"]
    return None


def cell_by_id(nb: NotebookNode, name: str) -> NotebookNode | None:
    """The first cell whose ``grade_id`` is ``name``."""
    return next((cell for cell in nb.cells if grade_id(cell) == name), None)


def require_cell(nb: NotebookNode, name: str) -> NotebookNode:
    """The first cell whose ``grade_id`` is ``name``; KeyError when the notebook has none."""
    cell = cell_by_id(nb, name)
    if cell is None:
        raise KeyError(f"the notebook has no cell with grade_id {name!r}")
    return cell


@dataclass(frozen=True)
class Markers:
    """A pair of region markers (a line containing ``begin`` opens a region, ``end`` closes it)."""

    begin: str
    end: str

    def regions(self, source: str) -> Iterator[tuple[str, bool]]:
        """Each line of ``source`` that is not a marker, with whether it lies inside a region."""
        inside = False
        for line in source.splitlines():
            if self.begin in line:
                inside = True
            elif self.end in line:
                inside = False
            else:
                yield line, inside

    def outside(self, source: str) -> list[str]:
        return [line for line, inside in self.regions(source) if not inside]

    def inside(self, source: str) -> list[str]:
        return [line for line, inside in self.regions(source) if inside]


def hidden_test_markers(config: Config | None = None) -> Markers:
    """``BEGIN/END HIDDEN TESTS`` as nbgrader is configured (``ClearHiddenTests``)."""
    settings = ClearHiddenTests(config=config or Config())
    return Markers(settings.begin_test_delimeter, settings.end_test_delimeter)


def solution_markers(config: Config | None = None) -> Markers:
    """``### BEGIN/END SOLUTION`` as nbgrader is configured (``ClearSolutions``)."""
    settings = ClearSolutions(config=config or Config())
    return Markers(settings.begin_solution_delimeter, settings.end_solution_delimeter)
