"""The class on a Dask cluster: one task per student, one coordinator writing the gradebook.

Each task carries its student's submitted files and the course (:mod:`vae_grader.pipeline.grading_task`);
a worker grades it with plain nbgrader in a scratch course of its own
(:mod:`vae_grader.pipeline.worker_grading`) and returns the record; this process alone writes the central
gradebook and ``autograded/`` as results arrive (:mod:`vae_grader.pipeline.gradebook_writer`), so no two
writers ever contend for the gradebook, SQLite or PostgreSQL.

Faults: a task whose worker died is run again by the scheduler on another worker; its result is
written once, when it arrives, replacing any earlier record. A task given up because every worker
it was on died (``KilledWorker``) is graded once more, alone on the cluster, after the others: a
worker's death counts against every task the worker held, so a student merely graded beside a
killer must not be blamed. One that kills its workers alone too, or that raised in the grader, is
recorded at 0 points, flagged for manual grading with the reason; the other students are
unaffected. Losing the scheduler stops the run with one line naming its address.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from vae_grader.pipeline.cluster import PipelineError
from nbgrader.api import MissingEntry

from vae_grader.pipeline.course_folder import CourseConfig, Progress, forget_submissions, gradebook
from vae_grader.pipeline.grading_task import (
    CourseBundle,
    GradedSubmission,
    GradingTask,
    read_submission,
)
from vae_grader.pipeline.gradebook_writer import record_graded, record_ungradable
from vae_grader.paths import ASSIGNMENT
from vae_grader.pipeline.worker_grading import grade_task

Grader = Callable[[GradingTask], GradedSubmission]


def killed_reason(error: BaseException) -> str:
    """One line for the gradebook and the table: why the cluster gave this submission up."""
    tries = getattr(error, "allowed_failures", None)
    last = getattr(error, "last_worker", None)
    address = getattr(last, "address", None) or str(last or "")
    return (
        "every worker that graded this submission died"
        + (f" ({tries + 1} workers)" if isinstance(tries, int) else "")
        + (f", the last {address}" if address else "")
        + "; grade it by hand"
    )


def due_date(config: CourseConfig) -> str | None:
    """The assignment's due date in the central gradebook, for the workers' own gradebooks."""
    with gradebook(config) as gb:
        try:
            duedate = gb.find_assignment(ASSIGNMENT).duedate
        except MissingEntry:
            return None
    return duedate.isoformat() if duedate else None


def lost_scheduler(address: str, error: BaseException) -> PipelineError:
    detail = str(error).splitlines()[0] if str(error) else type(error).__name__
    return PipelineError(f"lost the connection to the Dask scheduler at {address}: {detail}")


def progress_bar(total: int, enabled: bool):
    """A rich progress bar (done / total, elapsed, ETA) on the terminal, or None."""
    if not enabled:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("autograde"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    bar.add_task("autograde", total=total)
    return bar


def autograde_on_cluster(
    root: Path,
    config: CourseConfig,
    students: Sequence[str],
    logs: Path,
    client,
    say: Progress,
    elapsed: Callable[[], str],
    bar: bool = False,
    grade: Grader = grade_task,
    on_recorded: Callable[[str], None] | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """Grade ``students`` (already in ``submitted/``) on ``client``'s cluster; (seconds, errors).

    Every student ends with exactly one gradebook record: the worker's, or a flagged 0.
    ``on_recorded(student)`` is called as soon as a student's record is written (the watch command
    notes it there, so a restart never grades it again).
    """
    from distributed import as_completed
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker

    forget_submissions(config, students)
    course = CourseBundle.of(root, due_date(config))
    seconds: dict[str, float] = {}
    errors: dict[str, str] = {}
    address = client.scheduler.address
    progress = progress_bar(len(students), bar)
    started = time.monotonic()

    def submit(student: str):
        task = GradingTask(
            student=student,
            course=course,
            submission=read_submission(root / "submitted" / student / ASSIGNMENT),
        )
        # One task group ("autograde": Dask's key_split stops at the number), so that with more
        # students than twice the threads the scheduler queues them (cluster.grading_client).
        with warnings.catch_warnings():
            # The task carries the submission by design (workers share no file system), so one near
            # intake's cap (50 MB a notebook; the corpus has two) makes a large graph: no news.
            warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
            return client.submit(
                grade, task, key=f"autograde-{time.time_ns()}-{student}", pure=False
            )

    suspects: list[str] = []

    def record(student: str, future, alone: bool) -> None:
        """Write the student's one record from its finished ``future`` and print its line; a task
        given up by the scheduler (``KilledWorker``) that was not graded ``alone`` is only noted
        in ``suspects``, to be graded again alone."""
        where = ""
        ungradable = None
        try:
            graded = future.result()
        except KilledWorker as error:
            if not alone:
                suspects.append(student)  # maybe only graded beside the real killer
                return
            ungradable = killed_reason(error)
        except Exception as error:
            if client.status != "running" or isinstance(error, FutureCancelledError):
                raise lost_scheduler(address, error) from None
            # the grader itself failed on this submission
            ungradable = f"the grader failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        if ungradable is not None:
            errors[student] = ungradable
            seconds[student] = time.monotonic() - started
            record_ungradable(root, config, student, ungradable)
        else:
            where = f" on {graded.worker}"
            seconds[student] = graded.seconds
            (logs / f"autograde-{student}.log").write_text(graded.log)
            record_graded(root, config, graded)
            if not graded.ok:
                errors[student] = graded.summary
        if on_recorded:
            on_recorded(student)
        line = f"[{elapsed()}] {len(seconds)}/{len(students)} {student}: {seconds[student]:.1f} s{where}"
        if student in errors:
            line += f" - {errors[student]}"
        if progress:
            progress.console.print(line, highlight=False)
            progress.advance(progress.task_ids[0])
        else:
            say(line)

    futures = {submit(student): student for student in students}
    say(f"[{elapsed()}] {len(students)} student(s) sent to the Dask scheduler {address}")
    try:
        if progress:
            progress.start()
        for future in as_completed(futures, loop=client.loop):
            record(futures[future], future, alone=False)
        # A worker's death counts against every task it held, so a student graded beside a killer
        # can be blamed for its deaths: each suspect is graded again alone on the cluster, and only
        # one that kills its workers there too is flagged.
        for student in suspects:
            say(f"[{elapsed()}] {student}: its workers died; graded again alone")
            future = submit(student)
            record(student, future, alone=True)  # waits for it
    except OSError as error:  # the connection itself (distributed's CommClosedError is an OSError)
        raise lost_scheduler(address, error) from None
    finally:
        if progress:
            progress.stop()
    return {s: seconds[s] for s in students}, errors
