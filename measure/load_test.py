"""Whether machine load changes a grade: the same demo students graded idle and beside busy loops.

    python -m measure.load_test                      # wall-clock limits, then CPU-time limits
    python -m measure.load_test --limits cpu --busy 16 --students complete infinite_loop_cell
    taskset -c 0 python -m measure.load_test --busy 8   # on one core of a shared machine
    taskset -c 1 python -m measure.load_test --limits cpu --graders 7   # 8 graders on one core

Each run grades the chosen demo students with plain nbgrader (``vae_grader.pipeline.grade_class``) in a
scratch copy of the course, one at a time, first on the idle machine, then beside ``--busy``
processes that each burn a core (``--memory-mb`` adds a process that keeps touching that much
memory), or beside ``--graders`` other graders that grade the same students over and over, each
``nbgrader autograde`` in a scratch course of its own (``taskset -c 1 ... --graders 7``: eight
graders on one core). Two kinds of limits are compared in one command:

* ``wall``: the limits as they were, in wall-clock seconds, with no warm-up imports and no CPU
  share (``RobustExecute.limit_clock = "wall"``, ``warm_imports = []``, ``Sandbox.cpu_share = 0``);
* ``cpu``: the course's configuration as it is (CPU-time limits of the kernel's process tree, a
  wall-clock backstop, warm-up imports, a cgroup CPU share where the host allows one).

It prints every student's per-cell points in each run, the autograde wall time, and which cells
differ between idle and loaded; it exits 1 when the ``cpu`` limits gave any cell different points
under load. The load is bounded: each busy process ends by itself after ``--load-seconds``, and all
are killed when the command ends, however it ends. Measured results: docs/load.md.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

WALL_LIMITS = (
    "\n# load test: the limits as they were (wall-clock seconds, no warm-up, no CPU share)\n"
    'c.RobustExecute.limit_clock = "wall"\n'
    "c.RobustExecute.warm_imports = []\n"
    "c.Sandbox.cpu_share = 0.0\n"
)

_BUSY = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"
_MEMORY = (
    "import time\nend = time.monotonic() + {seconds}\nblock = bytearray({size})\n"
    "while time.monotonic() < end:\n    for i in range(0, len(block), 4096):\n        block[i] = (block[i] + 1) % 256\n"
)


@dataclass
class Outcome:
    limits: str
    load: str
    root: Path
    """The scratch course it was graded in."""
    scores: dict[str, dict[str, float]]
    """student -> grade_id -> points."""
    seconds: dict[str, float]
    """student -> autograde wall seconds."""
    flagged: dict[str, bool]


_RUNNING: list[subprocess.Popen] = []
"""The load processes now running (killed on any exit, SIGTERM included)."""


def _terminated(*_) -> None:
    _stop_all(_RUNNING)
    raise SystemExit(143)


_GRADER = (
    "from measure.load_test import grade_repeatedly\n"
    "grade_repeatedly({root!r}, {students!r}, {seconds})\n"
)


def grade_repeatedly(root: str, students: list[str], seconds: int) -> None:
    """A grader as load: grades ``students`` of the course ``root`` with plain nbgrader, in a scratch
    course of its own (the worker's side of the class pipeline), again and again for ``seconds``."""
    from vae_grader.paths import ASSIGNMENT
    from vae_grader.pipeline.grading_task import CourseBundle, GradingTask, read_submission
    from vae_grader.pipeline.worker_grading import grade_task

    course = Path(root)
    bundle = CourseBundle.of(course)
    tasks = [
        GradingTask(s, bundle, read_submission(course / "submitted" / s / ASSIGNMENT))
        for s in students
    ]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for task in tasks:
            grade_task(task)


def _stop_all(started: list[subprocess.Popen]) -> None:
    """Kill every load process with everything it started, whatever session each part leads (a grader's
    ``nbgrader autograde`` runs in a session of its own; its kernels end with it)."""
    import psutil

    for process in started:
        try:
            leader = psutil.Process(process.pid)
            tree = [leader, *leader.children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        for member in tree:
            try:
                member.kill()
            except psutil.NoSuchProcess:
                pass
        process.wait()
    started.clear()


@contextmanager
def grader_load(processes: int, root: Path, students: list[str], seconds: int) -> Iterator[str]:
    """``processes`` graders grading ``students`` of ``root`` over and over (:func:`grade_repeatedly`),
    each ending by itself after ``seconds``, all killed with their kernels on leaving."""
    started = _RUNNING
    scratch = Path(tempfile.mkdtemp(prefix="vae-load-graders-"))

    def stop() -> None:
        _stop_all(started)
        shutil.rmtree(scratch, ignore_errors=True)

    atexit.register(stop)
    try:
        for n in range(processes):
            tmp = scratch / str(n)
            tmp.mkdir()
            code = _GRADER.format(root=str(root), students=students, seconds=seconds)
            started.append(
                subprocess.Popen(
                    [sys.executable, "-c", code],
                    start_new_session=True,
                    env={**os.environ, "TMPDIR": str(tmp)},
                    cwd=Path(__file__).resolve().parent.parent,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(20)  # their kernels start and their training begins before the measured grading
        yield f"{processes} other graders"
    finally:
        stop()
        atexit.unregister(stop)


@contextmanager
def busy_load(processes: int, memory_mb: int, seconds: int) -> Iterator[str]:
    """``processes`` busy loops (and one process touching ``memory_mb`` MB), each ending by itself
    after ``seconds`` and all killed on leaving, on any exit path."""
    started = _RUNNING

    def stop() -> None:
        _stop_all(started)

    atexit.register(stop)
    try:
        for _ in range(processes):
            # Each in a session of its own: with the scheduler's autogroups (Linux's default for
            # desktops and many servers) processes of one session share one slice of the CPU, so
            # 16 loops in one session weigh like one (measured: 16 loops slowed a grading 1.3x).
            started.append(
                subprocess.Popen(
                    [sys.executable, "-c", _BUSY.format(seconds=seconds)], start_new_session=True
                )
            )
        if memory_mb:
            code = _MEMORY.format(seconds=seconds, size=memory_mb * 2**20)
            started.append(subprocess.Popen([sys.executable, "-c", code], start_new_session=True))
        yield f"{processes} busy loops" + (f" + {memory_mb} MB touched" if memory_mb else "")
    finally:
        stop()
        atexit.unregister(stop)


def grade(students: list[str], limits: str, load: str) -> Outcome:
    """Grade ``students`` once in a fresh scratch course, with ``limits`` ("wall" or "cpu")."""
    from vae_grader.pipeline.course_folder import copy_course
    from vae_grader.apps.demo import chosen_submissions
    from vae_grader.pipeline.grade_class import run_pipeline

    submissions = chosen_submissions(students)
    os.environ.pop("NBGRADER_DB_URL", None)  # the scratch copy keeps its own gradebook
    root = copy_course(Path(tempfile.mkdtemp(prefix=f"vae-load-{limits}-")) / "course")
    if limits == "wall":
        with open(root / "nbgrader_config.py", "a") as config:
            config.write(WALL_LIMITS)
    print(
        f"  grading {', '.join(students)} with {limits} limits, {load}, in {root} ...", flush=True
    )
    run = run_pipeline(root, submissions, progress=None, workers=1)
    return Outcome(
        limits,
        load,
        root,
        {s: dict(run.results[s].scores) for s in students},
        {s: run.results[s].autograde_seconds for s in students},
        {s: run.results[s].needs_manual_grade for s in students},
    )


def differences(idle: Outcome, loaded: Outcome, student: str) -> list[str]:
    """The cells whose points differ between the two runs, as ``grade_id a->b``."""
    a, b = idle.scores[student], loaded.scores[student]
    return [
        f"{cell} {a[cell]:g}->{b.get(cell, 0.0):g}" for cell in a if a[cell] != b.get(cell, 0.0)
    ]


def report(outcomes: list[Outcome], students: list[str]) -> str:
    """Per-cell points of every run, then one line per student and run: total, wall time, changes."""
    lines = []
    cells = list(outcomes[0].scores[students[0]])
    lines.append("per-cell points (" + ", ".join(cells) + ")")
    for o in outcomes:
        for s in students:
            points = " ".join(f"{o.scores[s][c]:g}" for c in cells)
            lines.append(f"  {o.limits:4s}  {o.load:28s}  {s:22s}  {points}")
    lines.append("")
    lines.append(
        f"{'limits':6s}  {'load':28s}  {'student':22s}  {'total':>5s}  {'autograde':>9s}  "
        f"{'flagged':7s}  cells that differ from idle"
    )
    by_limits: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_limits.setdefault(o.limits, []).append(o)
    for limits, runs in by_limits.items():
        idle = runs[0]
        for o in runs:
            for s in students:
                changed = differences(idle, o, s) if o is not idle else []
                lines.append(
                    f"{limits:6s}  {o.load:28s}  {s:22s}  {sum(o.scores[s].values()):5g}  "
                    f"{o.seconds[s]:8.1f}s  {'yes' if o.flagged[s] else 'no':7s}  "
                    f"{', '.join(changed) if changed else ('-' if o is idle else 'none')}"
                )
        for o in runs[1:]:
            ratio = [o.seconds[s] / idle.seconds[s] for s in students if idle.seconds[s]]
            if ratio:
                lines.append(
                    f"{limits:6s}  {o.load}: autograde wall time x{min(ratio):.1f}-x{max(ratio):.1f} of idle"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--students", nargs="+", default=["complete"], metavar="NAME", help="demo students"
    )
    parser.add_argument(
        "--limits",
        choices=("both", "wall", "cpu"),
        default="both",
        help="which limits to grade with (default: wall-clock first, then CPU time)",
    )
    parser.add_argument(
        "--busy",
        type=int,
        default=8 * (os.cpu_count() or 1),
        help="busy-loop processes beside the grader (default: 8 per core)",
    )
    parser.add_argument(
        "--graders",
        type=int,
        default=0,
        help="load with this many other graders of the same students instead of busy loops",
    )
    parser.add_argument(
        "--memory-mb", type=int, default=0, help="memory one more process keeps touching"
    )
    parser.add_argument(
        "--load-seconds",
        type=int,
        default=1800,
        help="each load process ends by itself after this long (default 1800)",
    )
    args = parser.parse_args(argv)
    if args.busy < 1:
        parser.error("--busy must be at least 1")
    from vae_grader.apps.demo import chosen_submissions

    chosen_submissions(args.students)  # an unknown name: one line, before any grading
    signal.signal(signal.SIGTERM, _terminated)
    started = time.monotonic()
    outcomes: list[Outcome] = []
    for limits in ("wall", "cpu") if args.limits == "both" else (args.limits,):
        load_average = os.getloadavg()[0]
        idle = grade(args.students, limits, f"idle (load avg {load_average:.1f})")
        outcomes.append(idle)
        if args.graders:
            loaded = grader_load(args.graders, idle.root, args.students, args.load_seconds)
        else:
            loaded = busy_load(args.busy, args.memory_mb, args.load_seconds)
        with loaded as load:
            time.sleep(5)  # let the load build up before nbgrader starts
            outcomes.append(grade(args.students, limits, load))
    print()
    print(report(outcomes, args.students))
    print(f"\n{os.cpu_count()} CPUs; whole command {time.monotonic() - started:.0f} s")
    cpu_runs = [o for o in outcomes if o.limits == "cpu"]
    changed = [s for o in cpu_runs[1:] for s in args.students if differences(cpu_runs[0], o, s)]
    if changed:
        print(f"CPU-time limits gave different points under load: {', '.join(changed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
