"""The coordinator's writes to the central gradebook: one writer, whatever the database.

Workers grade into throwaway gradebooks of their own; the coordinator copies each student's record
into the course's gradebook (SQLite, or PostgreSQL through ``NBGRADER_DB_URL``) with nbgrader's
public :class:`~nbgrader.api.Gradebook` API, field for field what ``nbgrader autograde`` wrote, and
the autograded files into ``autograded/<student>/<assignment>/``. A student's old record is
replaced, never added to, so a task that ran twice (its worker died after finishing) still leaves
one submission, one grade per cell. A submission no worker could grade is recorded at 0 points
with every cell flagged for manual grading, and the reason kept in the gradebook's comment.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from sqlalchemy.exc import SAWarning

from vae_grader.pipeline.course_folder import CourseConfig
from vae_grader.pipeline.grading_task import GradedSubmission, write_tree
from vae_grader.paths import ASSIGNMENT


def _fresh_submission(gb: Gradebook, student: str, timestamp: str | None):
    try:
        gb.remove_submission(ASSIGNMENT, student)
    except MissingEntry:
        pass
    gb.update_or_create_student(student)
    with warnings.catch_warnings():
        # nbgrader's add_submission builds its rows before adding them to the session, and
        # SQLAlchemy's autoflush says so for each; the rows are added and committed right after.
        warnings.simplefilter("ignore", SAWarning)
        return gb.add_submission(
            ASSIGNMENT, student, **({"timestamp": timestamp} if timestamp else {})
        )


def record_graded(root: Path, config: CourseConfig, graded: GradedSubmission) -> None:
    """Write a worker's result into the course: autograded files, then the gradebook record."""
    folder = root / "autograded" / graded.student / ASSIGNMENT
    shutil.rmtree(folder, ignore_errors=True)
    if graded.autograded:
        write_tree(folder, graded.autograded)
    if not graded.recorded:  # nbgrader stopped before recording anything, as it would here
        return
    with Gradebook(config.db_url, course_id=config.course_id) as gb:
        submission = _fresh_submission(gb, graded.student, graded.timestamp)
        notebooks = {nb.name: nb for nb in submission.notebooks}
        for record in graded.notebooks:
            if record.notebook in notebooks:
                notebooks[record.notebook].flagged = record.flagged
                notebooks[record.notebook].late_submission_penalty = record.late_submission_penalty
        for record in graded.grades:
            grade = gb.find_grade(record.cell, record.notebook, ASSIGNMENT, graded.student)
            grade.auto_score = record.auto_score
            grade.manual_score = record.manual_score
            grade.extra_credit = record.extra_credit
            grade.needs_manual_grade = record.needs_manual_grade
        for record in graded.comments:
            comment = gb.find_comment(record.cell, record.notebook, ASSIGNMENT, graded.student)
            comment.auto_comment = record.auto_comment
            comment.manual_comment = record.manual_comment
        gb.db.commit()


def record_ungradable(root: Path, config: CourseConfig, student: str, reason: str) -> None:
    """A submission the cluster could not grade: 0 points on every cell, each flagged for manual
    grading with ``reason`` as the auto comment of its notebook's cells, and no autograded copy."""
    shutil.rmtree(root / "autograded" / student / ASSIGNMENT, ignore_errors=True)
    with Gradebook(config.db_url, course_id=config.course_id) as gb:
        submission = _fresh_submission(gb, student, None)
        for notebook in submission.notebooks:
            notebook.flagged = True
            for grade in notebook.grades:
                grade.auto_score = 0.0
                grade.needs_manual_grade = True
            for comment in notebook.comments:
                comment.auto_comment = f"Not graded automatically: {reason}"
        gb.db.commit()
