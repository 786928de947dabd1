"""``nbgrader autograde`` once per student, a few students at a time, each on its own CPU cores.

One nbgrader process per student: progress is shown per student, and a submission that crashes
nbgrader itself cannot take the others down with it. Each process is pinned to its own cores
(``taskset``), so a student's runaway code slows only its own worker, and is killed with everything
it started when it runs past ``STUDENT_TIMEOUT_S``.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vae_grader.course_folder import CourseConfig, Progress, forget_submissions
from vae_grader.paths import ASSIGNMENT, nbgrader_command, tool_env

WORKERS_ENV = "VAE_GRADING_WORKERS"
STUDENT_TIMEOUT_S = 4200
"""A whole ``nbgrader autograde`` of one student, in wall time: above the executor's own wall-clock
backstop (``RobustExecute.submission_wall_seconds``, 3600 s), which flags what it could not reach
instead of losing the whole submission; the CPU-time limits normally stop far earlier."""


class PipelineError(RuntimeError):
    """A pipeline step failed for every student (not one student's submission)."""


def grading_workers() -> int:
    """Students autograded at once: ``$VAE_GRADING_WORKERS``, else one per usable CPU core, at most 4.

    Each worker is pinned to its own cores (:func:`core_groups`), so a student's runaway code slows
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
    return max(1, min(4, len(usable_cores()) or 1))


def usable_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def core_groups(workers: int) -> list[list[int] | None]:
    """The cores each worker may use: disjoint groups where pinning works, else no pinning (None)."""
    cores = usable_cores()
    if workers < 2 or len(cores) < workers or not shutil.which("taskset"):
        return [None] * workers
    return [cores[i::workers] for i in range(workers)]


def autograde_all(
    root: Path,
    config: CourseConfig,
    students: Sequence[str],
    logs: Path,
    workers: int,
    say: Progress,
    elapsed: Callable[[], str],
) -> tuple[dict[str, float], dict[str, str]]:
    """``nbgrader autograde --student`` once per student, ``workers`` at a time; (seconds, errors)."""
    forget_submissions(config, students)
    seconds: dict[str, float] = {}
    errors: dict[str, str] = {}
    free_cores: queue.Queue[list[int] | None] = queue.Queue()
    for group in core_groups(workers):
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
            ok, line = run_nbgrader(
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
        forget_submissions(config, [student])
        grade(student)
    return {s: seconds[s] for s in students}, errors


def run_nbgrader(
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
        else log_summary(log.read_text(errors="replace"))
    )
    ok = code == 0
    if check and not ok:
        raise PipelineError(f"nbgrader {args[0]} failed: {summary} (full log: {log})")
    return ok, summary


EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception|Exit|Interrupt)\w*: \S")


def log_summary(text: str) -> str:
    """The most telling line of an nbgrader log: the last exception it printed (with nbclient's
    "The message was: ..." line), else its last ERROR line, else its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for index in range(len(lines) - 1, -1, -1):
        if EXCEPTION_LINE.match(lines[index]):
            detail = (
                lines[index + 1]
                if index + 1 < len(lines) and lines[index + 1].startswith("The message was")
                else ""
            )
            return f"{lines[index]} {detail}".strip()[:300]
    errors = [line for line in lines if "| ERROR]" in line]
    return (errors or lines or ["(no output)"])[-1][:300]
