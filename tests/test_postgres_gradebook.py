"""The gradebook on a real PostgreSQL server: ``NBGRADER_DB_URL=postgresql://...`` and nothing else.

A course server shares one PostgreSQL gradebook between instructors (and, for a large class, between
graders). These tests start a real server (tests/postgres_server.py), point the course at it through
the variable the README documents, and run the class pipeline's plain nbgrader commands
(``generate_assignment``, ``autograde``, ``generate_feedback``, ``export``) and the gradebook
commands an instructor types: the scores must be the manifest's, read back from PostgreSQL, and no
SQLite file may appear in the course folder.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from postgres_server import PostgresServer, postgres_problem, postgres_server
from vae_grader.paths import tool_env
from vae_grader.pipeline.grade_class import copy_course, course_config, run_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

STUDENTS = ("complete", "untouched", "half_done")


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    problem = postgres_problem()
    if problem:
        pytest.skip(problem)
    with postgres_server() as running:
        yield running


@pytest.fixture
def postgres_course(tmp_path, server, monkeypatch) -> tuple[Path, str]:
    url = server.create_database(f"vae_{os.getpid()}_{tmp_path.name}".lower().replace("-", "_"))
    monkeypatch.setenv("NBGRADER_DB_URL", url)
    return copy_course(tmp_path / "course"), url


def test_the_course_reads_its_gradebook_url_from_the_environment(postgres_course):
    root, url = postgres_course
    assert course_config(root).db_url == url


def test_a_class_graded_into_postgresql_gets_the_manifest_scores(postgres_course):
    from vae_grader.apps.demo import demo_submissions

    root, url = postgres_course
    submissions = [s for s in demo_submissions() if s.student in STUDENTS]
    assert [s.student for s in submissions] == list(STUDENTS)
    run = run_pipeline(root, submissions, progress=None)

    assert not (root / "gradebook.db").exists(), "a SQLite gradebook appeared beside PostgreSQL"
    with Gradebook(url, course_id=course_config(root).course_id) as gb:
        assert sorted(s.id for s in gb.students) == sorted(STUDENTS)
        for submission in submissions:
            graded = gb.find_submission("vae", submission.student)
            assert graded.score == pytest.approx(sum(submission.expected.values())), (
                submission.student
            )
            per_cell = {grade.name: grade.score for nb in graded.notebooks for grade in nb.grades}
            for cell, points in per_cell.items():
                assert points == pytest.approx(submission.expected.get(cell, 0.0)), (
                    f"{submission.student} {cell}"
                )
    with open(run.csv_path, newline="") as handle:
        rows = {row["student_id"]: float(row["score"]) for row in csv.DictReader(handle)}
    assert rows == {s.student: pytest.approx(sum(s.expected.values())) for s in submissions}
    for student in STUDENTS:
        assert (root / "feedback" / student / "vae" / "vae.html").is_file(), student


def test_a_regrade_leaves_one_row_per_student_and_cell_in_postgresql(postgres_course):
    """The class is graded on Dask and the coordinator writes PostgreSQL; grading it again replaces
    each student's rows instead of adding to them."""
    from sqlalchemy import create_engine, text

    from vae_grader.apps.demo import demo_submissions

    root, url = postgres_course
    submissions = [s for s in demo_submissions() if s.student in ("untouched", "half_done")]
    first = run_pipeline(root, submissions, progress=None, workers=2)
    second = run_pipeline(root, submissions, progress=None, workers=2)
    for submission in submissions:
        assert second.results[submission.student].scores == first.results[submission.student].scores
        assert second.results[submission.student].total == sum(submission.expected.values())
    counts = text(
        "SELECT student.id, base_cell.name, count(*) FROM grade"
        " JOIN submitted_notebook ON grade.notebook_id = submitted_notebook.id"
        " JOIN submitted_assignment ON submitted_notebook.assignment_id = submitted_assignment.id"
        " JOIN student ON submitted_assignment.student_id = student.id"
        " JOIN base_cell ON grade.cell_id = base_cell.id"
        " GROUP BY student.id, base_cell.name"
    )
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(counts).all()
            submitted = connection.execute(
                text("SELECT count(*) FROM submitted_assignment")
            ).scalar_one()
    finally:
        engine.dispose()
    assert submitted == len(submissions)
    assert sorted((student, cell) for student, cell, _ in rows) == sorted(
        (s.student, cell) for s in submissions for cell in first.max_points
    )
    assert {count for _, _, count in rows} == {1}


def test_the_instructors_gradebook_commands_work_on_postgresql(postgres_course):
    root, url = postgres_course

    def nbgrader(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "nbgrader", *args],
            cwd=root,
            env=tool_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    nbgrader("db", "student", "add", "dora", "--first-name=Dora", "--last-name=Lee")
    nbgrader("db", "student", "add", "emil")
    listed = nbgrader("db", "student", "list")
    assert "dora (Lee, Dora)" in listed and "emil" in listed, listed
    nbgrader("db", "student", "remove", "emil")
    with Gradebook(url) as gb:
        assert [s.id for s in gb.students] == ["dora"]
