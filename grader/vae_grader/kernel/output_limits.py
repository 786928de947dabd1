"""Capping a cell's output, so that a print loop cannot exhaust the grader's memory.

A cell's output past ``max_output_bytes`` (a notebook's past ``max_notebook_output_bytes``, both
``RobustExecute``'s traits, configured by its name) is dropped with a note. :class:`OutputCap` decides;
``RobustExecute`` asks it in nbclient's public ``NotebookClient.output`` hook, the one every output
message passes.
"""

from __future__ import annotations

import json

from nbformat.notebooknode import NotebookNode, from_dict

from course import probing
from vae_grader.judge.rulings import MAX_PROBE_BYTES
from vae_grader.kernel.session import RunState
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


class OutputCap:
    """What of a cell's output the grader keeps; ``RobustExecute.output`` (nbclient's public output hook)
    asks :meth:`admit` before it records an output message."""

    def __init__(
        self,
        nb: NotebookNode,
        state: RunState,
        max_output_bytes: int,
        max_notebook_output_bytes: int,
    ) -> None:
        self.nb = nb
        self.state = state
        self.max_output_bytes = max_output_bytes
        self.max_notebook_output_bytes = max_notebook_output_bytes
        self.probing = False
        """While a probe runs, only its answer and errors are kept (:meth:`_admit_probe`)."""
        self.new_cell()

    def new_cell(self) -> None:
        """A cell starts: its own output count begins at zero (the notebook's goes on)."""
        self.cell_bytes = 0
        self.truncated = False

    def admit(self, outs: list, msg: dict) -> bool:
        """Whether ``msg``'s output is kept; the first one dropped leaves a notice in ``outs`` and a note."""
        if self.probing:
            return self._admit_probe(msg)
        content = msg.get("content", {})
        size = len(json.dumps(content.get("data", content.get("text", "")), default=str))
        total = self.state.notebook_bytes
        if (
            self.cell_bytes + size > self.max_output_bytes
            or total + size > self.max_notebook_output_bytes
        ):
            if not self.truncated:
                self.truncated = True
                limit = (
                    self.max_output_bytes
                    if self.cell_bytes + size > self.max_output_bytes
                    else self.max_notebook_output_bytes
                )
                # First, so that nbgrader's LimitOutput (which keeps the first lines) keeps it too.
                outs.insert(0, truncation_notice(limit))
                add_note(
                    self.nb,
                    f"A cell printed more than {limit // 2**20} MB of output; the rest was dropped "
                    "(output truncated by the grader).",
                )
            return False
        self.cell_bytes += size
        self.state.notebook_bytes = total + size
        return True

    def _admit_probe(self, msg: dict) -> bool:
        """A probe's outputs are read only for its answer (``judge.answer_bytes``): answers and errors are
        kept up to the answer's own cap; whatever else the kernel prints meanwhile is dropped, so a flood
        of output during a probe cannot fill the grader's memory."""
        content = msg.get("content", {})
        kind = msg.get("msg_type") or msg.get("header", {}).get("msg_type")
        answer = kind in ("display_data", "execute_result") and probing.MIME in content.get(
            "data", {}
        )
        if not (answer or kind == "error"):
            return False
        size = len(json.dumps(content, default=str))
        if self.cell_bytes + size > MAX_PROBE_OUTPUT_BYTES:
            return False
        self.cell_bytes += size
        return True
