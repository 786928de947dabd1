"""Executing a student notebook so that one bad cell costs only what depends on it.

nbgrader's ``Execute`` (an nbclient ``NotebookClient``) gives up on the whole submission when the
kernel dies: measured with nbgrader 0.9.6, ``os._exit`` in one cell removes the student's
autograded notebook and makes ``autograde`` exit 1, and a cell stuck in a loop that ignores the
interrupt times out every following cell. :class:`RobustExecute` replaces it in
``Autograde.autograde_preprocessors`` and runs the cells itself:

* **Kernel death** (``os._exit``, ``exit()``, a fatal signal, the CPU limit): the cell gets an
  error that says so, a new kernel starts, the cells that had completed are run again (their
  outputs kept from the first run) so the state is back, and grading goes on after the crashing
  cell. Later parts that do not need that cell still earn their points.
* **Timeout**: a cell may run ``timeout`` seconds (``Execute.timeout``), a cell that trains a
  model (the training answer cell, or a student cell whose parsed code calls ``.fit(``) ``training_timeout``
  seconds; the short limit keeps an endless loop elsewhere from costing minutes per submission.
  Past its limit the kernel is interrupted; if the cell does not stop within ``interrupt_grace``
  seconds, the kernel is replaced as above. The cell gets a "ran longer than N s" error.
* **Test cells are never run in the student's kernel.** For each visible or hidden test cell the
  kernel gets a probe instead (``vae_grader.judge``): it computes data from the student's code, and
  the verdict is reached in this process. So the kernel cannot fake a pass, and a test's source
  never reaches it. Tampering with the kernel only changes what the student's own code computes.
* **Time by budget**: a submission has ``submission_seconds`` in all; new kernels and replays
  count against it, and the cells it could not reach are flagged with the reason.
* **Stray processes** (a fork bomb's children, a background server): the kernel is replaced as
  above, which ends every process in its sandbox, and the cell that started them is not counted.
* **Output size**: a cell's output past ``max_output_bytes`` (a notebook's past
  ``max_notebook_output_bytes``) is dropped with a note, so a print loop cannot exhaust the
  grader's memory.
* Notes for the student (``vae_grader.notes``: from intake, the sanitize step in ``vae_grader.restructure`` and from here) go
  into a Markdown cell at the top of the autograded notebook, which the feedback page shows.
  Where a graded cell could not be run at all (the kernel kept dying), it is flagged for manual
  grading with the reason (``vae_grader.flags.FlagForReview``), never silently zeroed.

The kernel itself is the sandboxed one from ``vae_grader.sandbox`` unless ``VAE_SANDBOX=off``.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import json
import threading
import time
from dataclasses import dataclass, field
from queue import Empty

import psutil
from jupyter_core.utils import ensure_async, run_sync
from nbclient.client import NotebookClient
from nbformat.notebooknode import NotebookNode, from_dict
from nbgrader import utils
from nbgrader.preprocessors import Execute
from traitlets import Integer, List, Unicode

from vae_grader import judge
from vae_grader.cells import grade_id
from vae_grader.environment import grading_kernel_environment
from vae_grader.notes import add_note, render_notes
from vae_grader.sandbox import (
    SANDBOX_ENV,
    SandboxedKernelManager,
    kernel_manager_class,
    sandbox_disabled,
)

_TIMEOUT = "timeout"
_DEAD = "dead"


def stray_processes(km) -> int:
    """Processes the student's code left running beside the kernel (a fork bomb's children, say)."""
    process = getattr(getattr(km, "provisioner", None), "process", None)
    if process is None or process.poll() is not None:
        return 0
    try:
        found = [
            p
            for p in psutil.Process(process.pid).children(recursive=True)
            if p.status() != psutil.STATUS_ZOMBIE
        ]
    except psutil.Error:
        return 0
    expected = (
        2 if isinstance(km, SandboxedKernelManager) else 0
    )  # bwrap's init and the kernel itself
    return max(0, len(found) - expected)


def calls_fit(source: str) -> bool:
    """Whether the code really calls ``something.fit(...)`` (a comment or a string that says so does not count)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "fit"
        for node in ast.walk(tree)
    )


@dataclass
class _RunState:
    timeline: list[int] = field(default_factory=list)
    """Cells that completed normally, in order: replayed after a new kernel starts."""
    restarts: int = 0
    given_up: str | None = None
    started: float = field(default_factory=time.monotonic)
    notebook_bytes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    """Where the time went: kernel start, cells, checks, restarts (logged at the end)."""
    slowest: list[tuple[float, int]] = field(default_factory=list)
    attempted: set[int] = field(default_factory=set)
    """Cells sent to a kernel (whatever happened): the others were never run."""


class RobustExecute(Execute):
    """nbgrader's ``Execute`` that survives crashes, timeouts and tampering (see the module docstring)."""

    max_restarts = Integer(
        6,
        help="New kernels one notebook may need before the remaining cells are flagged instead of run.",
    ).tag(config=True)
    interrupt_grace = Integer(
        10,
        help="Seconds a timed-out cell gets to stop after the interrupt before its kernel is replaced.",
    ).tag(config=True)
    training_timeout = Integer(
        180,
        help="Seconds a training cell may run (every other cell gets Execute.timeout); at 60 s correct "
        "submissions lost points (measured times: README, 'What the limits rest on').",
    ).tag(config=True)
    training_cells = List(
        Unicode(),
        ["training"],
        help="grade_ids of the cells that train; any other cell whose code calls .fit( counts too.",
    ).tag(config=True)
    max_output_bytes = Integer(
        2 * 2**20,
        help="Output kept per cell, in bytes (the master's largest: README, 'What the limits rest on').",
    ).tag(config=True)
    max_notebook_output_bytes = Integer(
        16 * 2**20,
        help="Output kept per notebook, in bytes.",
    ).tag(config=True)
    alive_timeout = Integer(
        30,
        help="Seconds the kernel gets to answer a kernel_info request after a cell before it counts as stuck.",
    ).tag(config=True)
    submission_seconds = Integer(
        900,
        help="Wall-clock seconds one submission may use in all (cells, test probes, new kernels and replays); "
        "past it the remaining cells are flagged, not run (README, 'What the limits rest on').",
    ).tag(config=True)

    def __init__(self, **kw):
        kw.setdefault("kernel_manager_class", kernel_manager_class())
        super().__init__(**kw)
        if sandbox_disabled():
            self.log.warning(
                "%s=off: student code runs WITHOUT the sandbox, with your rights", SANDBOX_ENV
            )

        self.timeout_func = self.cell_limit  # nbclient's public hook for per-cell time limits

    async def async_start_new_kernel(self, **kwargs) -> None:
        """nbclient's kernel start, with the grading defaults in the kernel's environment (``vae_grader.environment``)."""
        kwargs.setdefault("env", grading_kernel_environment())
        await super().async_start_new_kernel(**kwargs)

    def cell_limit(self, cell: NotebookNode | None) -> int | None:
        """Seconds ``cell`` may run: ``training_timeout`` for a training cell, ``Execute.timeout`` for any other."""
        limit = self.timeout
        if limit and cell is not None and self._trains(cell):
            return max(limit, self.training_timeout)
        return limit

    def _trains(self, cell: NotebookNode) -> bool:
        # The training answer cell, or a student cell whose parsed code calls .fit( (a comment or a
        # string that mentions it does not count). Test cells are judged with the short limit.
        if grade_id(cell) in self.training_cells:
            return True
        is_test_cell = utils.is_grade(cell) and not utils.is_solution(cell)
        return not is_test_cell and calls_fit(cell.get("source", ""))

    def _out_of_time(self) -> str | None:
        spent = time.monotonic() - self._state.started
        if spent > self.submission_seconds:
            return (
                f"the submission used up the grader's time budget of {self.submission_seconds} s "
                "(cells, new kernels and replays together)"
            )
        return None

    # --- the whole notebook -----------------------------------------------------------------------------

    def preprocess(self, nb: NotebookNode, resources=None, km=None):
        # The verdicts need Keras in this process (to load the probed models); importing it takes
        # seconds, so it happens while the kernel starts and runs the student's first cells.
        threading.Thread(target=importlib.import_module, args=("keras",), daemon=True).start()
        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        self._state = _RunState()
        started = time.monotonic()
        run_sync(self._async_preprocess)()
        render_notes(self.nb)
        spent = ", ".join(f"{k} {v:.1f} s" for k, v in self._state.seconds.items())
        slowest = ", ".join(
            f"cell {i} {t:.1f} s" for t, i in sorted(self._state.slowest, reverse=True)[:3]
        )
        self.log.info(
            "Executed %d cells in %.1f s (%s; slowest: %s; %d new kernel(s))",
            self.code_cells_executed,
            time.monotonic() - started,
            spent,
            slowest,
            self._state.restarts,
        )
        return self.nb, self.resources

    async def _async_preprocess(self) -> None:
        self._kernel_started = time.monotonic()
        try:
            async with self.async_setup_kernel():
                await self._async_kernel_ready()
                for index, cell in enumerate(self.nb.cells):
                    if cell.cell_type == "code" and cell.source.strip():
                        await self._async_run_cell(index, cell)
                self.set_widgets_metadata()
        except Exception as exc:  # e.g. no kernel could be started: nothing the student did
            reason = (
                f"the grader could not run the notebook ({type(exc).__name__}: {str(exc)[:200]})"
            )
            self.log.exception("%s", reason)
            for index, cell in enumerate(self.nb.cells):
                if (
                    cell.cell_type == "code"
                    and cell.source.strip()
                    and index not in self._state.attempted
                ):
                    self._not_run(cell, reason)

    async def _async_kernel_ready(self) -> None:
        assert self.kc is not None
        self._spent(
            "kernel start", time.monotonic() - getattr(self, "_kernel_started", time.monotonic())
        )
        info = await self._async_wait_reply(
            await ensure_async(self.kc.kernel_info()), self.startup_timeout
        )
        if isinstance(info, dict) and "language_info" in info["content"]:
            self.nb.metadata["language_info"] = info["content"]["language_info"]

    # --- one cell -----------------------------------------------------------------------------------------

    async def _async_run_cell(self, index: int, cell: NotebookNode) -> None:
        state = self._state
        if state.given_up is None:
            state.given_up = self._out_of_time()
        if state.given_up:
            self._not_run(cell, state.given_up)
            return
        state.attempted.add(index)
        is_test = utils.is_grade(cell) and not utils.is_solution(cell)
        test = judge.judged(grade_id(cell)) if is_test else None
        if (
            is_test and test is None
        ):  # fail closed: a test cell is never run in the student's kernel
            self._not_run(cell, f"the grader has no check for the test cell {grade_id(cell)!r}")
            return
        started = time.monotonic()
        if test is not None:
            outcome = await self._async_judge(index, cell, test)
        else:
            outcome, _ = await self._async_execute(index, cell)
        took = time.monotonic() - started
        self._spent("tests" if test is not None else "cells", took)
        state.slowest.append((took, index))
        restarted = (
            "the grader started a new kernel, re-ran the cells above and went on without this cell"
        )
        if outcome in ("ok", "timeout"):
            strays = stray_processes(self.km)
            if strays:
                if outcome == "timeout":
                    self._drop_interrupt_errors(cell)
                await self._incident(
                    index,
                    cell,
                    "StrayProcesses",
                    f"left {strays} process(es) running (os.fork or "
                    f"subprocess); the grader stopped them: {restarted}",
                    restart=True,
                )
                return
        if outcome == "ok":
            alive = await self._async_wait_reply(
                await ensure_async(self.kc.kernel_info()), self.alive_timeout
            )
            if alive == _DEAD:
                await self._incident(
                    index,
                    cell,
                    "KernelStopped",
                    "ended the kernel (exit(), quit() or os._exit() "
                    f"stop the Python process); {restarted}",
                    restart=True,
                )
                return
            if alive == _TIMEOUT:
                await self._incident(
                    index,
                    cell,
                    "KernelUnresponsive",
                    f"left the kernel unable to answer within {self.alive_timeout} s; {restarted}",
                    restart=True,
                )
                return
            if test is None:
                state.timeline.append(index)
            return
        limit = self.cell_limit(cell)
        if outcome == "timeout":
            self._drop_interrupt_errors(cell)
            await self._incident(
                index,
                cell,
                "CellTimeoutError",
                f"ran longer than the grader's limit of {limit} s "
                "and was stopped; the cells after it still ran",
                restart=False,
            )
        elif outcome == "stuck":
            await self._incident(
                index,
                cell,
                "CellTimeoutError",
                f"ran longer than the grader's limit of {limit} s "
                f"and did not stop when interrupted; {restarted}",
                restart=True,
            )
        else:  # "dead"
            await self._incident(
                index,
                cell,
                "KernelDied",
                f"stopped the kernel ({self._death_reason()}); {restarted}",
                restart=True,
            )

    async def _incident(
        self, index: int, cell: NotebookNode, ename: str, what: str, *, restart: bool
    ) -> None:
        """Tell the student what happened (in the cell and in the notes at the top), then go on."""
        self._error(cell, ename, f"this cell {what}")
        add_note(self.nb, f"{ename}: {self._label(index, cell)} {what}.", cell=grade_id(cell))
        if restart:
            await self._async_recover(f"{ename} in cell {index}")

    async def _async_judge(self, index: int, cell: NotebookNode, test: judge.Judged) -> str:
        """Score a test cell without running its source: probe the kernel for data, judge it here."""
        salt = judge.new_salt()
        probe = from_dict(
            {
                "cell_type": "code",
                "source": judge.probe_code(test, salt),
                "metadata": {},
                "outputs": [],
            }
        )
        self._probing = True
        try:
            outcome, _ = await self._async_execute(
                index, probe, silent=True, limit=self.cell_limit(cell)
            )
        finally:
            self._probing = False
            # A display_id the probe's outputs registered must not let a later cell rewrite this cell's
            # outputs (nbclient updates every output that shares a display_id): that would set the score.
            self.clear_display_id_mapping(index)
        cell.outputs = []
        cell.execution_count = self.code_cells_executed
        if outcome == "ok":
            data, problem = judge.answer(probe.outputs)
            verdict_started = time.monotonic()
            try:
                result = (
                    judge.verdict(test, data, salt)
                    if data is not None
                    else judge.failed(test, problem or "no answer")
                )
            except judge.GraderError as exc:  # the grader's own fault: flagged, never a zero
                self.log.error("Could not judge %s: %s", test.grade_id, exc)
                self._not_run(cell, f"the grader could not judge it ({exc})")
                return outcome
            finally:
                self._spent("verdicts", time.monotonic() - verdict_started)
            cell.outputs = judge.verdict_outputs(test, result)
        return outcome

    async def _async_execute(
        self, index: int, cell: NotebookNode, *, silent: bool = False, limit: int | None = None
    ) -> tuple[str, dict | None]:
        """Run one cell the way nbclient does, but report a dead or stuck kernel instead of raising."""
        assert self.kc is not None
        cell.outputs = []
        if self.record_timing:
            cell.setdefault("metadata", {})["execution"] = {}
        self.clear_before_next_output = False
        self._cell_bytes = 0
        self._truncated = False
        msg_id = await ensure_async(
            self.kc.execute(
                cell.source,
                silent=silent,
                store_history=not silent,
                stop_on_error=False,
                allow_stdin=False,
            )
        )
        self.code_cells_executed += 0 if silent else 1
        poller = asyncio.ensure_future(self._async_poll_output_msg(msg_id, cell, index))
        timeout = limit if limit is not None else self.cell_limit(cell)
        reply = await self._async_wait_reply(msg_id, timeout)
        outcome = "ok"
        if reply == _TIMEOUT:
            try:
                await ensure_async(self.km.interrupt_kernel())
            except Exception as exc:  # a kernel that cannot even be interrupted is treated as stuck
                self.log.warning("Could not interrupt the kernel: %s", exc)
            reply = await self._async_wait_reply(msg_id, self.interrupt_grace)
            outcome = "timeout" if isinstance(reply, dict) else "stuck"
        elif reply == _DEAD:
            outcome = "dead"
        if isinstance(reply, dict):
            try:
                await asyncio.wait_for(poller, timeout=max(self.iopub_timeout, 10))
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self.log.warning(
                    "Output of cell %d still incomplete when its reply arrived; continuing", index
                )
            except Exception as exc:
                self.log.warning("Reading the output of cell %d failed: %s", index, exc)
            if not silent:
                cell.execution_count = self.code_cells_executed
                if outcome == "ok":
                    self.on_cell_executed(cell=cell, cell_index=index, execute_reply=reply)
        else:
            poller.cancel()
            try:
                await poller
            except BaseException:
                pass
        return outcome, reply if isinstance(reply, dict) else None

    async def _async_wait_reply(self, msg_id: str, timeout: float | None):
        """The shell reply to ``msg_id``, or _TIMEOUT, or _DEAD when the kernel process ended."""
        assert self.kc is not None and self.km is not None
        deadline = None if not timeout else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return _TIMEOUT
            try:
                msg = await ensure_async(
                    self.kc.shell_channel.get_msg(
                        timeout=1.0 if remaining is None else min(1.0, remaining)
                    )
                )
            except Empty:
                if not await ensure_async(self.km.is_alive()):
                    return _DEAD
                continue
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return msg

    async def _async_quiet(
        self, code: str, timeout: float | None, user_expressions: dict | None = None
    ):
        """Execute ``code`` without recording anything; the reply, or _TIMEOUT / _DEAD."""
        assert self.kc is not None
        msg_id = await ensure_async(
            self.kc.execute(
                code,
                silent=True,
                store_history=False,
                allow_stdin=False,
                user_expressions=user_expressions or {},
                stop_on_error=False,
            )
        )
        return await self._async_wait_reply(msg_id, timeout)

    def _spent(self, what: str, seconds: float) -> None:
        self._state.seconds[what] = self._state.seconds.get(what, 0.0) + seconds

    # --- a new kernel ------------------------------------------------------------------------------------

    def _death_reason(self) -> str:
        code = None
        provisioner = getattr(self.km, "provisioner", None)
        process = getattr(provisioner, "process", None)
        if process is not None:
            code = process.poll()
        tail = (
            " ".join(self.km.output_tail()[-3:])
            if isinstance(self.km, SandboxedKernelManager)
            else ""
        )
        if "MemoryError" in tail or code == 128 + 9 or code == -9:
            reason = "it was killed: it ran out of memory or killed itself"
        elif code in (128 + 24, -24):
            reason = "it used up the grader's CPU time limit"
        elif code is None:
            reason = "it stopped responding"
        else:
            reason = f"the Python process exited with code {code}"
        return reason

    async def _async_recover(self, why: str) -> None:
        """Replace the kernel and replay the cells that completed, so the state is as before."""
        state = self._state
        if state.restarts >= self.max_restarts:
            state.given_up = f"the kernel had to be restarted {state.restarts} times ({why})"
            return
        state.restarts += 1
        self.log.warning("Starting a new kernel: %s", why)
        try:
            await self._async_cleanup_kernel()
        except Exception as exc:
            self.log.warning("Cleaning up the old kernel failed: %s", exc)
        self.km = self.create_kernel_manager()
        self._kernel_started = time.monotonic()
        await self.async_start_new_kernel()
        await self.async_start_new_kernel_client()
        await self._async_kernel_ready()
        replay_started = time.monotonic()
        try:
            await self._async_replay()
        finally:
            self._spent("replay", time.monotonic() - replay_started)

    async def _async_replay(self) -> None:
        state = self._state
        for index in list(state.timeline):
            cell = self.nb.cells[index]
            reply = await self._async_quiet_replay(cell)
            if not isinstance(reply, dict):
                state.given_up = (
                    f"after a restart the cells above could not be re-run (cell {index} "
                    f"{'timed out' if reply == _TIMEOUT else 'stopped the kernel'} the second time)"
                )
                add_note(
                    self.nb,
                    f"The grader could not restore your notebook's state: {state.given_up}. "
                    "The remaining graded cells were not run and are flagged for your instructor.",
                )
                return

    async def _async_quiet_replay(self, cell: NotebookNode):
        assert self.kc is not None
        msg_id = await ensure_async(
            self.kc.execute(cell.source, store_history=True, stop_on_error=False, allow_stdin=False)
        )
        return await self._async_wait_reply(msg_id, self.cell_limit(cell))

    # --- outputs and messages ------------------------------------------------------------------------------

    def output(self, outs, msg, display_id, cell_index):
        if getattr(
            self, "_probing", False
        ):  # a probe's answer: judge.answer caps and reads it, nothing is kept
            return super().output(outs, msg, display_id, cell_index)
        content = msg.get("content", {})
        size = len(json.dumps(content.get("data", content.get("text", "")), default=str))
        cell_bytes = getattr(self, "_cell_bytes", 0)
        state = getattr(self, "_state", None)
        total = state.notebook_bytes if state is not None else 0
        if (
            cell_bytes + size > self.max_output_bytes
            or total + size > self.max_notebook_output_bytes
        ):
            if not getattr(self, "_truncated", False):
                self._truncated = True
                limit = (
                    self.max_output_bytes
                    if cell_bytes + size > self.max_output_bytes
                    else self.max_notebook_output_bytes
                )
                # First, so that nbgrader's LimitOutput (which keeps the first lines) keeps it too.
                outs.insert(
                    0,
                    from_dict(
                        {
                            "output_type": "stream",
                            "name": "stdout",
                            "text": f"[output truncated by the grader: this cell printed more than "
                            f"{limit // 2**20} MB; the rest was dropped]\n",
                        }
                    ),
                )
                add_note(
                    self.nb,
                    f"A cell printed more than {limit // 2**20} MB of output; the rest was dropped "
                    "(output truncated by the grader).",
                )
            return None
        self._cell_bytes = cell_bytes + size
        if state is not None:
            state.notebook_bytes = total + size
        return super().output(outs, msg, display_id, cell_index)

    def _error(self, cell: NotebookNode, ename: str, evalue: str) -> None:
        cell.setdefault("outputs", []).append(
            from_dict(
                {
                    "output_type": "error",
                    "ename": ename,
                    "evalue": evalue,
                    "traceback": [f"{ename}: {evalue}"],
                }
            )
        )

    def _drop_interrupt_errors(self, cell: NotebookNode) -> None:
        cell.outputs = [
            o
            for o in cell.get("outputs", [])
            if not (o.get("output_type") == "error" and o.get("ename") == "KeyboardInterrupt")
        ]

    def _not_run(self, cell: NotebookNode, reason: str) -> None:
        self._error(
            cell, "NotGraded", f"this cell was not run: {reason}; your instructor will look at it"
        )
        name = grade_id(cell)
        if utils.is_grade(cell) and name:
            add_note(
                self.nb,
                f"The test {name} could not be run ({reason}); it is flagged for your instructor.",
                cell=name,
                flag=reason,
            )

    def _label(self, index: int, cell: NotebookNode) -> str:
        name = grade_id(cell)
        if name:
            return f"the cell {name}"
        first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
        return f"your cell that starts with `{first[:50].replace('`', '')}`"
