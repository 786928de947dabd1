"""What the grading pipeline takes in: a submission to grade and the points it must score.

:func:`vae_grader.pipeline.grade_class.run_pipeline` grades a list of :class:`Submission` and the grade table
(:mod:`vae_grader.pipeline.report`) compares each one's points with its ``expected``, so this type and the
notebook's layout it speaks of (the graded parts, their test cells, the master's points) belong to
the grader. The submissions themselves (the demo set and the adversarial corpus) are test data:
they live in the course's tests/ folder (package ``vae_samples``, loaded by
:func:`vae_grader.paths.samples`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import nbformat

from course import selfcheck

PARTS = tuple(grade_id.removeprefix("test_") for grade_id in selfcheck.PROBES)
"""The parts in notebook order, named as their test cells are (``test_<part>``, ``test_<part>_hidden``);
the points come from the master's metadata."""


def test_cells(part: str) -> tuple[str, str]:
    """The (visible, hidden) grade cell ids of one part."""
    return f"test_{part}", f"test_{part}_hidden"


def points_by_cell(master: nbformat.NotebookNode) -> dict[str, float]:
    """grade_id -> points of every graded cell, read from the master."""
    return {
        c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"]["points"])
        for c in master.cells
        if c.metadata.get("nbgrader", {}).get("grade")
    }


@dataclass(frozen=True)
class Submission:
    """One sample student: how to build the notebook and what it must score."""

    student: str
    description: str
    build: Callable[[nbformat.NotebookNode, nbformat.NotebookNode], nbformat.NotebookNode | bytes]
    expected: Mapping[str, float]
    """Expected points per graded cell id (cells not listed: 0)."""
    filename: str = "vae.ipynb"
    expected_feedback: tuple[str, ...] = field(default=())
    """Phrases the student's feedback page must contain."""
    lost: Mapping[str, str] = field(default_factory=dict)
    """Why each graded cell missing from ``expected`` scores nothing: grade_id -> one-line reason."""
    partial: Mapping[str, str] = field(default_factory=dict)
    """Why each cell of ``expected`` below its maximum keeps only part of its points: grade_id -> reason."""
