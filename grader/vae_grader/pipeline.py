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
* One ``autograde`` per student: progress is shown per student, and a submission that crashes
  nbgrader itself cannot take the others down with it. Students are graded a few at a time
  (:func:`grading_workers`), each nbgrader process pinned to its own CPU cores.
* A student's old gradebook record is dropped before regrading, so a regrade that fails can
  never leave the previous run's scores looking current.
* Students that an earlier run of this pipeline wrote, but that are no longer in the set, are
  removed (their folders and their gradebook record); students written by anyone else are never
  touched. The list lives in ``submitted/.pipeline-students.json``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import queue
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry

from vae_grader.paths import ASSIGNMENT, NOTEBOOK, nbgrader_command, tool_env
from vae_grader.submissions import Submission, points_by_cell

Progress = Callable[[str], None]
_STUDENT_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
MARKER = ".pipeline-students.json"
WORKERS_ENV = "VAE_GRADING_WORKERS"
STUDENT_TIMEOUT_S = 900
"""A whole ``nbgrader autograde`` of one student; nbgrader's per-cell timeout normally stops far earlier."""


@dataclass(frozen=True)
class StudentResult:
    """What the gradebook says about one student after the run."""

    student: str
    scores: dict[str, float]
    """grade_id -> points, for every graded cell of the master (0 where nbgrader recorded nothing)."""
    total: float
    needs_manual_grade: bool
    """nbgrader could not grade some cell automatically (e.g. a grade cell was deleted)."""
    autograde_seconds: float
    feedback: Path | None
    """The student's feedback page, or None when nbgrader wrote none."""
    error: str | None = None
    """One line when nbgrader could not grade the submission at all."""


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


class PipelineError(RuntimeError):
    """A pipeline step failed for every student (not one student's submission)."""


def run_pipeline(
    course_root: Path,
    submissions: Sequence[Submission],
    progress: Progress | None = print,
    workers: int | None = None,
) -> GradingRun:
    """Release, submit, autograde, feedback and export ``submissions`` in ``course_root``.

    ``workers``: students autograded at once (default :func:`grading_workers`).
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
    steps: dict[str, float] = {}
    start = time.monotonic()

    def elapsed() -> str:
        return f"{time.monotonic() - start:6.1f} s"

    say(f"[{elapsed()}] nbgrader generate_assignment {ASSIGNMENT} --force")
    t0 = time.monotonic()
    _nbgrader(root, logs / "generate_assignment.log", "generate_assignment", ASSIGNMENT, "--force")
    steps["generate_assignment"] = time.monotonic() - t0

    master = nbformat.read(root / "source" / ASSIGNMENT / NOTEBOOK, as_version=4)
    release = nbformat.read(root / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)
    max_points = points_by_cell(master)

    t0 = time.monotonic()
    _forget_stale_students(root, config, set(students), say)
    for submission in submissions:
        _write_submission(root, submission, master, release)
    (root / "submitted" / MARKER).write_text(json.dumps(students, indent=1) + "\n")
    steps["submit"] = time.monotonic() - t0
    say(
        f"[{elapsed()}] wrote {len(submissions)} submission(s) to submitted/<student>/{ASSIGNMENT}/"
    )

    t0 = time.monotonic()
    seconds, errors = _autograde_all(
        root, config, students, logs, workers or grading_workers(), say, elapsed
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
    ok, line = _nbgrader(
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
    _nbgrader(root, logs / "export.log", "export", "--to", str(csv_path))
    steps["export"] = time.monotonic() - t0

    results = _read_results(root, config, students, max_points, seconds, errors)
    say(f"[{elapsed()}] done")
    return GradingRun(
        course_root=root,
        max_points=max_points,
        results=results,
        csv_path=csv_path,
        step_seconds=steps,
    )


def copy_course(destination: Path, source: Path | None = None) -> Path:
    """A scratch course directory with the configuration, the master and the release, nothing graded.

    Its ``nbgrader_config.py`` points nbgrader at the copy itself (CourseDirectory.root is the
    file's own folder), so grading there never touches the real course's gradebook.
    """
    from vae_grader.paths import COURSE_ROOT

    source = Path(source or COURSE_ROOT)
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "nbgrader_config.py", destination / "nbgrader_config.py")
    for folder in ("source", "release"):
        shutil.copytree(source / folder, destination / folder, dirs_exist_ok=True)
    return destination


# --- the course directory's own nbgrader configuration --------------------------------------------


@dataclass(frozen=True)
class CourseConfig:
    db_url: str
    course_id: str


def course_config(root: Path) -> CourseConfig:
    """The gradebook URL and course id exactly as nbgrader will read them from ``nbgrader_config.py``
    (loading it changes nothing in this process: the kernel's defaults are set when it starts)."""
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    coursedir = config.get("CourseDirectory", {})
    db_url = coursedir.get("db_url") or f"sqlite:///{root / 'gradebook.db'}"
    return CourseConfig(
        db_url=str(db_url), course_id=str(coursedir.get("course_id") or "default_course")
    )


@contextmanager
def gradebook(config: CourseConfig) -> Iterator[Gradebook]:
    with Gradebook(config.db_url, course_id=config.course_id) as gb:
        yield gb


# --- steps -----------------------------------------------------------------------------------------


def grading_workers() -> int:
    """Students autograded at once: ``$VAE_GRADING_WORKERS``, else one per usable CPU core, at most 4.

    Each worker is pinned to its own cores (:func:`_core_groups`), so a student's runaway code slows
    only its own worker. On 2 cores two workers graded the 35 sample submissions (demo set and
    corpus) in 839 s of wall time, while their autograde times add up to 1,649 s, and the CI run
    went from 2,081 s to 1,229 s (README, "Grading time and the benchmark"): most of a submission's
    time is single-threaded (nbgrader's start-up, importing TensorFlow in the kernel, building small
    test models).
    """
    value = os.environ.get(WORKERS_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise PipelineError(
                f"{WORKERS_ENV} must be a whole number of at least 1, not {value!r}"
            )
        return int(value)
    return max(1, min(4, len(_usable_cores()) or 1))


def _usable_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def _core_groups(workers: int) -> list[list[int] | None]:
    """The cores each worker may use: disjoint groups where pinning works, else no pinning (None)."""
    cores = _usable_cores()
    if workers < 2 or len(cores) < workers or not shutil.which("taskset"):
        return [None] * workers
    return [cores[i::workers] for i in range(workers)]


def _autograde_all(
    root: Path,
    config: CourseConfig,
    students: Sequence[str],
    logs: Path,
    workers: int,
    say: Progress,
    elapsed: Callable[[], str],
) -> tuple[dict[str, float], dict[str, str]]:
    """``nbgrader autograde --student`` once per student, ``workers`` at a time; (seconds, errors)."""
    _forget_submissions(config, students)
    seconds: dict[str, float] = {}
    errors: dict[str, str] = {}
    free_cores: queue.Queue[list[int] | None] = queue.Queue()
    for group in _core_groups(workers):
        free_cores.put(group)
    lock = threading.Lock()
    started = 0

    def grade(student: str) -> None:
        nonlocal started
        cores = free_cores.get()
        try:
            with lock:
                started += 1
                say(f"[{elapsed()}] autograde {started}/{len(students)} {student} ...")
            t_student = time.monotonic()
            ok, line = _nbgrader(
                root,
                logs / f"autograde-{student}.log",
                "autograde",
                ASSIGNMENT,
                "--force",
                "--student",
                student,
                check=False,
                timeout=STUDENT_TIMEOUT_S,
                cores=cores,
            )
            with lock:
                seconds[student] = time.monotonic() - t_student
                if ok:
                    errors.pop(student, None)
                else:
                    errors[student] = line
                say(
                    f"[{elapsed()}]   {student}: {seconds[student]:.1f} s"
                    + (f" - nbgrader failed: {line}" if not ok else "")
                )
        finally:
            free_cores.put(cores)

    if workers > 1:
        say(f"[{elapsed()}] autograding {len(students)} student(s), {workers} at a time")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(grade, student) for student in students]:
            future.result()
    # Two nbgrader processes can, rarely, both want to write the SQLite gradebook for longer than its
    # 5 s lock wait. That is the grader's problem, not the student's: grade them again, alone.
    locked = [
        s
        for s in students
        if s in errors
        and "database is locked" in (logs / f"autograde-{s}.log").read_text(errors="replace")
    ]
    for student in locked:
        say(f"[{elapsed()}] {student}: the gradebook was busy; grading again on its own")
        _forget_submissions(config, [student])
        grade(student)
    return {s: seconds[s] for s in students}, errors


def _forget_submissions(config: CourseConfig, students: Sequence[str]) -> None:
    """Drop the students' gradebook records: a regrade that fails must not leave the previous run's
    scores looking current."""
    with gradebook(config) as gb:
        for student in students:
            try:
                gb.remove_submission(ASSIGNMENT, student)
            except MissingEntry:  # first run for this student
                pass


def _nbgrader(
    root: Path,
    log: Path,
    *args: str,
    check: bool = True,
    timeout: float | None = None,
    cores: list[int] | None = None,
) -> tuple[bool, str]:
    """Run one nbgrader command in ``root`` (on ``cores`` only, if given); keep its output in ``log``;
    return (ok, one-line summary)."""
    command = nbgrader_command(*args)
    if cores:
        command = ["taskset", "--cpu-list", ",".join(map(str, cores)), *command]
    with open(log, "w") as handle:
        handle.write("$ nbgrader " + " ".join(args) + "\n")
        handle.flush()
        process = subprocess.Popen(
            command,
            cwd=root,
            env=tool_env(),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # nbgrader and the kernel it started
            process.wait()
            code = None
    summary = (
        f"stopped after {timeout:.0f} s"
        if code is None
        else _summary(log.read_text(errors="replace"))
    )
    ok = code == 0
    if check and not ok:
        raise PipelineError(f"nbgrader {args[0]} failed: {summary} (full log: {log})")
    return ok, summary


_EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception|Exit|Interrupt)\w*: \S")


def _summary(text: str) -> str:
    """The most telling line of an nbgrader log: the last exception it printed (with nbclient's
    "The message was: ..." line), else its last ERROR line, else its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for index in range(len(lines) - 1, -1, -1):
        if _EXCEPTION_LINE.match(lines[index]):
            detail = (
                lines[index + 1]
                if index + 1 < len(lines) and lines[index + 1].startswith("The message was")
                else ""
            )
            return f"{lines[index]} {detail}".strip()[:300]
    errors = [line for line in lines if "| ERROR]" in line]
    return (errors or lines or ["(no output)"])[-1][:300]


def _write_submission(
    root: Path,
    submission: Submission,
    master: nbformat.NotebookNode,
    release: nbformat.NotebookNode,
) -> None:
    folder = root / "submitted" / submission.student / ASSIGNMENT
    if folder.exists():
        shutil.rmtree(folder)  # a previous run may have used another file name
    folder.mkdir(parents=True)
    content = submission.build(master, release)
    path = folder / submission.filename
    if isinstance(content, bytes):
        path.write_bytes(content)  # deliberately broken files are written exactly as given
    else:
        with (
            warnings.catch_warnings()
        ):  # e.g. DuplicateCellId for a copy-pasted cell: expected here
            warnings.simplefilter("ignore")
            nbformat.write(content, path)
    write_files = getattr(
        submission, "write_files", None
    )  # extra files beside the notebook (adversarial corpus)
    if callable(write_files):
        write_files(folder)


def _forget_stale_students(
    root: Path, config: CourseConfig, current: set[str], say: Progress
) -> None:
    marker = root / "submitted" / MARKER
    try:
        previous = set(json.loads(marker.read_text()))
    except (OSError, ValueError):
        previous = set()
    stale = sorted(previous - current)
    if not stale:
        return
    say(
        f"removing {len(stale)} student(s) from an earlier run that are no longer in the set: {', '.join(stale)}"
    )
    for student in stale:
        for folder in ("submitted", "autograded", "feedback"):
            shutil.rmtree(root / folder / student, ignore_errors=True)
    with gradebook(config) as gb:
        for student in stale:
            try:
                gb.remove_student(student)
            except MissingEntry:  # already gone
                pass


def _read_results(
    root: Path,
    config: CourseConfig,
    students: Sequence[str],
    max_points: dict[str, float],
    seconds: dict[str, float],
    errors: dict[str, str],
) -> dict[str, StudentResult]:
    results = {}
    with gradebook(config) as gb:
        for student in students:
            scores = dict.fromkeys(max_points, 0.0)
            manual = False
            error = errors.get(student)
            try:
                submission = gb.find_submission(ASSIGNMENT, student)
            except MissingEntry:
                submission = None
                error = error or "nbgrader recorded no submission"
            if submission is not None:
                manual = bool(submission.needs_manual_grade)
                graded = [grade for notebook in submission.notebooks for grade in notebook.grades]
                if not any(
                    grade.auto_score is not None or grade.manual_score is not None
                    for grade in graded
                ):
                    error = error or "nbgrader graded no cell (is the notebook missing or renamed?)"
                for grade in graded:
                    if grade.name in scores:
                        scores[grade.name] = float(grade.score or 0.0)
            feedback = (
                root / "feedback" / student / ASSIGNMENT / NOTEBOOK.replace(".ipynb", ".html")
            )
            results[student] = StudentResult(
                student=student,
                scores=scores,
                total=sum(scores.values()),
                needs_manual_grade=manual,
                autograde_seconds=seconds.get(student, 0.0),
                feedback=feedback if feedback.is_file() else None,
                error=error,
            )
    return results
