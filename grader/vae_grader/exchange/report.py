"""What collect did with each inbound entry, as one line each: in the log and in a file.

A refusal the instructor never sees protects nobody from a false accusation nor from a missed
attempt, so every decision is logged (warning for refusals) and appended to
``reports/collect-<assignment>.txt`` in the course folder, which only the instructor can read, under
a header naming the run; collect ends with one summary line pointing there. Entry names are
written by students: control characters (a newline would forge a line of the report) are shown
escaped.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path


def printable(text: str) -> str:
    """``text`` with control and undecodable characters escaped, so it stays on one line."""
    out = []
    for ch in text:
        if ch.isprintable() and not (0xDC80 <= ord(ch) <= 0xDCFF):
            out.append(ch)
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


@dataclass
class CollectReport:
    """Decisions of one ``collect`` run, written as they are made."""

    path: Path
    log: logging.Logger
    assignment: str
    collected: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, course_root: str, assignment: str, log: logging.Logger) -> CollectReport:
        folder = Path(course_root) / "reports"
        folder.mkdir(mode=0o700, exist_ok=True)
        report = cls(
            folder / f"collect-{printable(assignment).replace('/', '_')}.txt", log, assignment
        )
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        report._append(f"== collect {printable(assignment)} at {now} (uid {os.geteuid()})")
        return report

    def _append(self, line: str) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def refuse(self, entry: str, reason: str) -> None:
        line = f"REFUSED {printable(entry)}: {reason}"
        self.refused.append(line)
        self.log.warning(line)
        self._append(line)

    def collect(self, student: str, entry: str, detail: str = "") -> None:
        line = f"COLLECTED {student} from {printable(entry)}" + (f" ({detail})" if detail else "")
        self.collected.append(line)
        self.log.info(line)
        self._append(line)

    def note(self, line: str) -> None:
        self.notes.append(line)
        self.log.info(line)
        self._append(line)

    def finish(self) -> str:
        summary = (
            f"collect {printable(self.assignment)}: {len(self.collected)} collected, "
            f"{len(self.refused)} refused; reasons in {self.path}"
        )
        self._append(summary)
        (self.log.warning if self.refused else self.log.info)(summary)
        return summary
