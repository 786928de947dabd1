"""A scratch course with nbgrader's exchange, an instructor and students, for the end-to-end tests.

The students are real, separate Unix users when the tests run as root: each command of a student
runs in a private mount namespace where a scratch ``/etc/passwd`` names them (``unshare`` +
``mount --bind``), under their own uid (``setpriv``), with their own HOME (mode 0700). nbgrader
then reads each student's name from the operating system exactly as on a course server
(``pwd.getpwuid(os.getuid())``), and file modes in the exchange are checked by real access, not
only by reading mode bits. The machine's own user database is never touched.

Where that is impossible (not root, or no ``unshare``), :func:`CourseWorld.create` says why and the
tests skip.

Every command is the plain ``nbgrader ...`` a person types (the environment's ``bin/`` on PATH);
:attr:`CourseWorld.transcript` keeps them in order, so the README's "Running it as a real course"
can be compared with what the test ran.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from vae_grader.pipeline.grade_class import copy_course

VENV_BIN = Path(sys.executable).parent
COURSE_ID = "vae-mnist"
ASSIGNMENT = "vae"
FIRST_UID = 23001  # far above Debian's regular users (1000+), so no file on the machine is theirs


@dataclass(frozen=True)
class Person:
    name: str
    home: Path
    uid: int  # 0 for the instructor
    work: Path  # where they run nbgrader: the course root for the instructor, HOME for a student


@dataclass
class CourseWorld:
    base: Path
    course: Path
    exchange: Path
    instructor: Person
    students: dict[str, Person]
    passwd: Path
    group: Path
    transcript: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, student_names: tuple[str, ...]) -> CourseWorld:
        problem = separate_users_problem()
        if problem:
            import pytest

            pytest.skip(f"students need their own Unix users here: {problem}")
        base = Path(tempfile.mkdtemp(prefix="vae-course-"))
        base.chmod(0o755)  # students must reach the exchange below it (mkdtemp makes 0700)
        course = copy_course(base / "course")
        exchange = (
            base / "exchange"
        )  # created by the instructor's release_assignment, as on a server
        (base / "home" / "instructor").mkdir(parents=True)
        instructor = Person("root", base / "home" / "instructor", 0, course)
        students = {}
        passwd_lines = Path("/etc/passwd").read_text().rstrip("\n").splitlines()
        group_lines = Path("/etc/group").read_text().rstrip("\n").splitlines()
        for offset, name in enumerate(student_names):
            uid = FIRST_UID + offset
            home = base / "home" / name
            home.mkdir(parents=True)
            os.chown(home, uid, uid)
            home.chmod(0o700)
            students[name] = Person(name, home, uid, home)
            passwd_lines.append(f"{name}:x:{uid}:{uid}:{name}:{home}:/bin/sh")
            group_lines.append(f"{name}:x:{uid}:")
        (base / "home").chmod(0o755)
        passwd, group = base / "passwd", base / "group"
        passwd.write_text("\n".join(passwd_lines) + "\n")
        group.write_text("\n".join(group_lines) + "\n")
        return cls(base, course, exchange, instructor, students, passwd, group)

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    def env(self, who: Person) -> dict[str, str]:
        """A person's environment, built from scratch: no VAE_MODE (validating must pick the short
        budget on its own), the offline MNIST copy, the scratch exchange."""
        env = {
            "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(who.home),
            "USER": who.name,
            "LOGNAME": who.name,
            "LANG": "C.UTF-8",
            "KERAS_BACKEND": "tensorflow",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "MPLBACKEND": "agg",
            "PYTHONDONTWRITEBYTECODE": "1",
            "VAE_EXCHANGE": str(self.exchange),
        }
        for name in ("MNIST_NPZ", "VAE_GRADING_WORKERS", "VAE_SANDBOX"):
            if os.environ.get(name):
                env[name] = os.environ[name]
        if "MNIST_NPZ" in env:  # the path reopened for students (needed_paths) is the real one
            env["MNIST_NPZ"] = os.path.realpath(env["MNIST_NPZ"])
        return env

    def command(self, who: Person, argv: list[str]) -> list[str]:
        """``argv`` as ``who``: inside a mount namespace whose /etc/passwd knows the students.

        A student also needs to reach the interpreter, which may live in a folder only root may
        enter (pyenv under /root, mode 0700): :func:`reopen_for_students` shows the student just
        that path, in the namespace only.
        """
        lines = ['mount --bind "$1" /etc/passwd', 'mount --bind "$2" /etc/group']
        as_user: list[str] = []
        if who.uid != 0:
            lines += reopen_for_students(self.base / "views", needed_paths())
            as_user = [
                "setpriv",
                f"--reuid={who.uid}",
                f"--regid={who.uid}",
                "--clear-groups",
                "--",
            ]
        script = " && ".join([*lines, "shift 2", 'exec "$@"'])
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            str(self.passwd),
            str(self.group),
            *as_user,
            *argv,
        ]

    def run(
        self,
        who: Person,
        *argv: str,
        cwd: Path | None = None,
        check: bool = True,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        """Run one command as ``who`` in ``cwd`` (default: their working folder); output captured."""
        cwd = cwd or who.work
        shown = " ".join(argv).replace("\n", "\\n")  # a test may put a newline in a file name
        self.transcript.append(f"[{who.name}] {shown}")
        result = subprocess.run(
            self.command(who, list(argv)),
            cwd=cwd,
            env=self.env(who),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"`{' '.join(argv)}` as {who.name} exited {result.returncode}:\n{result.stdout[-4000:]}"
            )
        return result

    def nbgrader(self, who: Person, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
        return self.run(who, "nbgrader", *args, **kwargs)

    def release(self) -> None:
        """The instructor's side up to the release, as in the README."""
        self.nbgrader(self.instructor, "generate_assignment", ASSIGNMENT, "--force")
        self.nbgrader(self.instructor, "release_assignment", ASSIGNMENT)

    def fetched_notebook(self, student: Person) -> Path:
        return student.home / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"


def needed_paths() -> list[Path]:
    """What a student's processes must reach: the interpreter, its standard library, the course."""
    paths = [
        Path(os.path.realpath(sys.executable)),
        Path(os.path.realpath(sys.base_prefix)),
        Path(__file__).resolve().parents[1],
    ]
    if os.environ.get("MNIST_NPZ"):
        paths.append(Path(os.path.realpath(os.environ["MNIST_NPZ"])))
    return paths


def closed_ancestors(paths: list[Path]) -> dict[Path, set[str]]:
    """For each folder others may not enter (no o+x) on the way to ``paths``: the entries below it
    that lead to them. Only the outermost such folder of each path counts."""
    closed: dict[Path, set[str]] = {}
    for path in paths:
        for ancestor in reversed(path.parents):
            if ancestor != Path("/") and not ancestor.stat().st_mode & stat.S_IXOTH:
                closed.setdefault(ancestor, set()).add(path.relative_to(ancestor).parts[0])
                break
    return closed


def reopen_for_students(views: Path, paths: list[Path]) -> list[str]:
    """Shell steps (run as root in the student's mount namespace) that cover each closed folder
    with an empty, enterable tmpfs and put back only the entries the student needs."""
    steps = []
    for n, (folder, entries) in enumerate(sorted(closed_ancestors(paths).items())):
        for entry in sorted(entries):
            view = views / f"{n}-{entry}"
            view.mkdir(parents=True, exist_ok=True)
            steps.append(
                f"mount --bind {shlex.quote(str(folder / entry))} {shlex.quote(str(view))}"
            )
        steps.append(f"mount -t tmpfs -o mode=0755 tmpfs {shlex.quote(str(folder))}")
        for entry in sorted(entries):
            view = views / f"{n}-{entry}"
            steps.append(f"mkdir -p {shlex.quote(str(folder / entry))}")
            steps.append(
                f"mount --bind {shlex.quote(str(view))} {shlex.quote(str(folder / entry))}"
            )
    return steps


def separate_users_problem() -> str | None:
    """Why students cannot be separate Unix users here, or None when they can."""
    if os.geteuid() != 0:
        return "the tests do not run as root"
    for tool in ("unshare", "setpriv", "mount"):
        if shutil.which(tool) is None:
            return f"`{tool}` (util-linux) is missing"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "true"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"`unshare --mount` is refused: {probe.stderr.strip()}"
    return None
