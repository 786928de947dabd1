"""What the grader writes into a cell it could not run normally, and how it names a cell to the student.

An incident (a crash, a timeout, stray processes) or a cell that was never run becomes an error
output in the cell itself; a graded cell that was not run is also flagged in the notes
(``vae_grader.notes``) so that ``vae_grader.preprocessors.flags.FlagForReview`` sends it to the instructor
instead of zeroing it.
"""

from __future__ import annotations

from nbformat.notebooknode import NotebookNode, from_dict
from nbgrader import utils

from vae_grader.cells import grade_id
from vae_grader.notes import add_note


def add_error(cell: NotebookNode, ename: str, evalue: str) -> None:
    """Append an error output (as a kernel would write it) to ``cell``."""
    cell.setdefault("outputs", []).append(
        from_dict(
            {
                "output_type": "error",
                "ename": ename,
                "evalue": evalue,
                "traceback": [f"{ename}: {evalue}"],
            }
        )
    )


def drop_interrupt_errors(cell: NotebookNode) -> None:
    """Remove the KeyboardInterrupt the grader's own interrupt caused: the cell gets the grader's error instead."""
    cell.outputs = [
        o
        for o in cell.get("outputs", [])
        if not (o.get("output_type") == "error" and o.get("ename") == "KeyboardInterrupt")
    ]


def flag_not_run(nb: NotebookNode, cell: NotebookNode, reason: str) -> None:
    """Mark ``cell`` as not run (and, for a graded cell, flag it for the instructor), never as failed."""
    add_error(
        cell, "NotGraded", f"this cell was not run: {reason}; your instructor will look at it"
    )
    name = grade_id(cell)
    if utils.is_grade(cell) and name:
        add_note(
            nb,
            f"The test {name} could not be run ({reason}); it is flagged for your instructor.",
            cell=name,
            flag=reason,
        )


def label(index: int, cell: NotebookNode) -> str:
    """How the notes name ``cell``: by its grade_id, or by its first line for a cell of the student's own."""
    name = grade_id(cell)
    if name:
        return f"the cell {name}"
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    return f"your cell that starts with `{first[:50].replace('`', '')}`"
