"""A new kernel after the old one died, got stuck or left processes behind, with the state restored.

The cells that had completed are run again in the new kernel (their outputs kept from the first
run), so grading goes on after the crashing cell and later parts that do not need it still earn
their points. Replays count against the submission's CPU-time budget; past
``max_restarts`` (``RobustExecute``'s trait), or when a replayed cell fails the second time, the
remaining cells are flagged instead of run.
"""

from __future__ import annotations

import time

from vae_grader.kernel.calls import TIMEOUT
from vae_grader.kernel.clock import STARVED
from vae_grader.notes import add_note


class KernelRecovery:
    """Mixed into ``RobustExecute`` (an nbclient ``NotebookClient``): uses its run state (``_state``),
    ``max_restarts``, ``_async_kernel_ready``, ``_spent``, ``_async_quiet_replay`` and ``last_clock``
    (``vae_grader.kernel.calls``)."""

    async def _async_recover(self, why: str) -> None:
        """Replace the kernel and replay the cells that completed, so the state is as before."""
        state = self._state
        if state.restarts >= self.max_restarts:
            state.given_up = f"the kernel had to be restarted {state.restarts} times ({why})"
            return
        state.restarts += 1
        self.log.warning("Starting a new kernel: %s", why)
        try:
            # nbclient's private cleanup: the public one is only the setup_kernel context's exit,
            # which would end the whole run, not just this kernel.
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
        """Re-run the completed cells in the new kernel; if one fails again, give up on the rest."""
        state = self._state
        for index in list(state.timeline):
            cell = self.nb.cells[index]
            reply = await self._async_quiet_replay(cell)
            clock = self.last_clock
            if clock is not None:
                state.charged += clock.charged
            if not isinstance(reply, dict):
                if clock is not None and clock.verdict == STARVED:
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
                    self.nb,
                    f"The grader could not restore your notebook's state: {state.given_up}. "
                    "The remaining graded cells were not run and are flagged for your instructor.",
                )
                return
