"""Students attacking the exchange, each as their own Unix user (tests/exchange_world.py).

alice is the attacker, bob her victim; both first submit honestly (bob twice), so every test can
check that bob's real latest submission and alice's own are what collect takes whatever alice
plants. Each test plants one attack in inbound/ as alice, runs the instructor's plain
``nbgrader collect vae`` on an empty submitted/ folder, and checks the refusal's one-line reason
in collect's output and in reports/collect-vae.txt, and what landed in submitted/. One test
autogrades: the link to the instructor's source/vae no longer scores alice 40/40, and a private file
beside the master reaches neither autograded/ nor feedback/.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import time
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from exchange_attack_kit import (
    NOTEBOOK,
    PRIVATE_NOTE,
    as_student,
    assert_no_source_in_submitted,
    between_attacks,
    collect,
    honest_world,
    inbound,
    marks,
    plant_entry,
    report,
    stamp,
    submitted,
)
from exchange_world import ASSIGNMENT, COURSE_ID, CourseWorld

# The tests with students as real Unix users are marked slow and exchange; the in-process ones at
# the end (a swap during the copy, the roster, the private files) run in the fast layer.


@pytest.fixture(scope="module")
def world():
    yield from honest_world()


@pytest.fixture(autouse=True)
def clean_state(request: pytest.FixtureRequest):
    """Each attack starts from the honest submissions alone and an empty submitted/ folder."""
    yield from between_attacks(request, "submitted")


def refusal(world: CourseWorld, output: str, entry: str, reason: str) -> str:
    """The one report line refusing ``entry``; it must be in collect's output too and say ``reason``."""
    lines = [line for line in report(world).splitlines() if line.startswith(f"REFUSED {entry}:")]
    assert len(lines) == 1, report(world)
    assert reason in lines[0], lines[0]
    assert lines[0] in output, output
    return lines[0]


def assert_honest_collected(world: CourseWorld) -> None:
    """bob's latest real submission and alice's own, nothing of source/ in submitted/."""
    assert marks(submitted(world, "bob")) == "MARK: bob, latest submission"
    assert marks(submitted(world, "alice")) == "MARK: alice, her own work"
    assert_no_source_in_submitted(world)
    summary = report(world).splitlines()[-1]
    assert summary.startswith(f"collect {ASSIGNMENT}: 2 collected"), summary


# ---- the attacks of the brief ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.exchange
def test_submit_as_another_student_is_refused(world: CourseWorld):
    alice = world.students["alice"]
    before = set(os.listdir(inbound(world)))
    result = world.nbgrader(alice, "submit", ASSIGNMENT, "--student=bob", check=False)
    assert result.returncode != 0
    assert "submit refused: you are alice and can submit only as alice, not as bob" in result.stdout
    assert "Traceback" not in result.stdout, result.stdout
    assert set(os.listdir(inbound(world))) == before  # nothing was written


@pytest.mark.slow
@pytest.mark.exchange
def test_forged_entry_in_bobs_name(world: CourseWorld):
    """alice makes bob+vae+2099... (and one dated now) herself: bob's real latest is collected."""
    alice = world.students["alice"]
    future = plant_entry(world, alice, "bob+vae+2099-01-01 00:00:00.000000 UTC+zzzzzzzzzzzz")
    recent = plant_entry(world, alice, f"bob+vae+{stamp()}+yyyyyyyyyyyy")
    result = collect(world)
    refusal(world, result.stdout, future, "claims to be from bob but is owned by alice")
    refusal(world, result.stdout, recent, "claims to be from bob but is owned by alice")
    assert_honest_collected(world)


@pytest.mark.slow
@pytest.mark.exchange
def test_future_timestamp_of_own_entry(world: CourseWorld):
    """alice's own entry dated in the future (name, or timestamp.txt only) would stay her latest
    forever and be recorded on time: refused, her real submission collected."""
    alice = world.students["alice"]
    in_name = plant_entry(world, alice, "alice+vae+2099-01-01 00:00:00.000000 UTC+zzzzzzzzzzzz")
    in_file = plant_entry(
        world, alice, f"alice+vae+{stamp(60)}+yyyyyyyyyyyy", when="2099-01-01 00:00:00.000000 UTC"
    )
    result = collect(world)
    refusal(
        world,
        result.stdout,
        in_name,
        "the time in its name (2099-01-01 00:00:00 UTC) is in the future",
    )
    refusal(
        world,
        result.stdout,
        in_file,
        "its timestamp.txt (2099-01-01 00:00:00 UTC) is in the future",
    )
    assert_honest_collected(world)


@pytest.mark.slow
@pytest.mark.exchange
def test_link_to_the_master_and_to_bobs_work(world: CourseWorld):
    """Links in inbound/ to source/vae and to submitted/bob/vae: never followed."""
    alice = world.students["alice"]
    collect(world)  # bob's work is now in submitted/bob/vae
    shutil.rmtree(world.course / "submitted" / "alice")
    to_master = f"alice+vae+{stamp()}+masterlinkxx"
    to_bob = f"alice+vae+{stamp(1)}+boblinkxxxxx"
    source = world.course / "source" / ASSIGNMENT
    as_student(world, alice, f'ln -s {shlex.quote(str(source))} "$IN"/{shlex.quote(to_master)}')
    bobs = world.course / "submitted" / "bob" / ASSIGNMENT
    as_student(world, alice, f'ln -s {shlex.quote(str(bobs))} "$IN"/{shlex.quote(to_bob)}')
    result = collect(world, "--update")
    refusal(world, result.stdout, to_master, f"is a symbolic link (to {source})")
    refusal(world, result.stdout, to_bob, "collect never follows links")
    assert marks(submitted(world, "alice")) == "MARK: alice, her own work"
    assert_no_source_in_submitted(world)


@pytest.mark.slow
@pytest.mark.exchange
def test_link_attack_autograded_and_private_files_stay_private(world: CourseWorld):
    """The attack that scored 40/40, autograded: alice gets her own (untouched) work's score, and
    a private file beside the master reaches neither autograded/ nor feedback/."""
    alice = world.students["alice"]
    note = world.course / "source" / ASSIGNMENT / PRIVATE_NOTE
    note.write_text("Instructor only: part 7 answers and the grading thresholds.\n")
    try:
        link = f"alice+vae+{stamp()}+masterlinkxx"
        source = world.course / "source" / ASSIGNMENT
        as_student(world, alice, f'ln -s {shlex.quote(str(source))} "$IN"/{shlex.quote(link)}')
        result = collect(world)
        refusal(world, result.stdout, link, "is a symbolic link")
        assert_no_source_in_submitted(world)
        t0 = time.monotonic()
        world.nbgrader(world.instructor, "autograde", ASSIGNMENT, "--student=alice", timeout=900)
        world.nbgrader(world.instructor, "generate_feedback", ASSIGNMENT, "--student=alice")
        world.nbgrader(world.instructor, "release_feedback", ASSIGNMENT, "--student=alice")
        print(f"\nautograde + feedback of alice: {time.monotonic() - t0:.0f} s")
        with Gradebook(f"sqlite:///{world.course / 'gradebook.db'}", course_id=COURSE_ID) as gb:
            score = gb.find_submission(ASSIGNMENT, "alice").score
        print(f"alice's score: {score:g}/40")
        assert score < 40.0, score  # her own notebook, as fetched, nothing done (the master: 40)
        for step in ("autograded", "feedback"):
            folder = world.course / step / "alice" / ASSIGNMENT
            assert folder.is_dir(), folder
            assert not list(folder.rglob(PRIVATE_NOTE)), sorted(folder.rglob("*"))
        # The released page belongs to alice alone (the instructor is root here).
        pages = list((world.exchange / COURSE_ID / "feedback").glob("*.html"))
        assert len(pages) == 1, pages
        st = pages[0].stat()
        assert st.st_uid == alice.uid and stat.S_IMODE(st.st_mode) == 0o400, (
            st.st_uid,
            oct(st.st_mode),
        )
        peek = world.run(world.students["bob"], "cat", str(pages[0]), check=False)
        assert peek.returncode != 0 and "Permission denied" in peek.stdout, peek.stdout
        world.nbgrader(alice, "fetch_feedback", ASSIGNMENT)
        assert list((alice.home / ASSIGNMENT / "feedback").glob("*/vae.html"))
    finally:
        note.unlink()


# ---- further attacks ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.exchange
def test_link_inside_own_entry_to_bobs_notebook(world: CourseWorld):
    """alice's own, well-formed entry whose notebook is a link to bob's collected one."""
    alice = world.students["alice"]
    collect(world)
    shutil.rmtree(world.course / "submitted" / "alice")
    bobs = submitted(world, "bob")
    entry = plant_entry(
        world,
        alice,
        f"alice+vae+{stamp()}+innerlinkxxx",
        extra=f"rm {NOTEBOOK}; ln -s {shlex.quote(str(bobs))} {NOTEBOOK}",
    )
    result = collect(world, "--update")
    refusal(world, result.stdout, entry, f"{NOTEBOOK} is a symbolic link")
    assert marks(submitted(world, "alice")) == "MARK: alice, her own work"


@pytest.mark.slow
@pytest.mark.exchange
def test_fifo_in_entry(world: CourseWorld):
    """A FIFO stopped nbgrader's collect with a traceback (shutil refuses named pipes); opened
    here it would also block a reader. Refused, collect finishes, the others are collected."""
    alice = world.students["alice"]
    entry = plant_entry(world, alice, f"alice+vae+{stamp()}+fifoxxxxxxxx", extra="mkfifo data.npz")
    t0 = time.monotonic()
    result = collect(world)
    refusal(world, result.stdout, entry, "data.npz is a FIFO")
    assert time.monotonic() - t0 < 120
    assert_honest_collected(world)


@pytest.mark.slow
@pytest.mark.exchange
def test_hard_link_in_entry(world: CourseWorld):
    """A second name for a file outside the entry (the file can change after it was checked)."""
    alice = world.students["alice"]
    entry = plant_entry(
        world,
        alice,
        f"alice+vae+{stamp()}+hardlinkxxxx",
        extra=f"rm {NOTEBOOK}; ln ~/{ASSIGNMENT}/{NOTEBOOK} {NOTEBOOK}",
    )
    result = collect(world)
    refusal(world, result.stdout, entry, f"{NOTEBOOK} is a hard link")
    assert_honest_collected(world)


@pytest.mark.slow
@pytest.mark.exchange
def test_many_broken_entries_of_one_student(world: CourseWorld):
    """Only a student's own entries can fail while being copied; collect tries at most
    SecureCollect.max_attempts of them (here 3), then says so, and the others are unaffected."""
    alice = world.students["alice"]
    for n in range(4):
        plant_entry(world, alice, f"alice+vae+{stamp(n)}+fifo{n}xxxxxxx", extra="mkfifo x.npz")
    result = collect(world, "--SecureCollect.max_attempts=3")
    lines = report(world).splitlines()
    assert sum(line.startswith("REFUSED alice+vae+") for line in lines) == 3, lines
    gave_up = "NOTHING collected for alice: their latest 3 entries were refused and 2 older"
    assert any(line.startswith(gave_up) for line in lines), lines
    assert gave_up in result.stdout
    assert marks(submitted(world, "bob")) == "MARK: bob, latest submission"
    assert not (world.course / "submitted" / "alice").joinpath(ASSIGNMENT).exists()


@pytest.mark.slow
@pytest.mark.exchange
def test_garbage_timestamps(world: CourseWorld):
    """A name whose time does not parse stopped nbgrader's collect with a traceback for everyone;
    a timestamp.txt that does not parse (or disagrees with the name) decides lateness."""
    alice = world.students["alice"]
    bad_name = plant_entry(world, alice, "alice+vae+not a time+zzzzzzzzzzzz", when=stamp())
    bad_file = plant_entry(world, alice, f"alice+vae+{stamp()}+badfilexxxxx", when="garbage")
    backdated = plant_entry(
        world, alice, f"alice+vae+{stamp(1)}+backdatedxxx", when="2026-01-01 00:00:00.000000 UTC"
    )
    no_file = plant_entry(
        world, alice, f"alice+vae+{stamp(2)}+nofilexxxxxx", extra="rm timestamp.txt"
    )
    consistent = plant_entry(world, alice, f"alice+vae+{stamp(-3600)}+consistentxx")
    result = collect(world)
    refusal(world, result.stdout, bad_name, "the time in its name is not a time: 'not a time'")
    # Backdated in both places: consistent, so not refused, but the instructor is asked to look.
    check = [line for line in report(world).splitlines() if line.startswith(f"CHECK {consistent}:")]
    assert len(check) == 1 and "(backdated?)" in check[0], report(world)
    refusal(world, result.stdout, bad_file, "its timestamp.txt is not a time: 'garbage'")
    refusal(world, result.stdout, backdated, "disagree")
    refusal(world, result.stdout, no_file, "has no timestamp.txt")
    assert_honest_collected(world)


@pytest.mark.slow
@pytest.mark.exchange
def test_odd_student_ids(world: CourseWorld):
    """Ids that would leave submitted/ ('..') or split differently ('+'): refused by name."""
    alice = world.students["alice"]
    dots = plant_entry(world, alice, f"..+vae+{stamp()}+dotsxxxxxxxx")
    plus = plant_entry(world, alice, f"bob+alice+vae+{stamp()}+plusxxxxxxxx")
    result = collect(world)
    refusal(world, result.stdout, dots, "claims an invalid student id '..'")
    refusal(world, result.stdout, plus, "claims an invalid student id 'bob+alice'")
    assert not (world.course / ASSIGNMENT).exists()  # submitted/../vae
    assert_honest_collected(world)


@pytest.mark.slow
@pytest.mark.exchange
def test_many_files(world: CourseWorld):
    """Thousands of files in one entry: refused at the limit, quickly."""
    alice = world.students["alice"]
    entry = plant_entry(
        world,
        alice,
        f"alice+vae+{stamp()}+manyfilesxxx",
        extra="mkdir junk; cd junk; seq 1 3000 | xargs touch",
    )
    t0 = time.monotonic()
    result = collect(world)
    elapsed = time.monotonic() - t0
    refusal(world, result.stdout, entry, "holds more than 1000 files and folders")
    print(f"\ncollect with a 3,000-file entry: {elapsed:.1f} s")
    assert_honest_collected(world)


@pytest.mark.slow
@pytest.mark.exchange
def test_newline_in_entry_name_cannot_forge_the_report(world: CourseWorld):
    """An entry name is the student's text: a newline in it must not add a line to the report
    (here alice's own, valid entry would add "COLLECTED bob from a forged entry")."""
    alice = world.students["alice"]
    forged = f"alice+vae+{stamp()}+x\nCOLLECTED bob from a forged entry"
    plant_entry(world, alice, forged)
    result = collect(world)
    lines = report(world).splitlines()
    assert not any(line.startswith("COLLECTED bob from a forged") for line in lines), lines
    collected_alice = [line for line in lines if line.startswith("COLLECTED alice from")]
    assert len(collected_alice) == 1 and "x\\nCOLLECTED bob" in collected_alice[0], lines
    assert "\nCOLLECTED bob from a forged" not in result.stdout
    assert marks(submitted(world, "bob")) == "MARK: bob, latest submission"


@pytest.mark.slow
@pytest.mark.exchange
def test_entry_owned_by_someone_else_inside(world: CourseWorld):
    """bob's file planted in alice's entry (here by root, standing in for any way to get another
    user's file there): the entry is refused by owner, file by file."""
    alice, bob = world.students["alice"], world.students["bob"]
    entry = plant_entry(world, alice, f"alice+vae+{stamp()}+ownerxxxxxxx")
    foreign = inbound(world) / entry / "extra.py"
    foreign.write_text("print('bob wrote this')\n")
    os.chown(foreign, bob.uid, bob.uid)
    result = collect(world)
    refusal(
        world, result.stdout, entry, f"extra.py belongs to uid {bob.uid}, not to the entry's owner"
    )
    assert_honest_collected(world)


# ---- swaps while collect reads (in-process: the timing cannot be forced across processes) -------


def _entry(tmp_path: Path) -> tuple[int, Path, os.stat_result]:
    inbound_dir = tmp_path / "inbound"
    entry = inbound_dir / "alice+vae+2026-01-01 00:00:00.000000 UTC+racexxxxxxxx"
    entry.mkdir(parents=True)
    (entry / NOTEBOOK).write_text("{}")
    fd = os.open(inbound_dir, os.O_RDONLY | os.O_DIRECTORY)
    return fd, entry, os.lstat(entry)


def test_entry_swapped_for_a_link_after_listing(tmp_path: Path):
    """The entry is renamed away and a link to the master put in its place after collect listed
    it: opening it refuses the link, and a different folder in its place is refused too."""
    from vae_grader.exchange.safe_copy import Refused, open_entry

    secret = tmp_path / "source"
    secret.mkdir()
    fd, entry, listed = _entry(tmp_path)
    try:
        entry.rename(tmp_path / "moved")
        entry.symlink_to(secret)
        with pytest.raises(Refused, match="is a symbolic link, not a folder"):
            open_entry(fd, entry.name, listed)
        entry.unlink()
        entry.mkdir()
        with pytest.raises(Refused, match="was replaced while collect read it"):
            open_entry(fd, entry.name, listed)
    finally:
        os.close(fd)


def test_file_swapped_for_a_link_while_copying(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A file checked as regular becomes a link to the master before it is opened: the copy opens
    with O_NOFOLLOW and refuses; nothing of the master is copied."""
    from vae_grader.exchange import safe_copy

    master = tmp_path / "master.ipynb"
    master.write_text("### BEGIN SOLUTION")
    fd, entry, listed = _entry(tmp_path)
    real_lstat = safe_copy._lstat

    def lstat_then_swap(dir_fd: int, name: str) -> os.stat_result | None:
        st = real_lstat(dir_fd, name)
        if name == NOTEBOOK:
            os.unlink(name, dir_fd=dir_fd)
            os.symlink(master, name, dir_fd=dir_fd)
        return st

    monkeypatch.setattr(safe_copy, "_lstat", lstat_then_swap)
    entry_fd = safe_copy.open_entry(fd, entry.name, listed)
    dest = tmp_path / "submitted"
    try:
        with pytest.raises(safe_copy.Refused, match=f"{NOTEBOOK} cannot be opened safely"):
            safe_copy.copy_entry(entry_fd, str(dest), os.getuid(), safe_copy.Limits())
    finally:
        os.close(entry_fd)
        os.close(fd)
    assert not (dest / NOTEBOOK).exists()


# ---- the pieces, in-process ---------------------------------------------------------------------


def test_private_source_files_are_those_the_release_lacks(tmp_path: Path):
    from vae_grader.exchange.private_files import private_source_files

    for folder, names in {
        "source/vae": ["vae.ipynb", "digits.npz", "notes.md", "answers/part7.txt"],
        "release/vae": ["vae.ipynb", "digits.npz"],
        "source/draft": ["draft.ipynb", "idea.md"],
    }.items():
        for name in names:
            (tmp_path / folder / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / folder / name).write_text("x")
    assert private_source_files(tmp_path) == {
        "draft": ["idea.md"],  # not released yet: all private
        "vae": ["answers/part7.txt", "notes.md"],
    }


def test_roster_maps_users_and_refuses_bad_ids(tmp_path: Path):
    import pwd

    from vae_grader.exchange.identity import ROSTER_FILE, Roster, RosterError, valid_student_id

    me = pwd.getpwuid(os.getuid()).pw_name
    assert Roster.load(tmp_path).student_of_uid(os.getuid()) == (me, me)  # no roster: user name
    (tmp_path / ROSTER_FILE).write_text(f"unix_user,student_id\n{me},s1234\n")
    roster = Roster.load(tmp_path)
    assert roster.student_of_uid(os.getuid()) == ("s1234", me)
    assert roster.uid_of_student("s1234") == os.getuid()
    assert roster.uid_of_student("someone") is None
    (tmp_path / ROSTER_FILE).write_text("unix_user,student_id\nalice,../bob\n")
    with pytest.raises(RosterError, match="line 2"):
        Roster.load(tmp_path)
    assert [valid_student_id(i) for i in ("bob", "s.1-2", "..", ".x", "a+b", "a/b", "")] == [
        True,
        True,
        False,
        False,
        False,
        False,
        False,
    ]


@pytest.mark.nbgrader
def test_collect_refuses_when_the_course_configuration_breaks(tmp_path: Path):
    """nbgrader goes on with its defaults when nbgrader_config.py fails to load; its own collect
    is the one the attacks above defeat, so the students' configuration stops it instead."""
    import subprocess

    from vae_grader.paths import nbgrader_command, tool_env
    from vae_grader.pipeline.grade_class import copy_course

    root = copy_course(tmp_path / "course")
    with (root / "nbgrader_config.py").open("a") as fh:
        fh.write("\nraise RuntimeError('a typo in the course configuration')\n")
    (tmp_path / "exchange" / COURSE_ID / "inbound").mkdir(parents=True)
    env = tool_env({"VAE_EXCHANGE": str(tmp_path / "exchange")})
    for command in ("collect", "release_feedback"):
        run = subprocess.run(
            nbgrader_command(command, ASSIGNMENT), cwd=root, env=env, capture_output=True, text=True
        )
        assert run.returncode != 0, run.stderr
        assert "the course's nbgrader_config.py did not load" in run.stderr, run.stderr
    assert not (root / "submitted").exists()
