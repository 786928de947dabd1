"""The class on a real Dask cluster: a ``dask scheduler`` and two ``dask worker`` processes on
localhost, each worker in a working folder of its own (no file shared with the coordinator or the
other worker), grade four demo students (full, zero and partial marks) through the class pipeline.
One worker is killed, with everything it started, while it grades a student: that student is graded
again on the other worker, and every student's per-cell points equal the manifest, each student
once in the gradebook.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from distributed import Client
from nbgrader.api import Gradebook

from vae_grader.paths import ASSIGNMENT, tool_env
from vae_grader.pipeline.grade_class import copy_course, course_config, run_pipeline

pytestmark = pytest.mark.slow

STUDENTS = ("complete", "untouched", "half_done", "sampler_exp_logvar")
DASK = str(Path(sys.executable).parent / "dask")


def start(command: list[str], folder: Path, log: str) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    env = tool_env()
    env.pop("NBGRADER_DB_URL", None)
    return subprocess.Popen(
        command,
        cwd=folder,
        env=env,
        stdout=open(folder / log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_tree(process: subprocess.Popen | psutil.Process) -> None:
    """The process and every process it started (nbgrader, the kernel): a machine that is gone."""
    try:
        root = psutil.Process(process.pid)
        everyone = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for each in everyone:
        try:
            each.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


@pytest.fixture
def cluster(tmp_path) -> Iterator[tuple[str, dict[str, subprocess.Popen], dict[str, str]]]:
    """(scheduler address, worker name -> process, worker name -> worker address)."""
    scheduler_file = tmp_path / "scheduler" / "scheduler.json"
    processes = [
        start(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
            + ["--scheduler-file", str(scheduler_file)],
            tmp_path / "scheduler",
            "scheduler.log",
        )
    ]
    deadline = time.monotonic() + 60
    while not scheduler_file.is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    address = json.loads(scheduler_file.read_text())["address"]
    workers = {}
    for name in ("w1", "w2"):
        folder = tmp_path / name
        workers[name] = start(
            [DASK, "worker", address, "--name", name, "--nthreads", "1", "--nworkers", "1"]
            + ["--local-directory", str(folder), "--memory-limit", "0", "--no-dashboard"],
            folder,
            "worker.log",
        )
    processes += workers.values()
    try:
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=120)
            addresses = {
                info["name"]: worker for worker, info in client.scheduler_info()["workers"].items()
            }
        yield address, workers, addresses
    finally:
        for process in processes:
            kill_tree(process)
            process.wait(timeout=30)


def grading_started(folder: Path, seen: dict[Path, float]) -> str | None:
    """The student a worker has been autograding for 5 s, from the logs in its scratch course
    (``seen``: when each log first appeared)."""
    now = time.monotonic()
    for log in folder.rglob("autograde-*.log"):
        seen.setdefault(log, now)
        if now - seen[log] > 5:
            return log.stem.removeprefix("autograde-")
    return None


def test_two_dask_workers_grade_the_manifest_and_survive_one_killed(tmp_path, cluster, course_env):
    from vae_grader.apps.demo import demo_submissions

    address, workers, addresses = cluster
    submissions = [s for s in demo_submissions() if s.student in STUDENTS]
    root = copy_course(tmp_path / "course")
    killed: dict[str, str] = {}

    def kill_w1_mid_grade() -> None:
        deadline = time.monotonic() + 900
        seen: dict[Path, float] = {}
        while time.monotonic() < deadline:
            student = grading_started(tmp_path / "w1", seen)
            if student:
                killed["student"] = student
                kill_tree(workers["w1"])
                return
            time.sleep(0.5)

    killer = threading.Thread(target=kill_w1_mid_grade, daemon=True)
    killer.start()
    said: list[str] = []
    run = run_pipeline(root, submissions, progress=said.append, scheduler=address)
    killer.join(timeout=1)
    print(f"\nw1 killed while grading {killed.get('student')}\n" + "\n".join(said))

    assert killed, "worker w1 never started grading, so it was never killed"
    assert workers["w1"].poll() is not None, "w1 is still running"
    graded_line = [line for line in said if f" {killed['student']}: " in line and "/4 " in line]
    assert len(graded_line) == 1, said
    assert addresses["w2"] in graded_line[0], f"{killed['student']} was not regraded on w2: {said}"
    for submission in submissions:
        result = run.results[submission.student]
        assert result.error is None, f"{submission.student}: {result.error}"
        expected = {cell: float(submission.expected.get(cell, 0.0)) for cell in run.max_points}
        assert result.scores == pytest.approx(expected), submission.student

    config = course_config(root)
    with Gradebook(config.db_url, course_id=config.course_id) as gb:
        submitted = gb.find_assignment(ASSIGNMENT).submissions
        assert sorted(s.student.id for s in submitted) == sorted(STUDENTS)  # each student once
        for submission in submitted:
            names = [g.name for nb in submission.notebooks for g in nb.grades]
            assert sorted(names) == sorted(run.max_points), submission.student.id
    for student in STUDENTS:
        assert (root / "feedback" / student / ASSIGNMENT / "vae.html").is_file(), student
    # No shared folder: the workers graded in their own folders, never in the coordinator's course.
    assert not list(root.rglob("course-*")), "a worker wrote into the coordinator's course"
    assert os.listdir(tmp_path / "w2")
