"""Throughput of class grading: plain sequential ``nbgrader autograde vae`` against the Dask path,
the same students on the same machine in one run.

    python -m measure.throughput [--students 4] [--workers N]

Both grade ``--students`` copies of the complete demo submission in scratch copies of the course.
Plain: one ``nbgrader autograde vae --force`` for all of them, as an instructor types it. Dask: the
class pipeline's autograding on an embedded ``LocalCluster`` (``--workers`` processes, default one
per core), the coordinator writing the gradebook. For each it prints the wall time, submissions
per hour, and the overhead per submission outside the student's own cells (nbgrader autograde's
wall time per submission minus the "cells" seconds RobustExecute logs for it), then extrapolates to
300 students on one 16-core machine and on four, with the assumptions printed beside the figure.
Timings depend on the machine and on what else runs on it, so the load average is printed too.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from vae_grader.paths import ASSIGNMENT, NOTEBOOK, samples

CELLS = re.compile(r"Executed \d+ cells in ([\d.]+) s \(.*?cells ([\d.]+) s")
CLASS = 300
CORES_PER_MACHINE = 16


def cell_seconds(log_text: str) -> list[tuple[float, float]]:
    """(executor seconds, student-cell seconds) of every notebook an autograde log executed."""
    return [(float(m.group(1)), float(m.group(2))) for m in CELLS.finditer(log_text)]


def prepared_course(scratch: Path, count: int) -> tuple[Path, list[str]]:
    from vae_grader.pipeline.course_folder import copy_course, write_submission
    from vae_grader.pipeline.nbgrader_runs import run_nbgrader

    complete = next(s for s in samples("demo").SUBMISSIONS if s.student == "complete")
    copies = [dataclasses.replace(complete, student=f"bench_{i}") for i in range(1, count + 1)]
    root = copy_course(scratch)
    run_nbgrader(
        root, root / "generate_assignment.log", "generate_assignment", ASSIGNMENT, "--force"
    )
    master = nbformat.read(root / "source" / ASSIGNMENT / NOTEBOOK, as_version=4)
    release = nbformat.read(root / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)
    for submission in copies:
        write_submission(root, submission, master, release)
    return root, [s.student for s in copies]


def plain(scratch: Path, count: int) -> tuple[float, float]:
    """(wall s, student-cell s summed) of one ``nbgrader autograde vae`` for all students."""
    from vae_grader.pipeline.nbgrader_runs import run_nbgrader

    root, _ = prepared_course(scratch, count)
    log = root / "autograde.log"
    start = time.monotonic()
    run_nbgrader(root, log, "autograde", ASSIGNMENT, "--force")
    wall = time.monotonic() - start
    return wall, sum(cells for _, cells in cell_seconds(log.read_text(errors="replace")))


def on_dask(
    scratch: Path, count: int, workers: int | None
) -> tuple[float, float, float, float, int]:
    """(wall s, cluster start s, worker autograde s summed, student-cell s summed, workers)."""
    from vae_grader.pipeline.cluster import grading_client
    from vae_grader.pipeline.course_folder import course_config
    from vae_grader.pipeline.dask_runs import autograde_on_cluster

    root, students = prepared_course(scratch, count)
    logs = root / "logs"
    logs.mkdir()
    start = time.monotonic()
    with grading_client(None, workers) as client:
        started = time.monotonic() - start
        size = len(client.scheduler_info()["workers"])
        t0 = time.monotonic()
        seconds, errors = autograde_on_cluster(
            root, course_config(root), students, logs, client, lambda m: None, lambda: ""
        )
        wall = time.monotonic() - t0
    if errors:
        print(f"    note: not every copy was graded: {errors}")
    cells = sum(
        c for s in students for _, c in cell_seconds((logs / f"autograde-{s}.log").read_text())
    )
    return wall, started, sum(seconds.values()), cells, size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--students", type=int, default=4, help="copies of the complete submission")
    parser.add_argument("--workers", type=int, default=None, help="Dask worker processes")
    args = parser.parse_args(argv)
    if args.students < 1:
        raise SystemExit("error: --students must be at least 1")
    os.environ.pop("NBGRADER_DB_URL", None)  # the scratch courses keep their own gradebooks
    n = args.students
    one, five, _ = os.getloadavg()
    print(f"{n} copies of `complete`; {os.cpu_count()} CPU(s), load average {one:.1f} / {five:.1f}")
    with tempfile.TemporaryDirectory(prefix="vae-throughput-") as scratch:
        print("plain: nbgrader autograde vae --force (sequential) ...", flush=True)
        p_wall, p_cells = plain(Path(scratch) / "plain", n)
        print("dask: the class pipeline's autograding on an embedded LocalCluster ...", flush=True)
        d_wall, d_start, d_busy, d_cells, size = on_dask(Path(scratch) / "dask", n, args.workers)
    one, five, _ = os.getloadavg()
    p_over = (p_wall - p_cells) / n
    d_over = (d_busy - d_cells) / n
    print(f"\nload average after: {one:.1f} / {five:.1f}")
    print(
        f"plain sequential : {p_wall:7.1f} s wall, {3600 * n / p_wall:6.0f} submissions/h, "
        f"{p_wall / n:5.1f} s per submission, of which {p_cells / n:5.1f} s its cells, "
        f"overhead {p_over:5.1f} s"
    )
    print(
        f"dask ({size} workers): {d_wall:7.1f} s wall (+{d_start:.1f} s cluster start), "
        f"{3600 * n / d_wall:6.0f} submissions/h, {d_busy / n:5.1f} s per submission on a worker, "
        f"of which {d_cells / n:5.1f} s its cells, overhead {d_over:5.1f} s"
    )
    print(f"speed-up (wall): {p_wall / d_wall:.2f}x")
    per_submission = d_busy / n
    for machines in (1, 4):
        workers = machines * CORES_PER_MACHINE
        hours = math.ceil(CLASS / workers) * per_submission / 3600
        print(
            f"{CLASS} students on {machines} x {CORES_PER_MACHINE}-core machine(s): "
            f"{workers} workers x {math.ceil(CLASS / workers)} rounds x {per_submission:.1f} s "
            f"= {hours * 60:.0f} min"
        )
    print(
        "assumptions: one worker per core, 3 GiB each (48 GiB a machine); each submission takes "
        "what one took on a worker here (the complete notebook); the coordinator's gradebook "
        "write and the task transfer (a few hundred kB) are negligible beside it"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
