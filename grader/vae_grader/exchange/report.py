"""What collect did with each inbound entry, as one line each: in the log and in a file.

A refusal the instructor never sees protects nobody from a false accusation nor from a missed
attempt, so every decision is logged (warning for refusals) and appended to
``reports/collect-<assignment>.txt`` in the course folder, which only the instructor can read, under
a header naming the run; collect ends with one summary line pointing there. Entry names are
written by students: control characters (a newline would forge a line of the report) are shown
escaped. One student must not bury everyone else's lines (each forged folder is one refusal):
after ``lines_per_owner`` lines about one owner's entries, the rest are only counted, and ``finish``
writes one line per owner saying how many were left out.

``release_feedback`` writes the same kind of report (``reports/release_feedback-<assignment>.txt``).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections import Counter
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
    command: str = "collect"
    lines_per_owner: int = 20
    collected: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    by_owner: Counter[str] = field(default_factory=Counter)

    @classmethod
    def start(
        cls, course_root: str, assignment: str, log: logging.Logger, command: str = "collect"
    ) -> CollectReport:
        folder = Path(course_root) / "reports"
        folder.mkdir(mode=0o700, exist_ok=True)
        name = f"{command}-{printable(assignment).replace('/', '_')}.txt"
        report = cls(folder / name, log, assignment, command)
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        report._append(f"== {command} {printable(assignment)} at {now} (uid {os.geteuid()})")
        return report

    def _emit(self, line: str, level: int, owner: str | None) -> None:
        """Log and append ``line``, unless ``owner`` already had ``lines_per_owner`` lines."""
        if owner is not None:
            self.by_owner[owner] += 1
            if self.by_owner[owner] > self.lines_per_owner:
                return
        self.log.log(level, line)
        self._append(line)

    def _append(self, line: str) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def refuse(self, entry: str, reason: str, owner: str | None = None) -> None:
        """``owner``: whose entry it is (its owner's id, else the id it claims), for the cap."""
        line = f"REFUSED {printable(entry)}: {reason}"
        self.refused.append(line)
        self._emit(line, logging.WARNING, owner)

    def collect(self, student: str, entry: str, detail: str = "") -> None:
        self.done(
            f"COLLECTED {student} from {printable(entry)}" + (f" ({detail})" if detail else "")
        )

    def done(self, line: str) -> None:
        """A line counted among what was done (collected, released)."""
        self.collected.append(line)
        self._emit(line, logging.INFO, None)

    def note(self, line: str, owner: str | None = None) -> None:
        self.notes.append(line)
        self._emit(line, logging.INFO, owner)

    def finish(self, done: str = "collected") -> str:
        for owner, count in sorted(self.by_owner.items()):
            if count > self.lines_per_owner:
                line = (
                    f"LEFT OUT {count - self.lines_per_owner} more lines about entries of "
                    f"{printable(owner)} (the first {self.lines_per_owner} are above)"
                )
                self.log.warning(line)
                self._append(line)
        summary = (
            f"{self.command} {printable(self.assignment)}: {len(self.collected)} {done}, "
            f"{len(self.refused)} refused; reasons in {self.path}"
        )
        self._append(summary)
        (self.log.warning if self.refused else self.log.info)(summary)
        return summary
