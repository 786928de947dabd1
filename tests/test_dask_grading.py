"""The class on Dask: one coordinator writing the gradebook, worker deaths, repeated killers, a lost
scheduler, and tasks that carry everything they need.

These tests use a real embedded ``LocalCluster`` (worker processes) and a real scratch course with
its gradebook, but a stand-in for the worker's ``nbgrader autograde`` (it returns full marks for
every cell at once), so the coordinator's behaviour is checked in seconds. The real grading on a
real ``dask scheduler`` and two ``dask worker`` processes is tests/test_dask_scale.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import nbformat
import pytest
from nbgrader.api import Gradebook

from vae_grader.pipeline.cluster import PipelineError, grading_client
from vae_grader.pipeline.course_folder import course_config
from vae_grader.pipeline.dask_runs import autograde_on_cluster
from vae_grader.pipeline.grading_task import (
    CourseBundle,
    GradedSubmission,
    GradeRecord,
    GradingTask,
    NotebookRecord,
    read_tree,
)
from vae_grader.pipeline.gradebook_writer import record_graded, record_ungradable
from vae_grader.pipeline.nbgrader_runs import run_nbgrader
from vae_grader.paths import ASSIGNMENT, COURSE_ROOT, NOTEBOOK, tool_env
from vae_grader.pipeline.grade_class import copy_course
from vae_grader.submissions import points_by_cell

# The stand-in graders below run in the cluster's worker processes, which cannot import this file.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A scratch course whose gradebook knows the assignment (``generate_assignment`` ran)."""
    saved = os.environ.pop("NBGRADER_DB_URL", None)
    root = copy_course(tmp_path_factory.mktemp("dask-course"))
    run_nbgrader(
        root, root / "generate_assignment.log", "generate_assignment", ASSIGNMENT, "--force"
    )
    yield root
    if saved is not None:
        os.environ["NBGRADER_DB_URL"] = saved


def full_marks(task: GradingTask, worker: str = "stand-in") -> GradedSubmission:
    master = nbformat.reads(task.course.files[f"source/{ASSIGNMENT}/{NOTEBOOK}"].decode(), 4)
    return GradedSubmission(
        student=task.student,
        ok=True,
        summary="",
        seconds=0.1,
        worker=worker,
        recorded=True,
        notebooks=(NotebookRecord("vae", False, 0.0),),
        grades=tuple(
            GradeRecord("vae", cell, points, None, None, False)
            for cell, points in points_by_cell(master).items()
        ),
        autograded={NOTEBOOK: task.submission.get(NOTEBOOK, b"{}")},
    )


def kill_own_worker() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def stand_in_grader(marker_folder: str):
    """Full marks, except: ``killer`` kills every worker it runs on; ``victim`` kills the first
    worker it runs on only (as if that machine died mid-grade); ``unlucky`` kills its first three
    workers (as if blamed for a killer's deaths beside it); ``broken`` raises in the grader."""

    def grade(task: GradingTask) -> GradedSubmission:
        if task.student == "killer":
            kill_own_worker()
        if task.student == "unlucky":
            tries = Path(marker_folder) / "unlucky-tries"
            count = len(tries.read_text()) if tries.exists() else 0
            if count < 3:
                tries.write_text("x" * (count + 1))
                kill_own_worker()
        if task.student == "victim":
            first = Path(marker_folder) / "victim-started"
            if not first.exists():
                first.write_text(str(os.getpid()))
                kill_own_worker()
        if task.student == "broken":
            raise RuntimeError("the grader's disk is full\nsecond line")
        return full_marks(task, worker=str(os.getpid()))

    return grade


def write_submitted(root: Path, students: list[str]) -> None:
    for student in students:
        folder = root / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True, exist_ok=True)
        (folder / NOTEBOOK).write_bytes(
            (COURSE_ROOT / "release" / ASSIGNMENT / NOTEBOOK).read_bytes()
        )


def rows(root: Path) -> dict[str, dict[str, tuple[float | None, bool]]]:
    """student -> cell -> (auto score, needs manual grade), from the gradebook's tables."""
    config = course_config(root)
    out: dict[str, dict[str, tuple[float | None, bool]]] = {}
    with Gradebook(config.db_url, course_id=config.course_id) as gb:
        assignment = gb.find_assignment(ASSIGNMENT)
        for submission in assignment.submissions:
            assert submission.student.id not in out, f"{submission.student.id} recorded twice"
            cells = out.setdefault(submission.student.id, {})
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    assert grade.name not in cells, f"{submission.student.id} {grade.name} twice"
                    cells[grade.name] = (grade.auto_score, bool(grade.needs_manual_grade))
    return out


def test_a_task_carries_the_course_and_the_submission_as_bytes(course):
    write_submitted(course, ["carried"])
    bundle = CourseBundle.of(course)
    assert "nbgrader_config.py" in bundle.files
    assert f"source/{ASSIGNMENT}/{NOTEBOOK}" in bundle.files
    assert f"release/{ASSIGNMENT}/{NOTEBOOK}" in bundle.files
    assert all(isinstance(data, bytes) for data in bundle.files.values())
    assert CourseBundle.of(course).digest == bundle.digest
    submitted = read_tree(course / "submitted" / "carried" / ASSIGNMENT)
    assert list(submitted) == [NOTEBOOK]
    task = GradingTask("carried", bundle, submitted)
    assert cloudpickle.loads(cloudpickle.dumps(task)) == task  # what Dask sends, as it is


def test_a_task_carries_what_is_not_a_file_by_its_kind_never_by_its_content(tmp_path):
    """Links, hard links and pipes in submitted/ reach the worker as what they are, so the worker's intake
    refuses them with the note it gives in the central course, and nothing they lead to is read."""
    from vae_grader.pipeline.grading_task import NotAFile, read_submission, write_submission
    from vae_grader.preprocessors.intake import refuse_entries

    secret = tmp_path / "gradebook.db"
    secret.write_bytes(b"every student's grades")
    folder = tmp_path / "central" / "submitted" / "mallory" / ASSIGNMENT
    folder.mkdir(parents=True)
    (folder / NOTEBOOK).write_text("{}")
    os.symlink(secret, folder / "linked.db")
    os.link(secret, folder / "copy.db")
    os.mkfifo(folder / "pipe")
    entries = read_submission(folder)
    assert entries[NOTEBOOK] == b"{}"
    assert entries["linked.db"] == NotAFile("a symbolic link", str(secret))
    assert entries["copy.db"] == NotAFile("a hard link")
    assert entries["pipe"] == NotAFile("a named pipe")
    assert b"every student's grades" not in cloudpickle.dumps(entries)
    worker = tmp_path / "worker" / "submitted" / "mallory" / ASSIGNMENT
    write_submission(worker, entries, tmp_path / "worker" / "partners")
    refused = {(r.relpath, r.what) for r in refuse_entries(worker)}
    assert refused == {(r.relpath, r.what) for r in refuse_entries(folder)}
    assert refused == {
        ("linked.db", "a symbolic link"),
        ("copy.db", "a hard link"),
        ("pipe", "a named pipe"),
    }
    assert sorted(os.listdir(worker)) == [NOTEBOOK]
    # A submission folder that is itself a link is carried as one, and nothing behind it is read.
    linked = tmp_path / "central" / "submitted" / "eve"
    linked.mkdir()
    os.symlink(folder, linked / ASSIGNMENT)
    assert read_submission(linked / ASSIGNMENT) == {".": NotAFile("a symbolic link", str(folder))}
    with pytest.raises(ValueError):
        write_submission(tmp_path / "w2", {"../escape": b"x"}, tmp_path / "p2")


def test_the_writer_replaces_a_record_and_flags_what_no_worker_graded(course):
    config = course_config(course)
    write_submitted(course, ["twice", "flagged"])
    task = GradingTask("twice", CourseBundle.of(course), {NOTEBOOK: b"{}"})
    record_graded(course, config, full_marks(task))
    record_graded(course, config, full_marks(task))  # its worker died after finishing: run again
    record_ungradable(course, config, "flagged", "every worker that graded it died")
    table = rows(course)
    maxima = points_by_cell(nbformat.read(course / "source" / ASSIGNMENT / NOTEBOOK, 4))
    assert table["twice"] == {cell: (points, False) for cell, points in maxima.items()}
    assert table["flagged"] == {cell: (0.0, True) for cell in maxima}
    assert (course / "autograded" / "twice" / ASSIGNMENT / NOTEBOOK).read_bytes() == b"{}"
    with Gradebook(config.db_url, course_id=config.course_id) as gb:
        flagged = gb.find_submission(ASSIGNMENT, "flagged")
        assert flagged.score == 0 and flagged.needs_manual_grade
        assert all(nb.flagged for nb in flagged.notebooks)
        comments = [c.auto_comment for nb in flagged.notebooks for c in nb.comments]
        assert comments and all("every worker that graded it died" in c for c in comments)


def test_worker_deaths_regrade_once_and_a_repeated_killer_is_flagged(course, tmp_path):
    """Two worker processes. ``victim`` kills its first worker: graded again on another, recorded
    once. ``unlucky`` is given up by the scheduler (three dead workers) but graded alone afterwards
    and keeps its grade. ``killer`` kills every worker, alone too: flagged at 0 with the reason.
    ``broken`` raises: flagged. The others get their grades untouched."""
    students = ["alice", "victim", "unlucky", "killer", "broken", "bob"]
    write_submitted(course, students)
    said: list[str] = []
    with grading_client(None, workers=2) as client:
        seconds, errors = autograde_on_cluster(
            course,
            course_config(course),
            students,
            tmp_path,
            client,
            said.append,
            lambda: "t",
            grade=stand_in_grader(str(tmp_path)),
        )
    assert (tmp_path / "victim-started").exists(), "the victim's first worker was never killed"
    assert set(seconds) == set(students)
    assert set(errors) == {"killer", "broken"}, errors
    assert errors["killer"].startswith("every worker that graded this submission died (3 workers)")
    assert errors["broken"] == "the grader failed: RuntimeError: the grader's disk is full"
    table = rows(course)
    maxima = points_by_cell(nbformat.read(course / "source" / ASSIGNMENT / NOTEBOOK, 4))
    assert (tmp_path / "unlucky-tries").read_text() == "xxx"
    assert any("unlucky: its workers died; graded again alone" in line for line in said)
    assert any("killer: its workers died; graded again alone" in line for line in said)
    for student in ("alice", "victim", "unlucky", "bob"):
        assert table[student] == {cell: (points, False) for cell, points in maxima.items()}
    for student in ("killer", "broken"):
        assert table[student] == {cell: (0.0, True) for cell in maxima}
    progress = [line for line in said if "/6 " in line]
    assert len(progress) == 6  # one progress line per student, however often it was run
    assert sum(" - " not in line for line in progress) == 4


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_scheduler_is_one_line_naming_it():
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(PipelineError) as refused:
        with grading_client(address):
            pass
    assert str(refused.value).startswith(f"cannot reach the Dask scheduler at {address}")
    assert "\n" not in str(refused.value)


@pytest.mark.nbgrader
def test_the_demo_command_says_so_in_one_line_and_exits_2():
    address = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vae_grader.apps.demo",
            "--only",
            "untouched",
            "--scheduler",
            address,
        ],
        capture_output=True,
        text=True,
        env=tool_env(),
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().startswith(f"error: cannot reach the Dask scheduler at {address}")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert time.monotonic() - started < 60


@pytest.mark.nbgrader
def test_the_due_date_travels_with_the_task(course):
    """The due date lives only in the central gradebook; the worker's must have it for nbgrader's
    late-submission plugins."""
    from vae_grader.pipeline.dask_runs import due_date
    from vae_grader.pipeline.worker_grading import prepared_course

    config = course_config(course)
    with Gradebook(config.db_url, course_id=config.course_id) as gb:
        gb.update_or_create_assignment(ASSIGNMENT, duedate="2026-12-01 12:00:00 UTC")
    bundle = CourseBundle.of(course, due_date(config))
    assert bundle.duedate == "2026-12-01T12:00:00"
    assert bundle.digest != CourseBundle.of(course).digest
    scratch = prepared_course(bundle)
    assert scratch.resolve() != course.resolve()
    with Gradebook(f"sqlite:///{scratch / 'gradebook.db'}") as gb:
        assert gb.find_assignment(ASSIGNMENT).duedate.isoformat() == "2026-12-01T12:00:00"
