"""The verdicts, run in a confined process of their own with bounds on memory, CPU time and wall time.

A probe's answer is hostile data: a ``.keras`` file whose HDF5 weights declare millions of chunks,
a config that builds a model of hundreds of millions of parameters, a zip member that inflates to
gigabytes, a legal-size model whose convolutions take minutes. Judged in the grading process
itself, such an answer took that process (and the machine beside it) down with it. So the grading
process only reads the answer's envelope (``judge.answer_bytes``); unpacking it, loading its models
and every verdict run in a *verdict process* (``vae_grader.judge.verdict_worker``):

* confined by bubblewrap like the kernel (:class:`VerdictSandbox`: the kernel's allowlist, plus the
  grader package read-only; no network, no writable path but a private ``/tmp``), under an
  unprivileged user id of its own, with ``RLIMIT_AS`` as a backstop;
* watched by this process while it judges (:meth:`ConfinedJudge.judge`): past ``memory_limit``
  bytes of resident memory or ``cpu_seconds`` of CPU time (its whole process tree, counted from the
  start of that verdict, so the limit does not depend on the machine's load) it is killed, and the
  cell scores 0 with the reason; past ``wall_seconds`` with its CPU time still under the limit, the
  machine, not the answer, was slow: the cell is flagged for the instructor instead;
* one per submission, started while the kernel starts (Keras's import overlaps the student's first
  cells) and replaced after a verdict that killed it, so one answer costs only its own cell.

Every way this can end without a verdict (the process would not start, died, answered garbage)
ends in a flagged zero, never in points (:class:`vae_grader.judge.rulings.Ruling`).
"""

from __future__ import annotations

import json
import os
import select
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import psutil
from traitlets import Integer
from traitlets.config import LoggingConfigurable

from vae_grader.judge import rulings as judge
from vae_grader.sandbox.confine import Allowed, GiB, MiB, Sandbox
from vae_grader.sandbox.environment import (
    package_folder,
    sandbox_disabled,
    student_package,
    verdict_environment,
)

_FRAME = struct.Struct(">Q")
MAX_REPLY_BYTES = 2**20
"""A ruling is points and a few messages (each student text quoted in it is cut to 300 characters)."""
POLL_SECONDS = 0.1
"""How often the verdict process's memory and CPU time are read while it judges."""


def write_frame(stream, payload: bytes) -> None:
    stream.write(_FRAME.pack(len(payload)) + payload)
    stream.flush()


def read_frame(stream) -> bytes | None:
    """One length-prefixed frame from a blocking binary stream, or None at its end."""
    head = stream.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    (size,) = _FRAME.unpack(head)
    body = stream.read(size)
    return body if len(body) == size else None


def grader_package() -> Path:
    """The folder of the grader package this process imports (its real path, as lent)."""
    package = package_folder("vae_grader")
    assert package is not None  # this module is part of it
    return Path(os.path.realpath(package))


_WORKER = (
    "import runpy, sys; sys.path[:0] = sys.argv[1:]; del sys.argv[1:]; "
    "runpy.run_module('vae_grader.judge.verdict_worker', run_name='__main__', alter_sys=True)"
)
"""The verdict process's start: Python in isolated mode (no environment, no user site, no current folder on
its path), with the folders of the two packages this process imports put first, so the verdicts it runs
are the ones this process loaded its tables from, whichever copy an environment installs."""


def worker_command() -> list[str]:
    roots = [str(grader_package().parent)]
    package = student_package()
    if package is not None:
        roots.append(str(package.parent))
    return [sys.executable, "-I", "-c", _WORKER, *dict.fromkeys(roots)]


class VerdictSandbox(Sandbox):
    """The kernel's allowlist (:class:`vae_grader.sandbox.confine.Sandbox`) for the verdict process: no working
    folder or sockets, the grader package lent read-only, and a user id apart from the kernel's."""

    def allowed_paths(self) -> list[Allowed]:
        package = str(grader_package())
        return [*super().allowed_paths(), Allowed("ro", package, package)]

    def kernel_ids(self) -> tuple[int, int]:
        if os.geteuid() != 0:
            return os.getuid(), os.getgid()
        uid = 150000 + os.getpid() % 50000  # the kernels of this host use 100000-149999
        return uid, uid


class ConfinedJudge(LoggingConfigurable):
    """One verdict process for one submission: start it, send it answers, enforce its limits.

    Options are set in ``nbgrader_config.py`` as ``c.ConfinedJudge.<name>``; the measurements
    behind each default are in docs/measurements.md ("What the limits rest on").
    """

    memory_limit = Integer(
        3 * GiB,
        help="Resident memory of the verdict process, in bytes, past which a verdict is stopped and scores 0.",
    ).tag(config=True)
    address_space = Integer(
        8 * GiB,
        help="RLIMIT_AS of the verdict process (a backstop for allocations faster than the watch).",
    ).tag(config=True)
    cpu_seconds = Integer(
        120,
        help="CPU seconds (the process tree, all threads) one verdict may use before it scores 0.",
    ).tag(config=True)
    wall_seconds = Integer(
        600,
        help="Wall-clock seconds one verdict may take; past it with CPU time to spare, the machine was "
        "slow, not the answer: the cell is flagged for the instructor, never zeroed.",
    ).tag(config=True)
    startup_seconds = Integer(
        300,
        help="Seconds the verdict process gets to import Keras and report ready (not the student's time).",
    ).tag(config=True)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._process: subprocess.Popen | None = None
        self._ready = False
        self._stderr: deque[str] = deque(maxlen=20)
        self._lock = threading.Lock()
        self.peak_rss = 0
        """Largest resident memory seen (bytes), over every verdict of this judge."""
        self.cpu_used = 0.0
        """CPU seconds the verdicts used in all (not counting the start)."""
        self.cpu_longest = 0.0
        """CPU seconds of the most expensive verdict."""

    # --- the process --------------------------------------------------------------------------------

    def command(self) -> list[str]:
        worker = worker_command()
        if sandbox_disabled():
            from vae_grader.sandbox.confine import _LIMITS_LAUNCHER

            limits = [str(self.address_space), "0", str(256 * MiB), "0", "0", "0"]
            return [sys.executable, "-I", "-S", "-c", _LIMITS_LAUNCHER, *limits, "--", *worker]
        sandbox = VerdictSandbox(
            parent=self,
            memory_limit=self.address_space,
            cpu_seconds=0,
            max_file_size=256 * MiB,
            scratch_size=512 * MiB,
        )
        command = sandbox.command(worker)
        separator = command.index("--")
        return [*command[:separator], "--chdir", "/tmp", *command[separator:]]

    def environment(self) -> dict[str, str]:
        env = verdict_environment()
        if sandbox_disabled():
            return env
        return VerdictSandbox(parent=self).kernel_environment(env)

    def start(self) -> None:
        """Start the verdict process (it imports Keras in the background; :meth:`judge` waits)."""
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                return
            self._ready = False
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.environment(),
                cwd="/tmp" if sandbox_disabled() else None,
            )
            threading.Thread(target=self._drain, args=(self._process.stderr,), daemon=True).start()

    def _drain(self, stream) -> None:
        for line in iter(stream.readline, b""):
            self._stderr.append(line.decode("utf-8", "replace").rstrip())

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        for child in _Tree(process.pid).processes():
            _read(lambda p: p.kill(), child, None)
        try:
            process.kill()
            process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass

    def _await_ready(self) -> str | None:
        """Wait for the process's ready frame; why it never came, or None."""
        process = self._process
        assert process is not None and process.stdout is not None
        reply, why = self._read_reply(process, self.startup_seconds, limits=False)
        if reply is None or reply.get("ready") is not True:
            tail = " | ".join(list(self._stderr)[-3:]) or "no output"
            self.stop()
            why_not = why[0] if why else "no ready signal"
            return f"the grader's verdict process did not start ({why_not}: {tail})"
        self._ready = True
        return None

    # --- one verdict --------------------------------------------------------------------------------

    def judge(self, test: judge.Judged, blob: bytes, salt: int) -> judge.Ruling:
        """The ruling on one packed answer; never raises, never passes by default."""
        try:
            self.start()
            if not self._ready:
                problem = self._await_ready()
                if problem:
                    return judge.Ruling(judge.failed(test, problem), problem)
            process = self._process
            assert process is not None and process.stdin is not None
            header = json.dumps({"grade_id": test.grade_id, "salt": int(salt)}).encode()
            try:
                write_frame(process.stdin, header)
                write_frame(process.stdin, blob)
            except OSError:
                pass  # it died: the read below says how
            reply, why = self._read_reply(process, self.wall_seconds, limits=True)
        except Exception as exc:  # the grader's own failure: flagged, never points
            self.log.exception("The verdict process failed")
            reason = f"the grader's verdict process failed ({type(exc).__name__}: {exc})"
            self.stop()
            return judge.Ruling(judge.failed(test, reason), reason)
        if reply is None:
            self.stop()
            failure, flag = why
            return judge.Ruling(judge.failed(test, failure), flag)
        return judge.Ruling.from_json(test, reply)

    def _read_reply(self, process: subprocess.Popen, wall: float, *, limits: bool):
        """The next reply, watching the process: (reply, None), or (None, (reason, flag)) when there is
        none; ``flag`` is None where the answer itself was at fault (a limit of ``limits``)."""
        assert process.stdout is not None
        fd = process.stdout.fileno()
        buffer = b""
        started = time.monotonic()
        tree = _Tree(process.pid)
        cpu_start = tree.cpu()
        while True:
            if len(buffer) >= _FRAME.size and _size(buffer) > MAX_REPLY_BYTES:
                reason = (
                    f"the grader's verdict process answered more than {MAX_REPLY_BYTES:,} bytes"
                )
                return None, (reason, reason)
            if len(buffer) >= _FRAME.size and len(buffer) >= _FRAME.size + _size(buffer):
                body = buffer[_FRAME.size : _FRAME.size + _size(buffer)]
                if limits:
                    self._count(tree.cpu() - cpu_start)
                try:
                    value = json.loads(body)
                except ValueError:
                    value = None
                if not isinstance(value, dict):
                    reason = "the grader's verdict process answered something that is not a verdict"
                    return None, (reason, reason)
                return value, None
            ready, _, _ = select.select([fd], [], [], POLL_SECONDS)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    process.wait(timeout=10)
                    return None, self._death(process)
                buffer += chunk
                continue
            rss = tree.rss()
            self.peak_rss = max(self.peak_rss, rss)
            if not limits:
                if time.monotonic() - started > wall:
                    reason = f"not ready within {wall:g} s"
                    return None, (reason, reason)
                continue
            used = tree.cpu() - cpu_start
            if rss > self.memory_limit:
                self._count(used)
                return None, (
                    f"checking your answer needed more than {self.memory_limit / GiB:g} GB of memory "
                    "(the course's models need far less): it was stopped",
                    None,
                )
            if used > self.cpu_seconds:
                self._count(used)
                return None, (
                    f"checking your answer needed more than {self.cpu_seconds} s of computing "
                    "(the course's models need a few seconds): it was stopped",
                    None,
                )
            if time.monotonic() - started > wall:
                self._count(used)
                reason = (
                    f"the grader's verdict took longer than {wall:g} s on a busy machine "
                    f"(after {used:.0f} s of computing)"
                )
                return None, (reason, reason)

    def _count(self, seconds: float) -> None:
        self.cpu_used += seconds
        self.cpu_longest = max(self.cpu_longest, seconds)

    def _death(self, process: subprocess.Popen):
        code = process.returncode
        tail = list(self._stderr)[-1:] or ["no output"]
        if code is not None and code < 0:
            how = f"signal {-code}"
        else:
            how = f"exit code {code}"
        reason = (
            f"the grader's verdict process stopped while judging your answer ({how}: {tail[0][:200]}); "
            "it is flagged for your instructor"
        )
        return reason, reason


class _Tree:
    """The verdict process and its children, as psutil sees them. Listing children walks all of
    /proc (about 5 ms here), so the list is renewed at most once a second; reading one process's
    memory and CPU time is cheap."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.members: list[psutil.Process] = []
        self.listed = -1.0

    def processes(self) -> list[psutil.Process]:
        if time.monotonic() - self.listed > 1.0:
            try:
                root = psutil.Process(self.pid)
                self.members = [root, *root.children(recursive=True)]
            except psutil.Error:
                self.members = []
            self.listed = time.monotonic()
        return self.members

    def rss(self) -> int:
        return sum(_read(lambda p: p.memory_info().rss, member, 0) for member in self.processes())

    def cpu(self) -> float:
        return sum(
            _read(lambda p: p.cpu_times().user + p.cpu_times().system, member, 0.0)
            for member in self.processes()
        )


def _read(what, member: psutil.Process, default):
    try:
        return what(member)
    except psutil.Error:
        return default


def _size(buffer: bytes) -> int:
    return _FRAME.unpack(buffer[: _FRAME.size])[0]
