"""Time limits that a busy machine cannot change: CPU time of the kernel's tree, a wall-clock backstop,
start-up never charged to a cell, and each kernel's CPU share enforced where it cannot undo it.

The decision (which limit a cell ran past) is checked alone, in-process; the rest on a real
sandboxed kernel run by ``RobustExecute`` on a notebook of a few cells, with limits of seconds. A
starved kernel is made on purpose: a cgroup quota of 3 % of one core (the scheduler's own
throttling, counted as run-queue wait) where the host allows a cgroup; otherwise the test checks
that the fallback is stated.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from vae_grader.sandbox.cpu_share import KernelCgroup, share_problem, thread_pools
from vae_grader.kernel.clock import CPU, SLEPT, STARVED, CellClock, ProcessTree, why_stopped
from vae_grader.notes import flags_of

LIMITS = dict(cpu_limit=60.0, wall_limit=600.0, starved_fraction=0.25)


@pytest.mark.parametrize(
    ("cpu", "waited", "wall", "expected"),
    [
        (61.0, 0.0, 70.0, CPU),  # computed past its limit
        (61.0, 500.0, 601.0, CPU),  # the CPU limit counts first, however busy the machine
        (59.0, 5000.0, 599.0, None),  # starved, but the backstop has not passed
        (0.1, 2.0, 601.0, SLEPT),  # past the backstop, no CPU wanted: slept or blocked
        (20.0, 400.0, 601.0, STARVED),  # past the backstop, waiting for a CPU most of the time
        (20.0, 149.0, 601.0, SLEPT),  # waited under a quarter of the time
        (20.0, None, 601.0, STARVED),  # no schedstat: the machine gets the benefit of the doubt
    ],
)
def test_which_limit_a_cell_ran_past(cpu, waited, wall, expected) -> None:
    assert why_stopped(cpu=cpu, waited=waited, wall=wall, **LIMITS) == expected


@pytest.mark.parametrize(
    ("cpu", "idle", "expected"),
    [
        (1.0, 61.0, SLEPT),  # idle longer than the CPU limit: slept or blocked, stopped at once
        (1.0, 59.0, None),  # idle, but not yet as long as the limit
        (61.0, 61.0, CPU),  # the CPU limit still counts first
    ],
)
def test_an_idle_cell_is_stopped_after_its_limit(cpu, idle, expected) -> None:
    assert why_stopped(cpu=cpu, waited=0.0, wall=100.0, idle=idle, **LIMITS) == expected


class _Tree:
    """A stand-in process tree: CPU and wait readings set by the test, runnable or not."""

    def __init__(self) -> None:
        self.cpu, self.waited, self.runnable = 0.0, 0.0, False

    def cpu_seconds(self) -> float:
        return self.cpu

    def waited_seconds(self) -> float:
        return self.waited

    def busy_now(self) -> bool:
        return self.runnable


def _clock_after(readings: list[tuple[float, float, float, bool]]) -> CellClock:
    """A clock fed (wall, cpu, waited, runnable) readings, as ``read()`` sees them once a second."""
    tree = _Tree()
    clock = CellClock(tree=tree, cpu_limit=60.0, wall_limit=600.0, starved_fraction=0.25)
    for wall, cpu, waited, runnable in readings:
        tree.cpu, tree.waited, tree.runnable = cpu, waited, runnable
        clock.started = time.monotonic() - wall
        if clock.expired():
            break
    return clock


def test_a_starved_kernel_is_never_idle() -> None:
    """Waiting for a CPU (or runnable but not yet counted in schedstat) is not idling: at 1 % CPU
    for 500 s the clock says nothing; the backstop decides at 600 s (starved)."""
    waiting = _clock_after([(t, 0.01 * t, 0.9 * t, False) for t in range(1, 501)])
    assert waiting.verdict is None and waiting.idle < 2
    runnable = _clock_after([(t, 0.0, 0.0, True) for t in range(1, 501)])
    assert runnable.verdict is None and runnable.idle < 2
    assert _clock_after([(t, 0.01 * t, 0.9 * t, False) for t in range(1, 602)]).verdict == STARVED


def test_a_sleeping_kernel_is_stopped_after_its_limit_of_idleness() -> None:
    """Three seconds of work, then nothing: stopped 60 s after it last did something."""
    readings = [(t, min(t, 3.0), 0.0, t <= 3) for t in range(1, 70)]
    clock = _clock_after(readings)
    assert clock.verdict == SLEPT
    assert 60 < clock.idle <= 61
    assert clock.wall == pytest.approx(64, abs=1)


def test_the_tree_counts_children_that_ended() -> None:
    """A child that computed and was waited for still counts (through its parent's children times)."""
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<1.0: pass"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess,sys\nsubprocess.run([sys.executable,'-c',{burn!r}])\nimport time\ntime.sleep(30)",
        ]
    )
    try:
        deadline = time.monotonic() + 30
        time.sleep(0.5)
        while psutil.Process(parent.pid).children() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not psutil.Process(parent.pid).children()  # the burner has ended
        assert ProcessTree(parent.pid).cpu_seconds() >= 1.0
    finally:
        parent.kill()
        parent.wait()


@pytest.mark.parametrize(
    "cores, env, expected",
    [
        (1.0, {}, "1"),
        (2.5, {}, "2"),
        (0.05, {}, "1"),
        (1.0, {"OMP_NUM_THREADS": "4"}, "4"),  # the instructor's own setting is kept
        (0, {}, None),  # no share: the libraries' own default
    ],
)
def test_openmp_pool_follows_the_kernels_share(cores, env, expected) -> None:
    assert thread_pools(cores, env).get("OMP_NUM_THREADS") == expected


# --- a real kernel ------------------------------------------------------------------------------------


def _notebook(*sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def _grade(tmp_path: Path, nb, **traits):
    from vae_grader.preprocessors.execute import RobustExecute

    work = tmp_path / "vae"
    work.mkdir(exist_ok=True)
    traits.setdefault("warm_imports", [])
    executor = RobustExecute(**traits)
    out, _ = executor.preprocess(nb, {"metadata": {"path": str(work)}})
    return out, executor


def _code(nb) -> list:
    """The code cells (the notes go into a Markdown cell at the top)."""
    return [c for c in nb.cells if c.cell_type == "code"]


def _errors(cell) -> str:
    return " ".join(
        f"{o.get('ename')}: {o.get('evalue')}" for o in cell.outputs if o.output_type == "error"
    )


@pytest.mark.sandbox
def test_a_busy_cell_is_stopped_by_cpu_time_and_a_sleeping_one_once_idle_for_its_limit(
    tmp_path,
) -> None:
    """The sleeping cell is stopped after about its limit of idleness, long before the backstop
    (1,000 s here): the whole notebook takes well under that."""
    nb = _notebook(
        "x = 1",
        "while True: pass",
        "import time\ntime.sleep(3600)",
        "print(x + 1)",
    )
    started = time.monotonic()
    out, _ = _grade(tmp_path, nb, timeout=1, backstop_factor=1000)
    cells = _code(out)
    busy, slept, after = _errors(cells[1]), _errors(cells[2]), cells[3]
    assert "ran longer than the grader's limit of 1 s of computing (CPU time)" in busy, busy
    assert "ran longer than the grader's limit of 1 s while idle: it slept or waited" in slept, (
        slept
    )
    assert after.outputs[0]["text"] == "2\n"  # the state survived both
    assert not flags_of(out)  # the student's doing: zeroed with the reason, not flagged
    assert time.monotonic() - started < 120


@pytest.mark.sandbox
def test_a_starved_cell_is_flagged_not_zeroed(tmp_path) -> None:
    """The machine, not the student, kept the cell from its CPU: the submission is flagged.

    Starved on purpose with a cgroup quota of 3 % of one core (the scheduler's throttling counts as
    run-queue wait; measured: SCHED_IDLE beside busy loops does not show in schedstat here). Where
    the host allows no cgroup, the fallback is stated in one line instead."""
    from traitlets.config import Config

    nb = _notebook(
        "import time\nt = time.process_time()\nwhile time.process_time() - t < 2: pass",
        "print('after')",
    )
    if share_problem() is not None:  # this host allows no cgroup: the fallback is stated
        assert "\n" not in share_problem()
        return
    config = Config()
    config.Sandbox.cpu_share = 0.03
    out, executor = _grade(tmp_path, nb, timeout=3, backstop_factor=3, config=config)
    cells = _code(out)
    first = _errors(cells[0])
    assert "the grading machine was too busy" in first, first
    assert executor.session.last_clock.cpu_used < 3
    assert "the grading machine was too busy" in _errors(cells[1])  # not run: flagged
    assert flags_of(out).get("*"), flags_of(out)


@pytest.mark.sandbox
def test_warm_up_imports_are_not_charged_to_the_set_up_cell(tmp_path) -> None:
    """The kernel imports Keras before the first cell; the set-up cell's import then costs it almost nothing."""
    nb = _notebook("import course\nimport keras\nprint(keras.__version__)")
    out, executor = _grade(tmp_path, nb, warm_imports=["course", "keras"], timeout=60)
    assert not _errors(_code(out)[0]), _errors(_code(out)[0])
    ((wall, _, cpu),) = executor.session.state.slowest
    assert cpu < 1.0, f"the set-up cell was charged {cpu:.1f} CPU s"
    assert executor.session.state.seconds["kernel start"] > wall


@pytest.mark.sandbox
def test_a_kernel_cannot_take_more_cpu_than_its_share(tmp_path, monkeypatch) -> None:
    """Onto every core with sched_setaffinity, two processes burning: the cgroup holds it to its share.
    Where the host allows no cgroup, the fallback is stated (one line), and nothing is enforced."""
    from traitlets.config import Config

    problem = share_problem()
    if problem is not None:
        assert problem and "\n" not in problem
        with pytest.raises(OSError):
            KernelCgroup.create(1.0)
        return
    code = (
        "import os, time\n"
        "os.sched_setaffinity(0, range(os.cpu_count()))\n"
        "print('affinity', sorted(os.sched_getaffinity(0)))\n"
        "pid = os.fork()\n"
        "t = time.monotonic()\n"
        "while time.monotonic() - t < 6: pass\n"
        "if pid == 0: os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
    )

    throttled = []
    remove = KernelCgroup.remove

    def counting(self):
        throttled.append(self.throttled())
        remove(self)

    monkeypatch.setattr(KernelCgroup, "remove", counting)
    # A twentieth of a core: small enough that the quota binds even on a machine loaded many
    # times over (at a share of one core a loaded machine may never give the kernel that much).
    config = Config()
    config.Sandbox.cpu_share = 0.05
    out, executor = _grade(tmp_path, _notebook(code), timeout=60, config=config)
    clock = executor.session.last_clock
    assert "affinity [0, 1" in _code(out)[0].outputs[0]["text"] or os.cpu_count() < 2
    rate = clock.cpu_used / clock.wall
    periods = max(p for p, _ in throttled)
    assert periods > 0, "the quota never held the kernel back"
    assert 0 < rate < 0.05 * 1.3, f"{rate:.3f} cores for a kernel allowed 0.05"


@pytest.mark.sandbox
def test_a_kernel_s_thread_pools_follow_its_share(tmp_path, monkeypatch) -> None:
    """A kernel allowed one core gets an OpenMP pool of one (PyTorch included, where it is installed);
    a pool the instructor set is kept."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    code = (
        "import os\n"
        "print(os.environ.get('OMP_NUM_THREADS'))\n"
        "try:\n"
        "    import torch\n"
        "    print(torch.get_num_threads())\n"
        "except ImportError:\n"
        "    print('no-torch')\n"
    )
    for host in (None, "3"):
        if host:
            monkeypatch.setenv("OMP_NUM_THREADS", host)
        out, _ = _grade(tmp_path, _notebook(code), timeout=60)
        cell = _code(out)[0]
        printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        variable, pool = printed.split()
        if host is None:
            assert (variable, pool) in (("1", "1"), ("1", "no-torch")), printed
        else:  # torch caps the pool at the CPUs it may use, so only the variable is compared
            assert variable == host, printed
