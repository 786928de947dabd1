"""How long a cell and a whole submission may compute (the limits ``RobustExecute`` enforces).

A cell may use ``Execute.timeout`` seconds of CPU time (its kernel's whole process tree,
``vae_grader.kernel.clock``); a cell that trains a model (the training answer cell, or a student
cell whose parsed code calls ``.fit(``) ``training_timeout`` seconds, so the short limit keeps an
endless loop elsewhere from costing minutes per submission. A submission has
``submission_seconds`` of its cells' CPU time in all. Counted in CPU time, none of these depends
on how busy the machine is; the wall-clock backstops (``backstop_factor`` times a cell's limit,
``submission_wall_seconds`` a submission) only stop what sleeps or blocks, and a submission
stopped by them while the machine starved it is flagged, never zeroed. The numbers are
``RobustExecute``'s traits; this module only applies them.
"""

from __future__ import annotations

import ast
import time

from nbformat.notebooknode import NotebookNode
from nbgrader import utils

from vae_grader.cells import grade_id


def calls_fit(source: str) -> bool:
    """Whether the code really calls ``something.fit(...)`` (a comment or a string that says so does not count)."""
    try:
        tree = ast.parse(source)
    except (
        SyntaxError,
        RecursionError,
        MemoryError,
    ):  # nested too deep to read: not a training cell
        return False
    return any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "fit"
        for node in ast.walk(tree)
    )


def trains(cell: NotebookNode, training_cells: list[str]) -> bool:
    """Whether ``cell`` trains a model, and so gets the training limit."""
    # The training answer cell, or a student cell whose parsed code calls .fit( (a comment or a
    # string that mentions it does not count). Test cells are judged with the short limit.
    if grade_id(cell) in training_cells:
        return True
    is_test_cell = utils.is_grade(cell) and not utils.is_solution(cell)
    return not is_test_cell and calls_fit(cell.get("source", ""))


def cell_limit(
    cell: NotebookNode | None, timeout: int | None, training_timeout: int, training_cells: list[str]
) -> int | None:
    """Seconds ``cell`` may run: ``training_timeout`` for a training cell, ``timeout`` for any other."""
    limit = timeout
    if limit and cell is not None and trains(cell, training_cells):
        return max(limit, training_timeout)
    return limit


def out_of_time(
    charged: float, started: float, submission_seconds: int, submission_wall_seconds: int
) -> str | None:
    """Why no further cell may run, or None while time is left: the submission's cells (replays
    included) were ``charged`` their budget, or the wall-clock backstop since ``started`` passed."""
    if charged > submission_seconds:
        return (
            f"the submission used up the grader's budget of {submission_seconds} s of computing "
            "(its cells and their re-runs after a new kernel, together)"
        )
    wall = time.monotonic() - started
    if wall > submission_wall_seconds:
        return (
            f"the grading machine was too busy: {wall:.0f} s passed while the cells had used "
            f"{charged:.0f} s of computing"
        )
    return None
