"""The last word before ``SaveAutoGrades``: no test cell scores more than a verdict gave it.

nbgrader grades a test cell by its outputs (``nbgrader.utils.determine_grade``): no outputs, a
NaN or a negative partial score all mean *full marks*. So any path that leaves a judged cell
without the judge's outputs (a verdict that raised, a step that cleared them, a bug of ours) would
pass it by default. The executor records the points of every verdict in nbconvert's ``resources``
(``vae_grader.kernel.judged_cells.VERDICTS``), where the student's kernel cannot reach; this preprocessor
compares each test cell's grade with that record and, where the grade is higher (or cannot be read),
replaces the cell's outputs with a zero and flags it for the instructor with the reason.
"""

from __future__ import annotations

import math

from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import NbGraderPreprocessor

from vae_grader.kernel.cell_messages import add_error
from vae_grader.cells import grade_id
from vae_grader.kernel.judged_cells import VERDICTS
from vae_grader.notes import add_note


class RequireVerdicts(NbGraderPreprocessor):
    """Fail closed: a test cell's grade never exceeds what its verdict gave (0 when it has none)."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        verdicts = resources.get(VERDICTS, {})
        for cell in nb.cells:
            if cell.cell_type != "code" or not utils.is_grade(cell) or utils.is_solution(cell):
                continue
            name = grade_id(cell) or "?"
            allowed = verdicts.get(name, 0.0)
            try:
                score, _ = utils.determine_grade(cell, self.log)
                readable = score is not None and math.isfinite(score)
            except (ValueError, KeyError, TypeError):
                score, readable = None, False
            if readable and score <= allowed + 1e-9:
                continue
            reason = (
                f"the grader reached no verdict for it (the cell would have scored {score!r}, "
                f"its verdict gave {allowed:g})"
            )
            student = resources.get("nbgrader", {}).get("student")
            self.log.error("Test cell %s of %s: %s", name, student, reason)
            cell.outputs = []
            add_error(cell, "NotGraded", f"{reason}; your instructor will look at it")
            add_note(
                nb,
                f"The test {name} could not be graded ({reason}); it is flagged for your instructor.",
                cell=name,
                flag=reason,
            )
        return nb, resources
