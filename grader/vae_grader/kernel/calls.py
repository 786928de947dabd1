"""Sending a cell to the kernel and waiting for its reply, reporting a dead or stuck kernel instead of raising.

nbclient's own ``async_execute_cell`` raises when the kernel dies and, past a timeout, interrupts
and raises too; ``RobustExecute`` must go on after either, so :class:`KernelCalls` runs a cell the
way nbclient does (its output collected by nbclient's reader) and returns what happened: ``"ok"``,
``"timeout"`` (past its limit; it stopped when interrupted), ``"stuck"`` (it did not), ``"starved"``
(the machine gave it too little CPU to finish within the wall-clock backstop) or ``"dead"``.

A cell's limit is read on :class:`vae_grader.kernel.clock.CellClock`: CPU seconds of the kernel's
process tree, with a wall-clock backstop; the clock of the last cell stays in ``last_clock`` for
the messages.
"""

from __future__ import annotations

import asyncio
import time
from queue import Empty

from jupyter_core.utils import ensure_async
from nbformat.notebooknode import NotebookNode

from vae_grader.kernel.clock import STARVED, CellClock, ProcessTree

TIMEOUT = "timeout"
DEAD = "dead"


class KernelCalls:
    """Mixed into ``RobustExecute`` (an nbclient ``NotebookClient``): uses its ``kc``, ``km``,
    ``cell_limit``, ``backstop_factor``, ``starved_fraction``, ``interrupt_grace`` and
    ``iopub_timeout``, and ``_new_cell_output`` (``vae_grader.kernel.output_limits``)."""

    last_clock: CellClock | None = None

    def cell_clock(self, limit: float | None) -> CellClock:
        """A clock for one cell of ``limit`` CPU seconds, its wall-clock backstop ``backstop_factor``
        times that, reading the kernel's process tree (started now); with ``limit_clock`` "wall" the
        limit itself is wall seconds."""
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        return CellClock(
            tree=(
                ProcessTree(process.pid)
                if process is not None and self.limit_clock == "cpu"
                else None
            ),
            cpu_limit=limit or None,
            wall_limit=limit * self.backstop_factor if limit else None,
            starved_fraction=self.starved_fraction,
        )

    async def _async_execute(
        self, index: int, cell: NotebookNode, *, silent: bool = False, limit: int | None = None
    ) -> tuple[str, dict | None]:
        """Run one cell the way nbclient does, but report a dead or stuck kernel instead of raising."""
        assert self.kc is not None
        cell.outputs = []
        if self.record_timing:
            cell.setdefault("metadata", {})["execution"] = {}
        self.clear_before_next_output = False
        self._new_cell_output()
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
        # nbclient's own output reader (private: it has no public one), so outputs, display_ids
        # and the output hook behave exactly as in nbclient.
        poller = asyncio.ensure_future(self._async_poll_output_msg(msg_id, cell, index))
        clock = self.cell_clock(limit if limit is not None else self.cell_limit(cell))
        self.last_clock = clock
        reply = await self._async_wait_reply(msg_id, None, clock)
        outcome = "ok"
        if reply == TIMEOUT:
            reply = await self._async_interrupt(msg_id)
            if clock.expired() == STARVED:
                outcome = "starved"
            else:
                outcome = "timeout" if isinstance(reply, dict) else "stuck"
        elif reply == DEAD:
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

    async def _async_interrupt(self, msg_id: str):
        """A cell past its limit: interrupt the kernel; the reply if it stops within ``interrupt_grace``."""
        try:
            await ensure_async(self.km.interrupt_kernel())
        except Exception as exc:  # a kernel that cannot even be interrupted is treated as stuck
            self.log.warning("Could not interrupt the kernel: %s", exc)
        return await self._async_wait_reply(msg_id, self.interrupt_grace)

    async def _async_wait_reply(
        self, msg_id: str, timeout: float | None, clock: CellClock | None = None
    ):
        """The shell reply to ``msg_id``, or TIMEOUT (``timeout`` wall seconds passed, or a limit
        of ``clock`` ran out: checked about once a second), or DEAD when the kernel process ended."""
        assert self.kc is not None and self.km is not None
        deadline = None if not timeout else time.monotonic() + timeout
        while True:
            if clock is not None and clock.expired():
                return TIMEOUT
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return TIMEOUT
            try:
                msg = await ensure_async(
                    self.kc.shell_channel.get_msg(
                        timeout=1.0 if remaining is None else min(1.0, remaining)
                    )
                )
            except Empty:
                if not await ensure_async(self.km.is_alive()):
                    return DEAD
                continue
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return msg

    async def _async_quiet_replay(self, cell: NotebookNode):
        """Run ``cell`` again in a new kernel, its outputs kept from the first run; the reply, or TIMEOUT / DEAD."""
        assert self.kc is not None
        msg_id = await ensure_async(
            self.kc.execute(cell.source, store_history=True, stop_on_error=False, allow_stdin=False)
        )
        clock = self.cell_clock(self.cell_limit(cell))
        self.last_clock = clock
        return await self._async_wait_reply(msg_id, None, clock)
