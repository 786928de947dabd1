"""Capping a cell's output, so that a print loop cannot exhaust the grader's memory.

A cell's output past ``max_output_bytes`` (a notebook's past ``max_notebook_output_bytes``, both
``RobustExecute``'s traits, configured by its name) is dropped with a note. :class:`OutputLimits`
overrides nbclient's public ``NotebookClient.output`` hook, the one every output message passes.
"""

from __future__ import annotations

import json

from nbformat.notebooknode import NotebookNode, from_dict

from course import probing
from vae_grader.judge.rulings import MAX_PROBE_BYTES
from vae_grader.notes import add_note

MAX_PROBE_OUTPUT_BYTES = 2 * MAX_PROBE_BYTES
"""Output kept from one probe: room for one answer at its cap (and a second, which makes it unusable)."""


def truncation_notice(limit: int) -> NotebookNode:
    """The stdout line that takes the place of the dropped output."""
    return from_dict(
        {
            "output_type": "stream",
            "name": "stdout",
            "text": f"[output truncated by the grader: this cell printed more than "
            f"{limit // 2**20} MB; the rest was dropped]\n",
        }
    )


class OutputLimits:
    """Mixed into ``RobustExecute`` (an nbclient ``NotebookClient``): its ``output``, capped.

    Reads ``max_output_bytes``, ``max_notebook_output_bytes``, ``nb`` and the run's state
    (``_state.notebook_bytes``) from the executor; ``_new_cell_output`` starts a cell's count.
    """

    def _new_cell_output(self) -> None:
        """A cell starts: its own output count begins at zero (the notebook's goes on)."""
        self._cell_bytes = 0
        self._truncated = False

    def _probe_output(self, outs, msg, display_id, cell_index):
        """A probe's outputs are read only for its answer (``judge.answer_bytes``): answers and errors are
        kept up to the answer's own cap; whatever else the kernel prints meanwhile is dropped, so a flood
        of output during a probe cannot fill the grader's memory."""
        content = msg.get("content", {})
        kind = msg.get("msg_type") or msg.get("header", {}).get("msg_type")
        answer = kind in ("display_data", "execute_result") and probing.MIME in content.get(
            "data", {}
        )
        if not (answer or kind == "error"):
            return None
        size = len(json.dumps(content, default=str))
        if self._cell_bytes + size > MAX_PROBE_OUTPUT_BYTES:
            return None
        self._cell_bytes += size
        return super().output(outs, msg, display_id, cell_index)

    def output(self, outs, msg, display_id, cell_index):
        if getattr(self, "_probing", False):
            return self._probe_output(outs, msg, display_id, cell_index)
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
                outs.insert(0, truncation_notice(limit))
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
