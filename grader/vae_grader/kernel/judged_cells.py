"""Scoring a test cell without running it in the student's kernel.

For each visible or hidden test cell the kernel gets a probe instead (``vae_grader.judge.rulings``): it
computes data from the student's code, and the verdict is reached outside the kernel, in the
confined verdict process (``vae_grader.judge.confined``). So the kernel cannot fake a pass, and a
test's source never reaches it. A test cell the judge has no check for is flagged, never run
(``RobustExecute`` fails closed), and a cell scores no more than its verdict gave
(``vae_grader.preprocessors.require_verdicts``).
"""

from __future__ import annotations

import asyncio
import time

from nbformat.notebooknode import NotebookNode, from_dict

from vae_grader.judge import rulings as judge
from vae_grader.judge.confined import ConfinedJudge
from vae_grader.kernel.output_limits import OutputCap
from vae_grader.kernel.session import KernelSession
from vae_grader.notes import add_note


async def judge_cell(
    session: KernelSession,
    verdicts: ConfinedJudge,
    cap: OutputCap,
    resources: dict,
    index: int,
    cell: NotebookNode,
    test: judge.Judged,
) -> str:
    """Score a test cell without running its source: probe the kernel for data, judge it in ``verdicts``."""
    client = session.client
    salt = judge.new_salt()
    probe = from_dict(
        {
            "cell_type": "code",
            "source": judge.probe_code(test, salt),
            "metadata": {},
            "outputs": [],
        }
    )
    cap.probing = True
    try:
        outcome, _ = await session.execute(index, probe, silent=True, limit=client.cell_limit(cell))
    finally:
        cap.probing = False
        # A display_id the probe's outputs registered must not let a later cell rewrite this cell's
        # outputs (nbclient updates every output that shares a display_id): that would set the score.
        client.clear_display_id_mapping(index)
    cell.outputs = []
    cell.execution_count = client.code_cells_executed
    if outcome == "ok":
        blob, problem = judge.answer_bytes(probe.outputs)
        verdict_started = time.monotonic()
        try:
            ruling = (
                await asyncio.to_thread(verdicts.judge, test, blob, salt)
                if blob is not None
                else judge.Ruling(judge.failed(test, problem or "no answer"))
            )
        finally:
            session.state.spend("verdicts", time.monotonic() - verdict_started)
        record_verdict(client.nb, resources, cell, test, ruling)
        if ruling.flag:
            client.log.error("Could not judge %s: %s", test.grade_id, ruling.flag)
    return outcome


VERDICTS = "vae_verdicts"
"""Key in nbconvert's ``resources`` of the points each judged cell's verdict gave (``RequireVerdicts``)."""


def record_verdict(
    nb: NotebookNode, resources: dict, cell: NotebookNode, test: judge.Judged, ruling: judge.Ruling
) -> None:
    """Write ``ruling`` into ``cell`` the way nbgrader reads grades, remember its points where the
    kernel cannot reach them, and flag the cell when the grader could not judge it."""
    cell.outputs = judge.verdict_outputs(test, ruling.outcome)
    resources.setdefault(VERDICTS, {})[test.grade_id] = ruling.outcome.points
    if ruling.flag:
        add_note(
            nb,
            f"The test {test.grade_id} could not be judged ({ruling.flag}); it is flagged for your "
            "instructor.",
            cell=test.grade_id,
            flag=ruling.flag,
        )
