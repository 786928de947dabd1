"""Feedback pages that tell students what failed without giving the hidden tests away.

``nbgrader generate_feedback`` renders the *autograded* notebooks, and those hold the hidden
tests (autograde restores every grade cell from the master). Out of the box the page therefore
shows the hidden tests' source, and every failing test quotes its own lines again in the
traceback (upstream nbgrader issues #917 and #1363). Adding nbgrader's ``ClearHiddenTests`` is not
enough: we measured that it removes the source but the tracebacks still print the surrounding
hidden lines.

:class:`StudentFeedback` (configured for ``GenerateFeedback`` in ``nbgrader_config.py``) does both
jobs in one pass over each notebook:

1. it removes the hidden-test regions from the cell sources (``ClearHiddenTests``' own logic);
2. it replaces every error's traceback with one line, the exception type and the message the
   test wrote for the student (the ``course.checks`` helpers word every failure that way), and
   rewrites the two errors students meet most, ``NotImplementedError`` and ``NameError``, in
   plain words;
3. it removes every line of printed output that quotes a hidden-test line (a warning quotes the
   source line that triggered it) but keeps the rest: nbgrader scores a test cell 0 when it writes
   to standard error, so the warning is the student's only clue. As a last guard, any other output
   that still contains a hidden-test line is replaced by a note.

The test suite greps every generated page for every hidden-test line (tests/test_pipeline.py).
"""

from __future__ import annotations

import re

from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode, from_dict
from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CELL_LINE = re.compile(r"Cell In\[(\d+)\], line (\d+)")
_NAME_ERROR = re.compile(r"name '([^']+)' is not defined")

NOT_ATTEMPTED = "not attempted: this part still raises NotImplementedError (replace `raise NotImplementedError()` with your code)"
REDACTED = "(output removed from the feedback: it quoted the hidden tests)"
REDACTED_LINE = "(a line quoting the hidden tests was removed)"
MIN_HIDDEN_LINE = 8
"""Hidden lines shorter than this (``)``, ``])``) are too generic to count as a leak."""


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def hidden_lines(source: str, begin: str = "BEGIN HIDDEN TESTS", end: str = "END HIDDEN TESTS") -> list[str]:
    """The stripped, non-trivial lines inside the hidden-test regions of ``source``.

    Marker lines, blank lines, comment-only lines and lines shorter than ``MIN_HIDDEN_LINE`` are
    left out: they carry nothing a student could use.
    """
    lines, inside = [], False
    for line in source.splitlines():
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside:
            text = line.strip()
            if len(text) >= MIN_HIDDEN_LINE and not text.startswith("#"):
                lines.append(text)
    return lines


def student_message(ename: str, evalue: str) -> str:
    """One line a student can act on, from an exception's type and message."""
    evalue = strip_ansi(evalue).strip()
    if ename == "NotImplementedError":
        return NOT_ATTEMPTED
    if ename == "NameError":
        match = _NAME_ERROR.search(evalue)
        name = f"`{match.group(1)}`" if match else "a name"
        return (f"NameError: {evalue} ({name} was never defined: a cell above failed or was not run; "
                "fix the first error above this cell first)")
    if ename in ("KeyboardInterrupt", "CellTimeoutError"):
        # The executor words its own timeout message (grader/vae_grader/robust_execute.py); keep it.
        return f"stopped: {evalue}" if evalue else "stopped: the cell ran longer than the grader's time limit for one cell"
    if ename == "AssertionError":
        return f"Test failed: {evalue}" if evalue else "Test failed (the test gave no message)"
    return f"{ename}: {evalue}" if evalue else ename


class StudentFeedback(ClearHiddenTests):
    """Remove hidden tests and reduce errors to their student-facing message (see module doc)."""

    def preprocess(self, nb: NotebookNode, resources: ResourcesDict) -> tuple[NotebookNode, ResourcesDict]:
        visible = "\n".join(cell.source for cell in nb.cells if self.begin_test_delimeter not in cell.source)
        visible_lines = {line.strip() for line in visible.splitlines()}
        # Lines the student also sees elsewhere (a hidden test repeating a visible check) are no secret.
        self._secrets = [
            line
            for cell in nb.cells
            for line in hidden_lines(cell.source, self.begin_test_delimeter, self.end_test_delimeter)
            if line not in visible_lines
        ]
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict, cell_index: int) -> tuple[NotebookNode, ResourcesDict]:
        had_hidden = self.begin_test_delimeter in cell.source
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if cell.cell_type != "code":
            return cell, resources
        outputs = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                output.text = self._scrub_lines(output.get("text", ""))
            if output.get("output_type") == "error":
                output = self._shorten_error(output, show_line=not had_hidden and not utils.is_grade(cell))
            if self._leaks(output):
                output = from_dict({"output_type": "stream", "name": "stdout", "text": REDACTED + "\n"})
            outputs.append(output)
        cell.outputs = outputs
        return cell, resources

    @staticmethod
    def _shorten_error(output: NotebookNode, show_line: bool) -> NotebookNode:
        message = student_message(output.get("ename", "Error"), output.get("evalue", ""))
        if show_line:
            # In the student's own cells the line number helps, and the cell holds nothing hidden.
            # The first frame is this cell; the last frame of the same cell is where it went wrong.
            frames = _CELL_LINE.findall(strip_ansi("\n".join(output.get("traceback", []))))
            if frames:
                line = [number for cell, number in frames if cell == frames[0][0]][-1]
                message += f" (raised at line {line} of this cell)"
        output.traceback = [message]
        return output

    def _scrub_lines(self, text: str | list[str]) -> str:
        text = "".join(text) if isinstance(text, list) else text
        lines = text.splitlines(keepends=True)
        return "".join(
            REDACTED_LINE + ("\n" if line.endswith("\n") else "") if any(s in strip_ansi(line) for s in self._secrets) else line
            for line in lines
        )

    def _leaks(self, output: NotebookNode) -> bool:
        texts = [output.get("text", ""), output.get("evalue", ""), *output.get("traceback", [])]
        for value in output.get("data", {}).values():
            texts.append(value if isinstance(value, str) else "\n".join(value) if isinstance(value, list) else "")
        text = strip_ansi("\n".join(t if isinstance(t, str) else "".join(t) for t in texts))
        return any(secret in text for secret in self._secrets)
