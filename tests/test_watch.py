"""Grading on submission (``python -m vae_grader.apps.watch``).

The fast test checks what a round decides from the state file alone. The end-to-end test is the
course as students meet it (tests/exchange_world.py: real, separate Unix users): two students
submit through the exchange, the watch command collects, grades on its embedded Dask cluster and
releases feedback, both students fetch their page with nobody typing anything for them; a
resubmission is graded again; a restarted watch grades nothing twice.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from nbgrader.api import Gradebook

from vae_grader.apps.watch import STATE_FILE, WatchState, to_grade, to_release


def stamp(root: Path, student: str, when: str) -> None:
    folder = root / "submitted" / student / "vae"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "timestamp.txt").write_text(when + "\n")


def test_a_round_grades_what_is_new_and_releases_what_is_graded(tmp_path):
    stamp(tmp_path, "old", "2026-12-01 10:00:00.000000 UTC")
    stamp(tmp_path, "resubmitted", "2026-12-02 10:00:00.000000 UTC")
    stamp(tmp_path, "new", "2026-12-03 10:00:00.000000 UTC")
    stamp(tmp_path, "unreleased", "2026-12-03 11:00:00.000000 UTC")
    state = WatchState.load(tmp_path)
    state.graded = {
        "old": "2026-12-01 10:00:00.000000 UTC",
        "resubmitted": "2026-12-01 09:00:00.000000 UTC",
        "unreleased": "2026-12-03 11:00:00.000000 UTC",
    }
    state.released = {"old": "2026-12-01 10:00:00.000000 UTC"}
    state.save()
    reloaded = WatchState.load(tmp_path)  # what a restarted watch reads
    assert reloaded.graded == state.graded and reloaded.released == state.released
    assert to_grade(tmp_path, reloaded) == ["new", "resubmitted"]
    assert to_release(tmp_path, reloaded) == ["unreleased"]
    (tmp_path / STATE_FILE).write_text("{half")
    with pytest.raises(SystemExit, match="is not valid JSON"):
        WatchState.load(tmp_path)


@pytest.mark.slow
@pytest.mark.exchange
def test_students_get_feedback_without_the_instructor_and_a_resubmission_regrades():
    from exchange_world import ASSIGNMENT, COURSE_ID, CourseWorld
    from vae_grader.submissions import PARTS
    from vae_samples.kit import filled, load_master_and_release

    world = CourseWorld.create(("dora", "emil"))
    watch_log = world.base / "watch.log"
    watcher = None
    try:
        dora, emil = world.students["dora"], world.students["emil"]
        master, _ = load_master_and_release()
        world.release()
        for student in (dora, emil):
            world.nbgrader(student, "fetch_assignment", ASSIGNMENT)
        release = nbformat.read(world.fetched_notebook(dora), as_version=4)
        write_as(dora, world.fetched_notebook(dora), filled(PARTS[:2])(master, release))
        world.nbgrader(dora, "submit", ASSIGNMENT)
        world.nbgrader(emil, "submit", ASSIGNMENT)  # as handed out: 0 points

        def start_watch() -> subprocess.Popen:
            argv = [sys.executable, "-m", "vae_grader.apps.watch", "--course", str(world.course)]
            return subprocess.Popen(
                world.command(world.instructor, argv + ["--interval", "2", "--workers", "2"]),
                cwd=world.course,
                env=world.env(world.instructor),
                stdout=open(watch_log, "a"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        started = time.monotonic()
        watcher = start_watch()
        pages = {s.name: wait_for_page(world, s, watch_log) for s in (dora, emil)}
        first_round_s = time.monotonic() - started
        db = f"sqlite:///{world.course / 'gradebook.db'}"
        assert scores(db, COURSE_ID, ASSIGNMENT) == {"dora": 11.0, "emil": 0.0}
        assert all(page.is_file() for page in pages.values())

        write_as(emil, world.fetched_notebook(emil), filled(PARTS[:1])(master, release))
        resubmitted = time.monotonic()
        world.nbgrader(emil, "submit", ASSIGNMENT)
        second = wait_for_page(world, emil, watch_log, besides=[pages["emil"]])
        regrade_s = time.monotonic() - resubmitted
        assert second != pages["emil"]
        assert scores(db, COURSE_ID, ASSIGNMENT) == {"dora": 11.0, "emil": 5.0}
        stop(watcher)
        watcher = None

        state = json.loads((world.course / STATE_FILE).read_text())
        assert set(state["graded"]) == set(state["released"]) == {"dora", "emil"}
        once = world.run(
            world.instructor,
            sys.executable,
            "-m",
            "vae_grader.apps.watch",
            "--course",
            str(world.course),
            "--once",
            "--workers",
            "1",
            cwd=world.course,
        )
        assert "graded 0 submission(s) this round" in once.stdout, once.stdout
        assert json.loads((world.course / STATE_FILE).read_text()) == state
        assert scores(db, COURSE_ID, ASSIGNMENT) == {"dora": 11.0, "emil": 5.0}
        print(
            f"\nwatch: both students' feedback {first_round_s:.0f} s after the watch started, "
            f"emil's resubmission regraded and released in {regrade_s:.0f} s"
        )
    finally:
        if watcher is not None:
            stop(watcher)
        print(watch_log.read_text() if watch_log.exists() else "(no watch log)")
        world.remove()


def write_as(student, path: Path, nb: nbformat.NotebookNode) -> None:
    import os

    nbformat.write(nb, path)
    os.chown(path, student.uid, student.uid)


def wait_for_page(
    world, student, log: Path, besides: list[Path] = (), limit_s: float = 900
) -> Path:
    """The student fetches feedback every few seconds, as they would, until a new page arrives."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        world.nbgrader(student, "fetch_feedback", "vae", check=False)
        pages = sorted((student.home / "vae" / "feedback").glob("*/*.html"))
        new = [page for page in pages if page not in besides]
        if new:
            return new[-1]
        time.sleep(5)
    raise AssertionError(f"{student.name} got no feedback in {limit_s:.0f} s:\n{log.read_text()}")


def scores(db: str, course_id: str, assignment: str) -> dict[str, float]:
    with Gradebook(db, course_id=course_id) as gb:
        return {s.student.id: s.score for s in gb.find_assignment(assignment).submissions}


def stop(process: subprocess.Popen) -> None:
    try:
        everyone = [psutil.Process(process.pid), *psutil.Process(process.pid).children(True)]
    except psutil.NoSuchProcess:
        return
    for each in everyone:
        try:
            each.kill()
        except psutil.NoSuchProcess:
            pass
    process.wait(timeout=60)
