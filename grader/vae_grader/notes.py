"""Notes for the student and flags for the instructor, kept in the notebook's own metadata.

Every stage that changes or judges a submission (intake, restructure, execute, the judge) says
what it did here, under ``metadata.vae_grading``; the executor renders the notes at the top of the
autograded notebook, so they reach the feedback page, and ``FlagForReview`` turns the flags into
nbgrader's "needs manual grading". Notes travel with the notebook, never through a global.
"""

from __future__ import annotations

import re

from nbformat import v4
from nbformat.notebooknode import NotebookNode

METADATA_KEY = "vae_grading"


def add_note(
    nb: NotebookNode, text: str, *, cell: str | None = None, flag: str | None = None
) -> None:
    """Record a note for the student (``flag``: a reason the instructor must look at ``cell``)."""
    state = nb.metadata.setdefault(METADATA_KEY, {})
    notes = state.setdefault("notes", [])
    entry = {"text": text, "cell": cell}
    if entry not in notes:
        notes.append(entry)
    if flag:
        state.setdefault("flags", {}).setdefault(cell or "*", [])
        if flag not in state["flags"][cell or "*"]:
            state["flags"][cell or "*"].append(flag)


def notes_of(nb: NotebookNode) -> list[dict]:
    return list(nb.metadata.get(METADATA_KEY, {}).get("notes", []))


def flags_of(nb: NotebookNode) -> dict[str, list[str]]:
    return dict(nb.metadata.get(METADATA_KEY, {}).get("flags", {}))


def student_text(text: str) -> str:
    """Make a note safe to show in Markdown (no HTML, no runaway length)."""
    text = re.sub(r"[<>]", "", text)
    return text if len(text) <= 600 else text[:597] + "..."


def render_notes(nb: NotebookNode) -> None:
    """Put the notes at the top of the notebook as one Markdown cell, so the feedback page shows them."""
    notes = notes_of(nb)
    if not notes:
        return
    lines = [
        "## Notes from the autograder",
        "",
        "Your notebook was graded with these adjustments (details also appear next to the cells "
        "concerned):",
        "",
    ]
    lines += [f"- {student_text(note['text'])}" for note in notes]
    cell = v4.new_markdown_cell("\n".join(lines))
    cell.metadata[METADATA_KEY] = {"notes": True}
    nb.cells.insert(0, cell)
