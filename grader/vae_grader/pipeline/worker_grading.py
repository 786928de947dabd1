"""The worker's side of a grading task: plain ``nbgrader autograde`` in the worker's own scratch course.

A worker (a Dask worker process, on any machine with the course environment installed) unpacks the
task's course into a folder of its own once per course version (``generate_assignment`` there fills
a throwaway SQLite gradebook with the assignment's cells), then grades each student with the
course's own ``nbgrader_config.py``: the same plugins, sandbox and limits as a grading on the
instructor's machine. It reads back what nbgrader wrote (the student's gradebook record and
autograded files) and returns them; the central gradebook is written by the coordinator alone.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from vae_grader.pipeline.grading_task import (
    CommentRecord,
    CourseBundle,
    GradedSubmission,
    GradeRecord,
    GradingTask,
    NotebookRecord,
    read_tree,
    write_submission,
    write_tree,
)
from vae_grader.paths import ASSIGNMENT, tool_env

STUDENT_TIMEOUT_S = 4200
"""A whole ``nbgrader autograde`` of one student, in wall time: above the executor's own wall-clock backstop
(``RobustExecute.submission_wall_seconds``, 3600 s), which flags what it could not reach instead of losing the
whole submission; the CPU-time limits normally stop far earlier."""

_prepared: dict[str, Path] = {}
_lock = threading.Lock()


def scratch_base() -> Path:
    """The worker's own folder (``dask worker --local-directory``), else a temporary one."""
    try:
        from distributed import get_worker

        return Path(get_worker().local_directory)
    except ValueError:  # not running inside a Dask worker (a direct call in a test)
        return Path(tempfile.gettempdir())


def worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except ValueError:
        return f"{socket.gethostname()}:{os.getpid()}"


def nbgrader_env() -> dict[str, str]:
    """The coordinator's gradebook URL must never reach the worker's nbgrader: it grades into its
    own throwaway SQLite file, and only the coordinator writes the central gradebook."""
    env = tool_env()
    env.pop("NBGRADER_DB_URL", None)
    return env


def prepared_course(bundle: CourseBundle) -> Path:
    """The worker's scratch course for this course version, made once per worker process."""
    from vae_grader.pipeline.nbgrader_runs import run_nbgrader

    with _lock:
        root = _prepared.get(bundle.digest)
        if root is not None and (root / "gradebook.db").is_file():
            return root
        root = Path(tempfile.mkdtemp(prefix=f"course-{bundle.digest}-", dir=scratch_base()))
        write_tree(root, bundle.files)
        run_nbgrader(
            root,
            root / "generate_assignment.log",
            "generate_assignment",
            ASSIGNMENT,
            "--force",
            env=nbgrader_env(),
        )
        if bundle.duedate:
            with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
                gb.update_or_create_assignment(ASSIGNMENT, duedate=bundle.duedate)
        _prepared[bundle.digest] = root
        return root


def grade_task(task: GradingTask) -> GradedSubmission:
    """Grade one student with plain nbgrader in the worker's scratch course; return what it wrote."""
    from vae_grader.pipeline.nbgrader_runs import run_nbgrader

    root = prepared_course(task.course)
    for folder in ("submitted", "autograded"):
        shutil.rmtree(root / folder / task.student, ignore_errors=True)
    partners = root / f".partners-{task.student}"
    shutil.rmtree(partners, ignore_errors=True)
    write_submission(root / "submitted" / task.student / ASSIGNMENT, task.submission, partners)
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        try:
            gb.remove_submission(ASSIGNMENT, task.student)
        except MissingEntry:
            pass
    log = root / f"autograde-{task.student}.log"
    start = time.monotonic()
    ok, summary = run_nbgrader(
        root,
        log,
        "autograde",
        ASSIGNMENT,
        "--force",
        "--student",
        task.student,
        check=False,
        timeout=STUDENT_TIMEOUT_S,
        env=nbgrader_env(),
    )
    seconds = time.monotonic() - start
    shutil.rmtree(partners, ignore_errors=True)
    result = read_record(root, task.student)
    return GradedSubmission(
        student=task.student,
        ok=ok,
        summary="" if ok else summary,
        seconds=seconds,
        worker=worker_name(),
        autograded=read_tree(root / "autograded" / task.student / ASSIGNMENT),
        log=log.read_text(errors="replace"),
        **result,
    )


def read_record(root: Path, student: str) -> dict:
    """The student's submission in the worker's gradebook, as the fields of :class:`GradedSubmission`."""
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        try:
            submission = gb.find_submission(ASSIGNMENT, student)
        except MissingEntry:
            return {"recorded": False}
        notebooks, grades, comments = [], [], []
        for notebook in submission.notebooks:
            notebooks.append(
                NotebookRecord(
                    notebook.name, bool(notebook.flagged), notebook.late_submission_penalty
                )
            )
            grades += [
                GradeRecord(
                    notebook.name,
                    grade.name,
                    grade.auto_score,
                    grade.manual_score,
                    grade.extra_credit,
                    bool(grade.needs_manual_grade),
                )
                for grade in notebook.grades
            ]
            comments += [
                CommentRecord(notebook.name, c.name, c.auto_comment, c.manual_comment)
                for c in notebook.comments
            ]
        return {
            "recorded": True,
            "timestamp": submission.timestamp.isoformat() if submission.timestamp else None,
            "notebooks": tuple(notebooks),
            "grades": tuple(grades),
            "comments": tuple(comments),
        }
