"""Marking in the gradebook what the grader could not grade, so that a person looks at it.

The executor, intake and restructure steps record a flag (with its reason) in the notebook's notes
(``vae_grader.notes``) when a graded cell could not be run or its submission could not be read.
:class:`FlagForReview` runs after nbgrader's ``SaveAutoGrades`` and turns each flag into
nbgrader's own "needs manual grading" for that cell (``"*"``: every graded cell), so a
submission is never silently zeroed for the grader's failure.
"""

from __future__ import annotations

from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import NbGraderPreprocessor

from vae_grader.notes import flags_of


class FlagForReview(NbGraderPreprocessor):
    """After ``SaveAutoGrades``: mark the cells the grader could not grade as needing manual grading."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        flags = flags_of(nb)
        if not flags:
            return nb, resources
        info = resources["nbgrader"]
        graded = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if utils.is_grade(c)]
        with Gradebook(info["db_url"]) as gb:
            for grade_id in graded if "*" in flags else [g for g in flags if g in graded]:
                try:
                    grade = gb.find_grade(
                        grade_id, info["notebook"], info["assignment"], info["student"]
                    )
                except MissingEntry:
                    continue
                grade.needs_manual_grade = True
                reasons = flags.get(grade_id, []) + flags.get("*", [])
                self.log.warning(
                    "Flagged %s of %s for manual grading: %s",
                    grade_id,
                    info["student"],
                    "; ".join(reasons),
                )
            gb.db.commit()
        return nb, resources
