"""The clock a cell's time limit reads: the CPU time of the kernel's whole process tree, not wall time.

On a busy machine a correct cell takes longer in wall time (measured: ``complete`` 17.6 s idle,
189 s beside 48 busy loops) but computes the same, so a limit in CPU seconds gives the same
verdict idle and loaded. What the kernel computes is counted over its whole process tree (the
sandbox's ``bwrap``, the kernel, every process it started; processes that ended and were waited
for are counted through their parent's ``children`` times), from the start of the cell.

A cell that sleeps or blocks uses no CPU, so the clock also watches for *idleness*: a stretch of
wall time in which the tree neither computed nor waited for a CPU (its run-queue wait,
``/proc/<pid>/task/<tid>/schedstat``, the time threads were ready to run but got no CPU, the time a
cgroup's CPU quota held them back included) and no thread of it was runnable or in disk sleep
(``R`` or ``D`` in ``/proc/<pid>/task/<tid>/stat``). A kernel starved by a busy machine is
runnable and waiting the whole time, so it is never idle; one idle for as long as the cell's CPU
limit slept or blocked, which is the student's doing, and is stopped then.

A wall-clock *backstop* (a multiple of the CPU limit) stops what is neither: there the run-queue
wait tells the cases apart. A kernel that waited for CPU a large part of the time was starved by
the machine, which is not the student's doing, and its submission is flagged, never zeroed; a
kernel that was not waiting slept or blocked. Where the host publishes no schedstat the clock
never judges idleness and the backstop alone decides.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

CPU = "cpu"
"""The cell computed past its CPU-time limit: the student's code did."""
SLEPT = "slept"
"""The kernel was idle as long as the CPU limit, or only the wall-clock backstop fired and it was not
waiting for CPU: it slept or blocked."""
STARVED = "starved"
"""Only the wall-clock backstop fired and the kernel spent much of it waiting for a CPU: the machine's doing."""


class ProcessTree:
    """A process and its descendants, as the operating system accounts them.

    Listing descendants walks all of ``/proc`` (milliseconds), so the list is renewed at most once
    a second. A process that ended and was waited for moves its CPU time into its parent's
    ``children`` times, so the sum over the living members stays whole; the readings are kept
    monotonic against the moment in between."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._members: list[psutil.Process] = []
        self._listed = -1.0
        self._cpu = 0.0
        self._waited = 0.0

    def _processes(self) -> list[psutil.Process]:
        if time.monotonic() - self._listed > 1.0:
            try:
                root = psutil.Process(self.pid)
                self._members = [root, *root.children(recursive=True)]
            except psutil.Error:
                self._members = []
            self._listed = time.monotonic()
        return self._members

    def cpu_seconds(self) -> float:
        """User and system CPU seconds of the tree, waited-for children included."""
        total = 0.0
        for member in self._processes():
            try:
                t = member.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system + t.children_user + t.children_system
        self._cpu = max(self._cpu, total)
        return self._cpu

    def _thread_files(self, name: str) -> Iterator[str]:
        """The text of ``/proc/<pid>/task/<tid>/<name>`` for every thread of the tree still there."""
        for member in self._processes():
            for path in Path(f"/proc/{member.pid}/task").glob(f"*/{name}"):
                try:
                    yield path.read_text()
                except OSError:
                    continue

    def waited_seconds(self) -> float | None:
        """Seconds the tree's threads were ready to run but not running (summed over threads), or
        None where the kernel does not publish schedstat."""
        published = False
        total = 0.0
        for text in self._thread_files("schedstat"):
            try:
                total += int(text.split()[1]) / 1e9
                published = True
            except (IndexError, ValueError):
                continue
        if not published:
            return None
        self._waited = max(self._waited, total)
        return self._waited

    def busy_now(self) -> bool:
        """True when a thread of the tree is running or ready to run (``R``) or in disk sleep
        (``D``, paging or reading a file): not asleep of its own accord."""
        for text in self._thread_files("stat"):
            fields = text.rsplit(")", 1)[-1].split()
            if fields and fields[0] in ("R", "D"):
                return True
        return False


@dataclass
class CellClock:
    """One cell's limits, read from the kernel's process tree: ``expired()`` says which one ran out.

    ``cpu_limit`` None means no CPU limit (and then no backstop either)."""

    tree: ProcessTree | None
    cpu_limit: float | None
    wall_limit: float | None
    starved_fraction: float
    started: float = field(default_factory=time.monotonic)
    cpu_start: float = 0.0
    wait_start: float | None = None
    cpu_used: float = 0.0
    waited: float | None = None
    idle: float = 0.0
    """Wall seconds since the tree was last seen computing, waiting for a CPU or runnable."""
    busy_fraction: float = 0.05
    """Between two readings the tree counts as busy when its CPU time plus run-queue wait grew by
    at least this fraction of the wall time between them (a sleeping kernel: 0.1 %; a busy one on
    a machine at load 28: 91 %; docs/load.md)."""
    verdict: str | None = None
    """The first limit that ran out; it stays, however long the interrupt takes after."""

    _last: tuple[float, float] | None = field(default=None, init=False, repr=False)
    """(wall, CPU + wait) at the latest reading."""
    _busy_at: float = field(default=0.0, init=False, repr=False)
    """Wall time the tree was last seen busy."""

    def __post_init__(self) -> None:
        if self.tree is not None:
            self.cpu_start = self.tree.cpu_seconds()
            self.wait_start = self.tree.waited_seconds()

    @property
    def wall(self) -> float:
        return time.monotonic() - self.started

    @property
    def charged(self) -> float:
        """What the cell cost the submission's budget: its CPU seconds (wall seconds without a tree)."""
        return self.cpu_used if self.tree is not None else self.wall

    def read(self) -> None:
        """Renew ``cpu_used``, ``waited`` and ``idle`` from the tree."""
        if self.tree is None:
            return
        self.cpu_used = max(self.cpu_used, self.tree.cpu_seconds() - self.cpu_start)
        now = self.tree.waited_seconds()
        if now is None or self.wait_start is None:
            return
        self.waited = now - self.wait_start
        wall, spent = self.wall, self.cpu_used + self.waited
        if self._last is not None:
            grew = spent - self._last[1] >= self.busy_fraction * (wall - self._last[0])
            if grew or self.tree.busy_now():
                self._busy_at = wall
        self._last = (wall, spent)
        self.idle = wall - self._busy_at

    def expired(self) -> str | None:
        """``CPU``, ``SLEPT`` or ``STARVED`` once a limit ran out (see :func:`why_stopped`), else None."""
        wall = self.wall
        if self.verdict is not None or (self.cpu_limit is None and self.wall_limit is None):
            return self.verdict
        self.read()
        self.verdict = why_stopped(
            cpu=self.cpu_used if self.tree is not None else wall,
            waited=self.waited,
            idle=self.idle,
            wall=wall,
            cpu_limit=self.cpu_limit,
            wall_limit=self.wall_limit,
            starved_fraction=self.starved_fraction,
        )
        return self.verdict


def why_stopped(
    *,
    cpu: float,
    waited: float | None,
    wall: float,
    cpu_limit: float | None,
    wall_limit: float | None,
    starved_fraction: float,
    idle: float = 0.0,
) -> str | None:
    """Which limit a cell ran past, from what its kernel got: the decision alone, for tests.

    The CPU limit comes first: past it the student's code computed too long, however busy the
    machine. Idle (neither computing, nor waiting for a CPU, nor runnable) for as long as the CPU
    limit, the cell slept or blocked. Past the wall-clock backstop with CPU to spare, the cell was
    starved when its threads waited for a CPU at least ``starved_fraction`` of the wall time;
    otherwise it slept or blocked.
    Where the host does not publish the wait (``waited`` None) the machine gets the benefit of the
    doubt: flagged for the instructor rather than zeroed.
    """
    if cpu_limit is not None and cpu > cpu_limit:
        return CPU
    if cpu_limit is not None and idle > cpu_limit:
        return SLEPT
    if wall_limit is not None and wall > wall_limit:
        if waited is None or waited >= starved_fraction * wall:
            return STARVED
        return SLEPT
    return None
