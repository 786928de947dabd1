"""Each grading kernel's share of the CPUs, enforced where the student cannot undo it: a cgroup of its own.

Pinning a grader to cores with ``taskset`` is advisory: a kernel may call ``os.sched_setaffinity``
onto every core (measured: "affinity before [0] ... after [0, 1]", both cores burned for minutes
while another student was graded beside it). A cgroup's CPU quota is enforced by the scheduler
over every thread of every process in it, whatever affinity they set: cgroup v2 ``cpu.max``, or
v1 ``cpu.cfs_quota_us``. The kernel's process tree enters its cgroup before ``bwrap`` starts
(:meth:`KernelCgroup.command` wraps the kernel's command line), so every process it starts is
inside; the sandbox shows the kernel no ``/sys``, gives it its own cgroup namespace and an
unprivileged uid, so it cannot write the cgroup's files or leave.

Where no cgroup can be made (not root, or no delegated ``cpu`` controller), the kernel runs
without one and :func:`share_problem` says why, once, in the log. The fallback: grades stay the
same on a busy machine anyway (the limits count each kernel's own CPU time,
``vae_grader.kernel.clock``), and ``RLIMIT_CPU`` still bounds what one kernel can burn in all; only
how much one student's code can slow the others' *wall* time is then unbounded.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000
GROUP_NAME = "vae-kernels"
"""The folder, under the grader's own cgroup, that holds one cgroup per kernel."""

_counter = itertools.count()


def _own_cgroups() -> dict[str, str]:
    """The grader's own cgroup per hierarchy: controller list ("" for v2) to path."""
    found: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        found[controllers] = path
    return found


def _v1_cpu_mount() -> Path | None:
    """Where the cgroup v1 hierarchy with the ``cpu`` controller is mounted, if any."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[2] == "cgroup" and "cpu" in fields[3].split(","):
            return Path(fields[1])
    return None


@functools.lru_cache(maxsize=1)
def _parent() -> tuple[Path, int] | str:
    """(the folder kernel cgroups go under, cgroup version), or why there is none."""
    try:
        own = _own_cgroups()
        if (CGROUP_ROOT / "cgroup.controllers").exists():  # the unified hierarchy alone: v2
            base = CGROUP_ROOT / own.get("", "/").lstrip("/")
            if "cpu" not in (base / "cgroup.controllers").read_text().split():
                return f"cgroup v2 has no cpu controller delegated to {base}"
            parent = base / GROUP_NAME
            parent.mkdir(exist_ok=True)
            if "cpu" not in (parent / "cgroup.controllers").read_text().split():
                # v2 lets a cgroup hand a controller down only while it has no processes itself
                # (the root excepted): where the grader's own cgroup does, this write fails.
                (base / "cgroup.subtree_control").write_text("+cpu")
            (parent / "cgroup.subtree_control").write_text("+cpu")
            return parent, 2
        mount = _v1_cpu_mount()
        if mount is None:
            return "no cgroup hierarchy with the cpu controller is mounted"
        key = next((k for k in own if "cpu" in k.split(",")), None)
        parent = mount / (own.get(key, "/") if key else "/").lstrip("/") / GROUP_NAME
        parent.mkdir(exist_ok=True)
        return parent, 1
    except OSError as exc:
        return f"no cgroup could be made for the kernels ({exc.strerror or exc}: {exc.filename})"


THREAD_VARIABLES = ("OMP_NUM_THREADS",)
"""The thread-pool sizes that follow the kernel's share: OpenMP's, which sizes PyTorch's intra-op pool and
NumPy's OpenBLAS (TensorFlow and XLA size their own pools and ignore it)."""


def thread_pools(cores: float, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with OpenMP's pool sized to a kernel allowed ``cores`` CPUs, unless ``env`` sets it.

    OpenMP sizes its pool to the machine's cores and waits for every thread at each parallel region;
    in a quota of one core, a thread descheduled by the quota stalls the others at every step of a
    small convolution (measured with PyTorch: docs/backends.md, "Training throughput per backend").
    A pool the size of the share wastes nothing.
    """
    merged = dict(env)
    if cores > 0:
        for name in THREAD_VARIABLES:
            merged.setdefault(name, str(max(1, math.floor(cores))))
    return merged


def share_problem() -> str | None:
    """Why kernels get no cgroup of their own here, in one line; None where they do."""
    found = _parent()
    return found if isinstance(found, str) else None


@dataclass
class KernelCgroup:
    """One kernel's cgroup, with its CPU quota set; removed with :meth:`remove` after the kernel ends."""

    path: Path
    version: int
    cores: float

    @classmethod
    def create(cls, cores: float) -> KernelCgroup:
        """A new cgroup allowing ``cores`` CPUs' worth of time (raises OSError where none can be made)."""
        found = _parent()
        if isinstance(found, str):
            raise OSError(found)
        parent, version = found
        path = parent / f"kernel-{os.getpid()}-{next(_counter)}"
        path.mkdir()
        quota = max(1000, int(cores * PERIOD_US))
        try:
            if version == 2:
                (path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
            else:
                (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (path / "cpu.cfs_quota_us").write_text(str(quota))
        except OSError:
            path.rmdir()
            raise
        return cls(path, version, cores)

    def command(self, cmd: list[str]) -> list[str]:
        """``cmd``, started inside this cgroup: a shell writes its own pid into ``cgroup.procs``,
        then becomes ``cmd``, so no process of the kernel ever runs outside it."""
        return [
            "/bin/sh",
            "-c",
            'echo $$ > "$0" && exec "$@"',
            str(self.path / "cgroup.procs"),
            *cmd,
        ]

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def throttled(self) -> tuple[int, float]:
        """(periods in which the quota held the kernel back, seconds it was held back)."""
        stat = {}
        try:
            for line in (self.path / "cpu.stat").read_text().splitlines():
                name, _, value = line.partition(" ")
                stat[name] = int(value)
        except (OSError, ValueError):
            return 0, 0.0
        held = stat.get("throttled_usec", stat.get("throttled_time", 0) / 1000) / 1e6
        return stat.get("nr_throttled", 0), held

    def remove(self) -> None:
        """Kill whatever the kernel left in its cgroup, then remove it."""
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.1)
        try:
            self.path.rmdir()
        except OSError:
            pass
