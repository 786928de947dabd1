"""What the exchange attack tests share: the honest world they attack, and the steps of an attack.

alice is the attacker, bob her victim; both first hand in honestly (bob twice), so every test can check
that bob's real latest submission and alice's own are what collect takes whatever alice plants. Every
step runs as the Unix user it names (tests/exchange_world.py); the instructor runs as root.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat

from exchange_world import ASSIGNMENT, COURSE_ID, CourseWorld, Person

NOTEBOOK = f"{ASSIGNMENT}.ipynb"
PRIVATE_NOTE = "instructor-notes.md"
STAMP = "%Y-%m-%d %H:%M:%S.%f UTC"


def honest_world() -> Iterator[CourseWorld]:
    """A released assignment that alice and bob fetched; bob submitted, then alice, then bob again."""
    world = CourseWorld.create(("alice", "bob"))
    world.release()
    alice, bob = world.students["alice"], world.students["bob"]
    for student in (alice, bob):
        world.nbgrader(student, "fetch_assignment", ASSIGNMENT)
    for student, text in (
        (bob, "bob, first submission"),
        (alice, "alice, her own work"),
        (bob, "bob, latest submission"),
    ):
        mark(world, student, text)
        world.nbgrader(student, "submit", ASSIGNMENT)
        time.sleep(1.1)  # nbgrader's entry names carry the time: keep them apart
    world.honest = set(os.listdir(inbound(world)))
    yield world
    print("\nCommands run, in order:\n" + "\n".join(world.transcript[-40:]))
    world.remove()


def between_attacks(request, *course_folders: str) -> Iterator[None]:
    """The body of an autouse fixture: after each test that used the module's ``world``, put it
    back to the honest submissions alone and remove ``course_folders``."""
    if "world" not in request.fixturenames:
        yield
        return
    world = request.getfixturevalue("world")
    yield
    back_to_honest(world, *course_folders)


def replace_course_folder(exchange: Path, helper_source: str) -> tuple[str, ...]:
    """The command a student runs to put her own course folder in the exchange in place of the
    instructor's: the released files copied over, a ``helper.py`` of hers added, all writable."""
    q = shlex.quote
    return (
        "sh",
        "-c",
        f"set -e; cd {q(str(exchange))}; mv {COURSE_ID} .{COURSE_ID}-old; "
        f"mkdir -p {COURSE_ID}/inbound {COURSE_ID}/feedback {COURSE_ID}/outbound; "
        f"cp -r .{COURSE_ID}-old/outbound/{ASSIGNMENT} {COURSE_ID}/outbound/; "
        f"echo {q(helper_source)} > {COURSE_ID}/outbound/{ASSIGNMENT}/helper.py; "
        f"chmod -R a+rwX {COURSE_ID}",
    )


def back_to_honest(world: CourseWorld, *course_folders: str) -> None:
    """Remove every inbound entry planted after the honest ones, and the given course folders."""
    for name in set(os.listdir(inbound(world))) - world.honest:
        path = inbound(world) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    for folder in course_folders:
        shutil.rmtree(world.course / folder, ignore_errors=True)


def inbound(world: CourseWorld) -> Path:
    return world.exchange / COURSE_ID / "inbound"


def mark(world: CourseWorld, student: Person, text: str) -> None:
    """Put ``text`` in the first cell of the student's notebook, as the student."""
    path = world.fetched_notebook(student)
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"MARK: {text}"))
    nbformat.write(nb, path)
    os.chown(path, student.uid, student.uid)


def marks(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return nb.cells[0].source if nb.cells else ""


def stamp(delta_s: float = 0.0) -> str:
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=delta_s)).strftime(STAMP)


def as_student(
    world: CourseWorld, student: Person, script: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a shell script as the student, in their home, with $IN the inbound folder."""
    return world.run(
        student,
        "sh",
        "-c",
        f"IN={shlex.quote(str(inbound(world)))}; set -e; {script}",
        check=check,
    )


def plant_entry(
    world: CourseWorld, student: Person, name: str, extra: str = "", when: str = ""
) -> str:
    """As ``student``: a hand-made inbound entry ``name`` holding their notebook, a timestamp.txt
    (``when``, default the time in the name), a submission secret, then ``extra`` shell steps run
    inside it."""
    when = when or name.rsplit("+", 3)[2]
    q = shlex.quote
    as_student(
        world,
        student,
        f'mkdir "$IN"/{q(name)}; cd "$IN"/{q(name)}; cp ~/{ASSIGNMENT}/{NOTEBOOK} .; '
        f"printf %s {q(when)} > timestamp.txt; printf %s {'ab' * 64} > submission_secret.txt; "
        f"{extra or 'true'}",
    )
    return name


def collect(world: CourseWorld, *args: str) -> subprocess.CompletedProcess[str]:
    """The instructor's plain ``nbgrader collect``; it must never end in a traceback."""
    result = world.nbgrader(world.instructor, "collect", ASSIGNMENT, *args, timeout=300)
    assert "Traceback" not in result.stdout, result.stdout
    return result


def report(world: CourseWorld) -> str:
    """The last run's section of the collect report."""
    text = (world.course / "reports" / f"collect-{ASSIGNMENT}.txt").read_text()
    return text[text.rindex("== collect ") :]


def submitted(world: CourseWorld, student: str) -> Path:
    return world.course / "submitted" / student / ASSIGNMENT / NOTEBOOK


def assert_no_source_in_submitted(world: CourseWorld) -> None:
    """No link, no copy of the master, no private note and no solution anywhere in submitted/."""
    master = (world.course / "source" / ASSIGNMENT / NOTEBOOK).read_bytes()
    for path in (world.course / "submitted").rglob("*"):
        assert not path.is_symlink(), path
        if path.is_file():
            assert path.read_bytes() != master, path
            assert path.name != PRIVATE_NOTE, path
            assert "### BEGIN SOLUTION" not in path.read_text(errors="replace"), path
