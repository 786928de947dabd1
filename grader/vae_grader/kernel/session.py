"""The grading kernel's session: send a cell and wait, interrupt it, start a new kernel and restore the state.

nbclient's own ``async_execute_cell`` raises when the kernel dies and, past a timeout, interrupts and
raises too; ``RobustExecute`` must go on after either. :class:`KernelSession` runs a cell the way
nbclient does (its output collected by nbclient's reader) and returns what happened: ``"ok"``,
``"timeout"`` (past its limit; it stopped when interrupted), ``"stuck"`` (it did not), ``"starved"`` (the
machine gave it too little CPU to finish within the wall-clock backstop) or ``"dead"``.

A cell's limit is read on :class:`vae_grader.kernel.clock.CellClock`: CPU seconds of the kernel's process
tree, with a wall-clock backstop; the clock of the last cell stays in ``last_clock`` for the messages.

When a kernel died, got stuck or left processes behind, :meth:`KernelSession.recover` starts a new one and
runs the cells that had completed again (their outputs kept from the first run), so grading goes on after
the crashing cell and later parts that do not need it still earn their points. Replays count against the
submission's CPU-time budget (:class:`RunState`); past ``max_restarts``, or when a replayed cell fails the
second time, the remaining cells are flagged instead of run.

Every new kernel imports the client's ``warm_imports`` before its first cell, counted as start-up time,
never a cell's.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from logging import Logger
from queue import Empty
from typing import Any, Protocol

from jupyter_core.utils import ensure_async
from nbformat.notebooknode import NotebookNode

from vae_grader.kernel.clock import STARVED, CellClock, ProcessTree
from vae_grader.notes import add_note

TIMEOUT = "timeout"
DEAD = "dead"


@dataclass
class RunState:
    """One submission's run: what completed, what it cost, and whether grading gave up."""

    timeline: list[int] = field(default_factory=list)
    """Cells that completed normally, in order: replayed after a new kernel starts."""
    restarts: int = 0
    given_up: str | None = None
    started: float = field(default_factory=time.monotonic)
    charged: float = 0.0
    """What the cells (and their replays) cost the budget: CPU seconds of the kernel's tree."""
    notebook_bytes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    """Where the time went: kernel start, cells, checks, restarts (logged at the end)."""
    slowest: list[tuple[float, int, float]] = field(default_factory=list)
    """(wall seconds, cell index, CPU seconds) of each cell."""
    attempted: set[int] = field(default_factory=set)
    """Cells sent to a kernel (whatever happened): the others were never run."""

    def spend(self, what: str, seconds: float) -> None:
        self.seconds[what] = self.seconds.get(what, 0.0) + seconds


class GradingClient(Protocol):
    """What the session uses of the nbclient ``NotebookClient`` it drives (``RobustExecute``): the kernel and
    its client, the notebook, the options (its traits) and nbclient's own steps."""

    kc: Any
    km: Any
    nb: NotebookNode
    log: Logger
    code_cells_executed: int
    clear_before_next_output: bool
    record_timing: bool
    iopub_timeout: int
    startup_timeout: int
    limit_clock: str
    backstop_factor: int
    starved_fraction: float
    interrupt_grace: int
    max_restarts: int
    warm_imports: list[str]
    warm_timeout: int

    def cell_limit(self, cell: NotebookNode | None) -> int | None: ...
    def new_cell_output(self) -> None: ...
    def on_cell_executed(self, **kwargs: Any) -> Any: ...
    def create_kernel_manager(self) -> Any: ...
    async def async_start_new_kernel(self, **kwargs: Any) -> None: ...
    async def async_start_new_kernel_client(self) -> Any: ...
    async def _async_poll_output_msg(self, msg_id: str, cell: NotebookNode, index: int) -> Any: ...
    async def _async_cleanup_kernel(self) -> None: ...


class KernelSession:
    """Drives the kernel of ``client`` for one submission, keeping its run's state in ``state``."""

    def __init__(self, client: GradingClient, state: RunState) -> None:
        self.client = client
        self.state = state
        self.last_clock: CellClock | None = None
        self.kernel_started = time.monotonic()

    # --- one cell ----------------------------------------------------------------------------------------

    def clock(self, limit: float | None) -> CellClock:
        """A clock for one cell of ``limit`` CPU seconds, its wall-clock backstop ``backstop_factor``
        times that, reading the kernel's process tree (started now); with ``limit_clock`` "wall" the
        limit itself is wall seconds."""
        client = self.client
        process = getattr(getattr(client.km, "provisioner", None), "process", None)
        return CellClock(
            tree=(
                ProcessTree(process.pid)
                if process is not None and client.limit_clock == "cpu"
                else None
            ),
            cpu_limit=limit or None,
            wall_limit=limit * client.backstop_factor if limit else None,
            starved_fraction=client.starved_fraction,
        )

    async def execute(
        self, index: int, cell: NotebookNode, *, silent: bool = False, limit: int | None = None
    ) -> tuple[str, dict | None]:
        """Run one cell the way nbclient does, but report a dead or stuck kernel instead of raising."""
        client = self.client
        assert client.kc is not None
        cell.outputs = []
        if client.record_timing:
            cell.setdefault("metadata", {})["execution"] = {}
        client.clear_before_next_output = False
        client.new_cell_output()
        msg_id = await ensure_async(
            client.kc.execute(
                cell.source,
                silent=silent,
                store_history=not silent,
                stop_on_error=False,
                allow_stdin=False,
            )
        )
        client.code_cells_executed += 0 if silent else 1
        # nbclient's own output reader (private: it has no public one), so outputs, display_ids
        # and the output hook behave exactly as in nbclient.
        poller = asyncio.ensure_future(client._async_poll_output_msg(msg_id, cell, index))
        clock = self.clock(limit if limit is not None else client.cell_limit(cell))
        self.last_clock = clock
        reply = await self.wait_reply(msg_id, None, clock)
        outcome = "ok"
        if reply == TIMEOUT:
            reply = await self.interrupt(msg_id)
            if clock.expired() == STARVED:
                outcome = "starved"
            else:
                outcome = "timeout" if isinstance(reply, dict) else "stuck"
        elif reply == DEAD:
            outcome = "dead"
        if isinstance(reply, dict):
            try:
                await asyncio.wait_for(poller, timeout=max(client.iopub_timeout, 10))
            except (asyncio.TimeoutError, asyncio.CancelledError):
                client.log.warning(
                    "Output of cell %d still incomplete when its reply arrived; continuing", index
                )
            except Exception as exc:
                client.log.warning("Reading the output of cell %d failed: %s", index, exc)
            if not silent:
                cell.execution_count = client.code_cells_executed
                if outcome == "ok":
                    client.on_cell_executed(cell=cell, cell_index=index, execute_reply=reply)
        else:
            poller.cancel()
            try:
                await poller
            except BaseException:
                pass
        return outcome, reply if isinstance(reply, dict) else None

    async def interrupt(self, msg_id: str) -> Any:
        """A cell past its limit: interrupt the kernel; the reply if it stops within ``interrupt_grace``."""
        client = self.client
        try:
            await ensure_async(client.km.interrupt_kernel())
        except Exception as exc:  # a kernel that cannot even be interrupted is treated as stuck
            client.log.warning("Could not interrupt the kernel: %s", exc)
        return await self.wait_reply(msg_id, client.interrupt_grace)

    async def wait_reply(
        self, msg_id: str, timeout: float | None, clock: CellClock | None = None
    ) -> Any:
        """The shell reply to ``msg_id``, or TIMEOUT (``timeout`` wall seconds passed, or a limit
        of ``clock`` ran out: checked about once a second), or DEAD when the kernel process ended."""
        client = self.client
        assert client.kc is not None and client.km is not None
        deadline = None if not timeout else time.monotonic() + timeout
        while True:
            if clock is not None and clock.expired():
                return TIMEOUT
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return TIMEOUT
            try:
                msg = await ensure_async(
                    client.kc.shell_channel.get_msg(
                        timeout=1.0 if remaining is None else min(1.0, remaining)
                    )
                )
            except Empty:
                if not await ensure_async(client.km.is_alive()):
                    return DEAD
                continue
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return msg

    async def answers(self, timeout: float) -> Any:
        """The kernel's reply to a kernel_info request within ``timeout`` seconds, or TIMEOUT / DEAD."""
        assert self.client.kc is not None
        return await self.wait_reply(await ensure_async(self.client.kc.kernel_info()), timeout)

    # --- a new kernel ------------------------------------------------------------------------------------

    async def ready(self) -> None:
        """A kernel just started: record its language in the notebook, import ``warm_imports``, and
        count it all as start-up time (never a cell's)."""
        info = await self.answers(self.client.startup_timeout)
        if isinstance(info, dict) and "language_info" in info["content"]:
            self.client.nb.metadata["language_info"] = info["content"]["language_info"]
        await self._warm_up()
        self.state.spend("kernel start", time.monotonic() - self.kernel_started)

    async def _warm_up(self) -> None:
        """Import ``warm_imports`` in the new kernel, silently and binding no name, before any student code."""
        client = self.client
        if not client.warm_imports:
            return
        assert client.kc is not None
        code = (
            "import importlib as _vae_importlib\n"
            f"for _vae_module in {list(client.warm_imports)!r}:\n"
            "    _vae_importlib.import_module(_vae_module)\n"
            "del _vae_importlib, _vae_module\n"
        )
        msg_id = await ensure_async(
            client.kc.execute(
                code, silent=True, store_history=False, allow_stdin=False, stop_on_error=False
            )
        )
        reply = await self.wait_reply(msg_id, client.warm_timeout)
        status = reply.get("content", {}).get("status") if isinstance(reply, dict) else reply
        if status != "ok":  # the set-up cell will then import them itself, and say what failed
            client.log.warning("Warm-up imports of the new kernel: %s", status)
            if reply == TIMEOUT:
                await self.interrupt(msg_id)

    async def recover(self, why: str) -> None:
        """Replace the kernel and replay the cells that completed, so the state is as before."""
        client, state = self.client, self.state
        if state.restarts >= client.max_restarts:
            state.given_up = f"the kernel had to be restarted {state.restarts} times ({why})"
            return
        state.restarts += 1
        client.log.warning("Starting a new kernel: %s", why)
        try:
            # nbclient's private cleanup: the public one is only the setup_kernel context's exit,
            # which would end the whole run, not just this kernel.
            await client._async_cleanup_kernel()
        except Exception as exc:
            client.log.warning("Cleaning up the old kernel failed: %s", exc)
        client.km = client.create_kernel_manager()
        self.kernel_started = time.monotonic()
        await client.async_start_new_kernel()
        await client.async_start_new_kernel_client()
        await self.ready()
        replay_started = time.monotonic()
        try:
            await self._replay()
        finally:
            state.spend("replay", time.monotonic() - replay_started)

    async def _replay(self) -> None:
        """Re-run the completed cells in the new kernel; if one fails again, give up on the rest."""
        client, state = self.client, self.state
        for index in list(state.timeline):
            cell = client.nb.cells[index]
            assert client.kc is not None
            msg_id = await ensure_async(
                client.kc.execute(
                    cell.source, store_history=True, stop_on_error=False, allow_stdin=False
                )
            )
            clock = self.clock(client.cell_limit(cell))
            self.last_clock = clock
            reply = await self.wait_reply(msg_id, None, clock)
            state.charged += clock.charged
            if not isinstance(reply, dict):
                if clock.verdict == STARVED:
                    what = "was starved of CPU by a busy grading machine"
                elif reply == TIMEOUT:
                    what = "timed out"
                else:
                    what = "stopped the kernel"
                state.given_up = (
                    f"after a restart the cells above could not be re-run (cell {index} "
                    f"{what} the second time)"
                )
                add_note(
                    client.nb,
                    f"The grader could not restore your notebook's state: {state.given_up}. "
                    "The remaining graded cells were not run and are flagged for your instructor.",
                )
                return
