"""The instructor pipeline, run with nbgrader's own commands on a list of sample submissions.

:func:`run_pipeline` does in one call what an instructor does by hand from the course root::

    nbgrader generate_assignment vae --force
    (copy each submission to submitted/<student>/vae/)
    nbgrader autograde vae --force --student <student>     # once per student
    nbgrader generate_feedback vae --force
    nbgrader export --to exports/grades.csv

and then reads every student's per-cell points back from the gradebook. Everything the course
adds (feedback filtering, kernel, timeouts, grading budget) comes from ``nbgrader_config.py`` in
the course root, so what this module measures is what plain nbgrader commands produce.

Why the details:

* ``--force`` everywhere: without it nbgrader silently keeps existing outputs, so a re-run would
  report the previous run's results.
* One ``autograde`` per student, each a task on a Dask cluster (:mod:`vae_grader.pipeline.dask_runs`):
  an embedded ``LocalCluster`` sized to the machine, or an existing scheduler (``scheduler``,
  ``$VAE_DASK_SCHEDULER``). Workers grade in scratch courses of their own; this process alone
  writes the gradebook.
* A student's old gradebook record is dropped before regrading, so a regrade that fails can
  never leave the previous run's scores looking current.
* Students that an earlier run of this pipeline wrote, but that are no longer in the set, are
  removed (their folders and their gradebook record); students written by anyone else are never
  touched. The list lives in ``submitted/.pipeline-students.json``.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from vae_grader.pipeline.course_folder import (
    MARKER,
    Progress,
    StudentResult,
    copy_course,
    course_config,
    forget_stale_students,
    gradebook,
    read_results,
    write_submission,
)
from vae_grader.pipeline.cluster import grading_client, scheduler_address
from vae_grader.pipeline.dask_runs import autograde_on_cluster
from vae_grader.pipeline.cluster import PipelineError, grading_workers
from vae_grader.pipeline.nbgrader_runs import run_nbgrader
from vae_grader.paths import ASSIGNMENT, NOTEBOOK
from vae_grader.submissions import Submission, points_by_cell

__all__ = [
    "GradingRun",
    "PipelineError",
    "StudentResult",
    "copy_course",
    "course_config",
    "gradebook",
    "grading_workers",
    "run_pipeline",
]

_STUDENT_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass
class GradingRun:
    """The result of :func:`run_pipeline`."""

    course_root: Path
    max_points: dict[str, float]
    """grade_id -> maximum points, in notebook order, read from the master."""
    results: dict[str, StudentResult]
    """student -> result, in the order the submissions were given."""
    csv_path: Path
    step_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return sum(self.step_seconds.values())

    @property
    def max_total(self) -> float:
        return sum(self.max_points.values())


def run_pipeline(
    course_root: Path,
    submissions: Sequence[Submission],
    progress: Progress | None = print,
    workers: int | None = None,
    scheduler: str | None = None,
    bar: bool = False,
) -> GradingRun:
    """Release, submit, autograde, feedback and export ``submissions`` in ``course_root``.

    ``workers``: worker processes of the embedded cluster (default :func:`grading_workers`);
    ``scheduler``: address of an existing Dask scheduler instead (default ``$VAE_DASK_SCHEDULER``);
    ``bar``: show a progress bar on the terminal.
    """
    root = Path(course_root).resolve()
    say = progress or (lambda message: None)
    if not (root / "nbgrader_config.py").is_file():
        raise PipelineError(f"{root} is not a course directory: it has no nbgrader_config.py")
    students = [s.student for s in submissions]
    duplicates = sorted({s for s in students if students.count(s) > 1})
    if duplicates:
        raise PipelineError(f"student ids must be unique; repeated: {', '.join(duplicates)}")
    unsafe = [s for s in students if not _STUDENT_ID.fullmatch(s)]
    if unsafe:
        raise PipelineError(
            f"student ids become folder names; use letters, digits, '_', '-' and '.': {unsafe}"
        )
    config = course_config(root)
    logs = root / "exports" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()

    def elapsed() -> str:
        return f"{time.monotonic() - start:6.1f} s"

    with ExitStack() as stack:
        return _run(
            root, submissions, students, config, logs, say, elapsed, stack, workers, scheduler, bar
        )


def _run(
    root: Path,
    submissions: Sequence[Submission],
    students: list[str],
    config,
    logs: Path,
    say: Progress,
    elapsed,
    stack: ExitStack,
    workers: int | None,
    scheduler: str | None,
    bar: bool,
) -> GradingRun:
    """The steps of :func:`run_pipeline`, the cluster held open by ``stack`` until they end."""
    steps: dict[str, float] = {}

    address = scheduler_address(scheduler)
    client = stack.enter_context(grading_client(address, workers))
    dashboard = client.dashboard_link if _has_dashboard(client) else None
    say(
        f"[{elapsed()}] Dask cluster: "
        + (
            f"scheduler {address}"
            if address
            else f"embedded LocalCluster, {len(client.scheduler_info()['workers'])} worker process(es)"
        )
        + (f"; dashboard {dashboard}" if dashboard else "")
    )

    say(f"[{elapsed()}] nbgrader generate_assignment {ASSIGNMENT} --force")
    t0 = time.monotonic()
    run_nbgrader(
        root, logs / "generate_assignment.log", "generate_assignment", ASSIGNMENT, "--force"
    )
    steps["generate_assignment"] = time.monotonic() - t0

    master = nbformat.read(root / "source" / ASSIGNMENT / NOTEBOOK, as_version=4)
    release = nbformat.read(root / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)
    max_points = points_by_cell(master)

    t0 = time.monotonic()
    forget_stale_students(root, config, set(students), say)
    for submission in submissions:
        write_submission(root, submission, master, release)
    (root / "submitted" / MARKER).write_text(json.dumps(students, indent=1) + "\n")
    steps["submit"] = time.monotonic() - t0
    say(
        f"[{elapsed()}] wrote {len(submissions)} submission(s) to submitted/<student>/{ASSIGNMENT}/"
    )

    t0 = time.monotonic()
    seconds, errors = autograde_on_cluster(
        root, config, students, logs, client, say, elapsed, bar=bar
    )
    steps["autograde"] = time.monotonic() - t0

    say(
        f"[{elapsed()}] nbgrader generate_feedback {ASSIGNMENT} --force ({len(students)} student(s))"
    )
    t0 = time.monotonic()
    for (
        student
    ) in students:  # a page nbgrader fails to rewrite must not survive from an earlier run
        shutil.rmtree(root / "feedback" / student, ignore_errors=True)
    ok, line = run_nbgrader(
        root,
        logs / "generate_feedback.log",
        "generate_feedback",
        ASSIGNMENT,
        "--force",
        check=False,
    )
    if not ok:
        say(
            f"[{elapsed()}]   generate_feedback reported an error (details in {logs / 'generate_feedback.log'}): {line}"
        )
    steps["generate_feedback"] = time.monotonic() - t0

    csv_path = root / "exports" / "grades.csv"
    say(f"[{elapsed()}] nbgrader export --to {csv_path.relative_to(root)}")
    t0 = time.monotonic()
    run_nbgrader(root, logs / "export.log", "export", "--to", str(csv_path))
    steps["export"] = time.monotonic() - t0

    results = read_results(root, config, students, max_points, seconds, errors)
    say(f"[{elapsed()}] done")
    return GradingRun(
        course_root=root,
        max_points=max_points,
        results=results,
        csv_path=csv_path,
        step_seconds=steps,
    )


def _has_dashboard(client) -> bool:
    """Dask serves its dashboard only with bokeh installed; say so only when there is one."""
    services = client.scheduler_info().get("services", {})
    return "dashboard" in services
