"""Scoring a test cell without running it in the student's kernel.

For each visible or hidden test cell the kernel gets a probe instead (``vae_grader.judge``): it
computes data from the student's code, and the verdict is reached in this process. So the kernel
cannot fake a pass, and a test's source never reaches it. A test cell the judge has no check for is
flagged, never run (``RobustExecute._async_run_cell`` fails closed).
"""

from __future__ import annotations

import time

from nbformat.notebooknode import NotebookNode, from_dict

from vae_grader import judge
from vae_grader.cell_messages import flag_not_run


class JudgedCells:
    """Mixed into ``RobustExecute``: uses its ``_async_execute`` (``vae_grader.kernel_calls``),
    ``cell_limit``, ``_spent`` and nbclient's public ``clear_display_id_mapping``."""

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
                flag_not_run(self.nb, cell, f"the grader could not judge it ({exc})")
                return outcome
            finally:
                self._spent("verdicts", time.monotonic() - verdict_started)
            cell.outputs = judge.verdict_outputs(test, result)
        return outcome
