"""How long a cell and a whole submission may run (the limits ``RobustExecute`` enforces).

A cell may run ``Execute.timeout`` seconds; a cell that trains a model (the training answer cell,
or a student cell whose parsed code calls ``.fit(``) ``training_timeout`` seconds, so the short
limit keeps an endless loop elsewhere from costing minutes per submission. A submission has
``submission_seconds`` in all. The numbers are ``RobustExecute``'s traits; this module only
applies them.
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


def out_of_time(started: float, submission_seconds: int) -> str | None:
    """Why no further cell may run (the submission's budget is spent), or None while time is left."""
    spent = time.monotonic() - started
    if spent > submission_seconds:
        return (
            f"the submission used up the grader's time budget of {submission_seconds} s "
            "(cells, new kernels and replays together)"
        )
    return None
