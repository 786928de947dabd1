"""Red-team round on the hardened exchange: attacks beyond tests/test_exchange_attacks.py.

Every student is a real, separate Unix user (tests/exchange_world.py); alice attacks, bob (and
carol) are the victims. Each test asserts the SAFE outcome, so a test that fails means the attack
worked. The instructor runs as root, as in the other exchange tests.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from exchange_attack_kit import (
    NOTEBOOK,
    as_student,
    assert_no_source_in_submitted,
    between_attacks,
    collect,
    honest_world,
    inbound,
    mark,
    marks,
    plant_entry,
    replace_course_folder,
    stamp,
    submitted,
)
from exchange_attack_kit import report as report_text
from exchange_world import ASSIGNMENT, COURSE_ID, CourseWorld

q = shlex.quote


@pytest.fixture(scope="module")
def world():
    yield from honest_world()


@pytest.fixture(autouse=True)
def clean_state(request: pytest.FixtureRequest):
    for _ in between_attacks(request, "submitted", "feedback"):
        yield
    if "world" in request.fixturenames:
        shutil.rmtree(
            request.getfixturevalue("world").exchange / COURSE_ID / "feedback", ignore_errors=True
        )


# ---- 1. the exchange's course folder, renamed away and replaced by a student --------------------


@pytest.fixture
def fresh_world():
    world = CourseWorld.create(("alice", "bob", "carol"))
    world.release()
    yield world
    world.remove()


@pytest.mark.slow
@pytest.mark.exchange
def test_course_folder_in_the_exchange_cannot_be_hijacked(fresh_world: CourseWorld):
    """nbgrader's release_assignment makes the exchange root mode 0777 without the sticky bit
    (and the README tells the instructor to make /srv/nbgrader/exchange writable by everyone).
    alice renames <exchange>/vae-mnist away and builds her own vae-mnist/ with an open inbound/
    and an outbound/ holding an extra file: then carol fetches alice's files, bob's submission
    lands where alice reads it, and collect (as root) takes submissions from alice's folder."""
    world = fresh_world
    alice, bob, carol = (world.students[n] for n in ("alice", "bob", "carol"))
    world.nbgrader(bob, "fetch_assignment", ASSIGNMENT)
    mark(world, bob, "bob, private work")
    ex = world.exchange
    print(f"\nexchange root mode: {oct(stat.S_IMODE(ex.stat().st_mode))}")
    problems = []
    hijack = world.run(
        alice, *replace_course_folder(ex, 'print("alice runs code as you")'), check=False
    )
    if hijack.returncode == 0:
        problems.append(f"alice renamed {ex}/{COURSE_ID} and made her own in its place")
    fetched = world.nbgrader(carol, "fetch_assignment", ASSIGNMENT, check=False)
    if (carol.home / ASSIGNMENT / "helper.py").exists():
        problems.append("carol's fetch_assignment delivered alice's planted helper.py")
    sub = world.nbgrader(bob, "submit", ASSIGNMENT, check=False)
    peek = world.run(
        alice, "sh", "-c", f"cat {q(str(ex / COURSE_ID / 'inbound'))}/bob+*/{NOTEBOOK}", check=False
    )
    if "MARK: bob, private work" in peek.stdout:
        problems.append("alice read bob's submitted notebook in her inbound/")
    got = world.nbgrader(world.instructor, "collect", ASSIGNMENT, check=False)
    # Collecting bob's submission is right when inbound/ is still the instructor's (the hijack
    # failed): only taking it from a folder alice owns is the attack.
    inbound_owner = (ex / COURSE_ID / "inbound").stat().st_uid
    if got.returncode == 0 and submitted(world, "bob").exists() and inbound_owner != 0:
        problems.append("collect (root) took bob's submission from an inbound/ alice owns")
    print(fetched.stdout[-500:], sub.stdout[-500:], got.stdout[-1500:], sep="\n---\n")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
@pytest.mark.exchange
def test_replaced_course_folder_is_refused_by_every_command(fresh_world: CourseWorld):
    """Where the root stays writable by all without the sticky bit (an exchange made 0777 by hand,
    which the instructor cannot change), alice can still replace the course folder: then submit and
    both fetches refuse it, and collect and release_feedback stop with one line naming the fix.
    Once the root is sticky again, alice's folder is still hers: the instructor's commands refuse
    it by its owner."""
    world = fresh_world
    alice, bob, carol = (world.students[n] for n in ("alice", "bob", "carol"))
    world.nbgrader(bob, "fetch_assignment", ASSIGNMENT)
    ex = world.exchange
    assert stat.S_IMODE(ex.stat().st_mode) == 0o1777  # what StickyReleaseAssignment left
    ex.chmod(0o777)
    world.run(alice, *replace_course_folder(ex, "print(1)"))
    for student, command, args in (
        (carol, "fetch_assignment", ()),
        (bob, "submit", ()),
        (bob, "fetch_feedback", ()),
    ):
        result = world.nbgrader(student, command, ASSIGNMENT, *args, check=False)
        assert result.returncode != 0, result.stdout
        assert f"{command} refused: the exchange {ex} is writable by everyone" in result.stdout
    assert not (carol.home / ASSIGNMENT).exists()
    assert not list((ex / COURSE_ID / "inbound").iterdir())
    for command in ("collect", "release_feedback"):
        result = world.nbgrader(world.instructor, command, ASSIGNMENT, check=False)
        assert result.returncode != 0 and "Traceback" not in result.stdout, result.stdout
        assert f"run `chmod 1777 {ex}`" in result.stdout, result.stdout
    ex.chmod(0o1777)
    for command in ("collect", "release_feedback"):
        result = world.nbgrader(world.instructor, command, ASSIGNMENT, check=False)
        assert result.returncode != 0 and "Traceback" not in result.stdout, result.stdout
        assert f"{ex / COURSE_ID} belongs to uid {alice.uid}" in result.stdout, result.stdout
    assert not (world.course / "submitted").exists()


# ---- 2. an entry changed after the time it claims, without touching its folder ------------------


@pytest.mark.slow
@pytest.mark.exchange
def test_late_change_inside_an_entry_is_flagged(world: CourseWorld):
    """The backdate check compares the claimed time with the ctime of the entry's top folder only.
    Rewriting a file in place (same inode) or adding a file in a subfolder changes the content
    but not that folder, so late work under an on-time entry is collected without a CHECK line.
    (backdate_tolerance is lowered to 2 s so the test need not wait 15 minutes.)"""
    alice = world.students["alice"]
    in_place = plant_entry(world, alice, f"alice+vae+{stamp()}+inplacexxxxx")
    time.sleep(4)
    as_student(
        world,
        alice,
        f'cd "$IN"/{q(in_place)}; '
        f"sed 's/MARK: alice, her own work/MARK: alice, written late/' ~/{ASSIGNMENT}/{NOTEBOOK} "
        f"> {NOTEBOOK}",  # O_TRUNC on the same file: the folder does not change
    )
    collect(world, "--SecureCollect.backdate_tolerance=2")
    assert marks(submitted(world, "alice")) == "MARK: alice, written late"
    lines = report_text(world).splitlines()
    flagged_in_place = any(line.startswith(f"CHECK {in_place}") for line in lines)

    shutil.rmtree(world.course / "submitted")
    shutil.rmtree(inbound(world) / in_place)
    in_sub = plant_entry(world, alice, f"alice+vae+{stamp()}+subfolderxxx", extra="mkdir data")
    time.sleep(4)
    as_student(world, alice, f'cd "$IN"/{q(in_sub)}; echo late > data/late.py')
    collect(world, "--SecureCollect.backdate_tolerance=2")
    assert (world.course / "submitted" / "alice" / ASSIGNMENT / "data" / "late.py").exists()
    lines = report_text(world).splitlines()
    flagged_sub = any(line.startswith(f"CHECK {in_sub}") for line in lines)
    missed = [
        what
        for what, flagged in (
            ("a notebook rewritten in place after its entry's time", flagged_in_place),
            ("a file added in a subfolder after its entry's time", flagged_sub),
        )
        if not flagged
    ]
    assert not missed, "collected without a CHECK line: " + "; ".join(missed)


@pytest.mark.slow
@pytest.mark.exchange
def test_entry_backdated_by_fourteen_minutes_is_flagged(world: CourseWorld):
    """Made now, but claiming (in its name and timestamp.txt) a time 14 minutes ago: with the
    default backdate_tolerance (900 s) it is collected as handed in 14 minutes ago, with no CHECK
    line, so work finished up to 15 minutes after the due date is recorded on time, silently. An
    honest submit writes its time and changes its folder within a second or two."""
    alice = world.students["alice"]
    # Her honest (later) submission is set aside: the backdating student hands in only this one.
    held = [n for n in world.honest if n.startswith("alice+")]
    for n, name in enumerate(held):
        (inbound(world) / name).rename(inbound(world) / f".held{n}")
    try:
        entry = plant_entry(world, alice, f"alice+vae+{stamp(-14 * 60)}+fourteenminx")
        collect(world)
    finally:
        for n, name in enumerate(held):
            (inbound(world) / f".held{n}").rename(inbound(world) / name)
    lines = report_text(world).splitlines()
    assert any(line.startswith(f"COLLECTED alice from {entry}") for line in lines), lines
    assert any(line.startswith(f"CHECK {entry}") for line in lines), "no CHECK line:\n" + "\n".join(
        lines
    )


# ---- 3. a student's submission secret breaks release_feedback for the class ---------------------


def fake_feedback(world: CourseWorld, student: str) -> None:
    """What autograde + generate_feedback leave in feedback/<student>/vae/: every non-notebook file
    of the collected submission (nbgrader's BaseConverter.init_assignment copies them, also
    timestamp.txt and submission_secret.txt) and the page. Built by hand: autograding is slow."""
    src = world.course / "submitted" / student / ASSIGNMENT
    dest = world.course / "feedback" / student / ASSIGNMENT
    dest.mkdir(parents=True)
    for path in src.rglob("*"):
        if path.is_file() and path.suffix != ".ipynb":
            (dest / path.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, dest / path.relative_to(src))
    (dest / f"{ASSIGNMENT}.html").write_text(f"<html><body>feedback for {student}</body></html>")


@pytest.mark.slow
@pytest.mark.exchange
@pytest.mark.parametrize(
    "variant, step",
    [
        ("missing", "rm submission_secret.txt"),
        ("empty", ": > submission_secret.txt"),
        ("not-utf8", "printf '\\377\\376' > submission_secret.txt"),
        ("html-folder", "mkdir extra.html; echo x > extra.html/a.txt"),
    ],
    ids=["missing", "empty", "not-utf8", "html-folder"],
)
def test_bad_submission_secret_cannot_stop_release_feedback(world: CourseWorld, variant, step):
    """collect checks timestamp.txt but not submission_secret.txt. nbgrader's release_feedback
    opens it for every student (FileNotFoundError when missing, UnicodeDecodeError when not text)
    and notebook_hash asserts a non-empty secret (AssertionError); it also globs feedback/*/vae/*.html,
    which matches a folder named extra.html (autograde and generate_feedback copy a submission's
    subfolders), and shutil.copy of a folder raises IsADirectoryError. One student's entry stops the
    release for the whole class with a traceback, and the pages released before it keep nbgrader's
    mode 0644 (PrivateReleaseFeedback gives pages away only after nbgrader's loop)."""
    alice = world.students["alice"]
    plant_entry(world, alice, f"alice+vae+{stamp()}+secret{variant[:6]:x<6}", extra=step)
    collect(world)
    for student in ("alice", "bob"):
        if (world.course / "submitted" / student / ASSIGNMENT).is_dir():
            fake_feedback(world, student)
    result = world.nbgrader(world.instructor, "release_feedback", ASSIGNMENT, check=False)
    bob_secret = (
        world.course / "submitted" / "bob" / ASSIGNMENT / "submission_secret.txt"
    ).read_text()
    bob_page = (
        world.exchange
        / COURSE_ID
        / "feedback"
        / (hashlib.md5((bob_secret + ASSIGNMENT).encode()).hexdigest() + ".html")
    )
    assert result.returncode == 0 and "Traceback" not in result.stdout, result.stdout[-3000:]
    assert bob_page.is_file(), sorted(os.listdir(bob_page.parent))
    st = bob_page.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (world.students["bob"].uid, 0o400), oct(
        st.st_mode
    )


# ---- 4. flooding inbound ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.exchange
def test_flood_of_forged_entries(world: CourseWorld):
    """3,000 empty folders in bob's name: each refused by owner. collect must stay quick and the
    report readable (one student must not be able to bury everyone else's lines)."""
    alice = world.students["alice"]
    n = 3000
    as_student(
        world,
        alice,
        f'seq 1 {n} | sed "s|^|$IN/bob+vae+2026-01-01 00:00:00.000000 UTC+flood|" '
        "| tr '\\n' '\\0' | xargs -0 mkdir",
    )
    t0 = time.monotonic()
    collect(world)
    elapsed = time.monotonic() - t0
    lines = report_text(world).splitlines()
    refused = [line for line in lines if line.startswith("REFUSED bob+vae+2026-01-01")]
    print(f"\ncollect with {n} forged entries: {elapsed:.1f} s, report section {len(lines)} lines")
    assert marks(submitted(world, "bob")) == "MARK: bob, latest submission"
    assert marks(submitted(world, "alice")) == "MARK: alice, her own work"
    assert elapsed < 60, elapsed
    assert len(refused) <= 100, f"{len(refused)} REFUSED lines from one owner in the report"


# ---- 5. huge, sparse and oddly named files -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.exchange
def test_sparse_huge_file_and_odd_names(world: CourseWorld):
    """A 1 TiB sparse file, a non-UTF-8 name, a 255-byte name, a right-to-left override, '..x',
    16 nested folders, and a carriage return and bidi control in the entry's own name: collect
    finishes quickly, leaves the huge file out, and every report line stays one printable line."""
    alice = world.students["alice"]
    long_name = "L" * 255
    deep = "/".join(["d"] * 16)
    entry = plant_entry(
        world,
        alice,
        f"alice+vae+{stamp()}+odd\r\u202excollected bob",
        extra=(
            "truncate -s 1T big.npz; "
            "touch \"$(printf 'a\\377b')\" ..x " + q(long_name) + " " + q("x\u202etxt.py") + "; "
            f"mkdir -p {deep}; touch {deep}/leaf"
        ),
    )
    t0 = time.monotonic()
    collect(world)
    elapsed = time.monotonic() - t0
    raw = (world.course / "reports" / f"collect-{ASSIGNMENT}.txt").read_bytes()
    text = raw.decode("utf-8")  # valid UTF-8
    section = text[text.rindex("== collect ") :]
    assert "\r" not in section and "\u202e" not in section, section
    got = world.course / "submitted" / "alice" / ASSIGNMENT
    print(f"\ncollect: {elapsed:.1f} s\n{section}")
    assert elapsed < 60
    assert marks(got / NOTEBOOK) == "MARK: alice, her own work"
    assert not (got / "big.npz").exists()
    assert (got / deep / "leaf").exists() and (got / long_name).exists()
    collected = [line for line in section.splitlines() if line.startswith("COLLECTED alice from")]
    assert len(collected) == 1 and "odd\\r\\u202e" in collected[0], section
    assert entry.rsplit("+", 1)[1] not in section


@pytest.mark.slow
@pytest.mark.exchange
def test_setuid_and_world_writable_modes_are_not_collected(world: CourseWorld):
    """alice's own entry with a setuid, world-writable script and a world-writable folder: what
    autograde and generate_feedback later read (as root) must not keep those modes."""
    alice = world.students["alice"]
    plant_entry(
        world,
        alice,
        f"alice+vae+{stamp()}+modesxxxxxxx",
        extra="mkdir -m 0777 open; printf '#!/bin/sh\\nid\\n' > run.sh; chmod 4777 run.sh; "
        "chmod 0777 . ; echo x > open/f; chmod 0666 open/f",
    )
    collect(world)
    got = world.course / "submitted" / "alice" / ASSIGNMENT
    for path in [got, *got.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert path.lstat().st_uid == 0, path
        assert not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_IWOTH | stat.S_IWGRP), (
            path,
            oct(mode),
        )


# ---- 6. swaps by a second process while collect runs -------------------------------------------


@pytest.mark.slow
@pytest.mark.exchange
def test_swaps_racing_collect_across_processes(world: CourseWorld):
    """alice, in her own process, keeps swapping her entry's notebook for a link to the master and
    back, and the entry itself for a link to source/vae and back, while the instructor collects
    five times: nothing of the master is ever collected, and collect never crashes."""
    alice = world.students["alice"]
    entry = plant_entry(world, alice, f"alice+vae+{stamp()}+racingxxxxxx")
    master = world.course / "source" / ASSIGNMENT / NOTEBOOK
    source = world.course / "source" / ASSIGNMENT
    loop = (
        f'IN={q(str(inbound(world)))}; E="$IN"/{q(entry)}; cp "$E"/{NOTEBOOK} ~/real; '
        "while :; do "
        f'ln -sfn {q(str(master))} ~/lnk; mv -fT ~/lnk "$E"/{NOTEBOOK}; '
        f'cp ~/real ~/real2; mv -fT ~/real2 "$E"/{NOTEBOOK}; '
        f'mv "$E" "$IN"/.away && ln -s {q(str(source))} "$E" && rm "$E" && '
        'mv "$IN"/.away "$E"; '
        "done"
    )
    argv = world.command(alice, ["timeout", "120", "sh", "-c", loop])
    proc = subprocess.Popen(
        argv,
        cwd=alice.home,
        env=world.env(alice),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(0.5)
        for _ in range(5):
            collect(world)
            assert_no_source_in_submitted(world)
            shutil.rmtree(world.course / "submitted")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


# ---- 7. the roster (in-process) ----------------------------------------------------------------


def test_roster_refuses_duplicates(tmp_path: Path):
    """Two users with one student id make either's entries the other's latest submission (alice's
    entry replaces bob's in submitted/bob/); one user listed twice silently keeps the last id.
    Both are an instructor's slip the roster should refuse, as it refuses a bad id."""
    from vae_grader.exchange.identity import ROSTER_FILE, Roster, RosterError

    for rows in ("alice,s1\nbob,s1\n", "alice,s1\nalice,s2\n"):
        (tmp_path / ROSTER_FILE).write_text("unix_user,student_id\n" + rows)
        with pytest.raises(RosterError):
            Roster.load(tmp_path)


def test_roster_refuses_ids_equal_but_for_case(tmp_path: Path):
    """'Bob' and 'bob' are two students to the gradebook but one folder on a case-insensitive
    file system (and one person to a reader of the report)."""
    from vae_grader.exchange.identity import ROSTER_FILE, Roster, RosterError

    (tmp_path / ROSTER_FILE).write_text("unix_user,student_id\nalice,Bob\nbob,bob\n")
    with pytest.raises(RosterError):
        Roster.load(tmp_path)


def test_mount_inside_an_entry_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A folder of the entry on another file system (a FUSE mount the student runs could answer
    each read differently) refuses the entry. A real mount needs privileges the test should not
    use, so the listing is made to report another device for one folder."""
    from vae_grader.exchange import safe_copy

    entry = tmp_path / "entry"
    (entry / "mnt").mkdir(parents=True)
    (entry / "mnt" / "f.py").write_text("x = 1\n")
    real = safe_copy._lstat

    def elsewhere(dir_fd: int, name: str) -> os.stat_result | None:
        st = real(dir_fd, name)
        if st is not None and name == "mnt":
            fields = list(st[:10])
            fields[stat.ST_DEV] += 1
            return os.stat_result(fields)
        return st

    monkeypatch.setattr(safe_copy, "_lstat", elsewhere)
    fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(safe_copy.Refused, match="mnt is on another file system"):
            safe_copy.copy_entry(fd, str(tmp_path / "dest"), os.getuid(), safe_copy.Limits())
    finally:
        os.close(fd)
