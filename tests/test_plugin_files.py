"""Per-plugin tests on notebooks kept on disk (tests/files/), as nbgrader's tests/preprocessors/files/ do.

A reader can open the inputs: two corpus submissions that rearranged or edited the graded cells, and one
notebook exactly as ``nbgrader autograde`` wrote it for the demo student ``kl_sign_flipped`` (verdicts in its test cells, the
grader's notes in its metadata). The sanitize step (``RepairSubmission``'s :func:`repair`) and the feedback
step (``StudentFeedback`` and the course's page template) are run on them in-process, in milliseconds.
``scripts/refresh_test_files.py`` writes them again after the master changes; the first test says when.
"""

from __future__ import annotations

import copy
import html
import re
from pathlib import Path

import nbformat
import pytest
from nbgrader import utils

from vae_grader.notes import notes_of
from vae_grader.paths import MASTER
from vae_grader.preprocessors.restructure import repair
from vae_grader.submissions import points_by_cell
from vae_samples.kit import canonical, feedback_page, restored_cells

FILES = Path(__file__).parent / "files"
REFRESH = (
    "the master changed: run `.venv/bin/python scripts/refresh_test_files.py` (see its docstring)"
)
SUBMISSIONS = ("reordered_cells", "edited_test_cells")
AUTOGRADED_STUDENT = "kl_sign_flipped"


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(FILES / name, as_version=4)


def _graded(nb: nbformat.NotebookNode) -> list[str]:
    return [
        c.metadata["nbgrader"]["grade_id"]
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("grade")
    ]


@pytest.mark.parametrize("name", SUBMISSIONS)
def test_the_files_are_what_the_sample_kit_builds(name: str) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "refresh", Path(__file__).parents[1] / "scripts" / "refresh_test_files.py"
    )
    assert spec is not None and spec.loader is not None
    refresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refresh)
    assert nbformat.writes(refresh.built(name)) == nbformat.writes(_read(f"{name}.ipynb")), REFRESH


@pytest.mark.parametrize("name", SUBMISSIONS)
def test_repair_puts_back_the_graded_cells_of_a_file(name: str) -> None:
    submitted = _read(f"{name}.ipynb")
    canon = canonical()
    assert _structure(submitted) != _structure_of(canon), (
        "the file's graded cells are not disturbed"
    )
    repaired = repair(copy.deepcopy(submitted), canon)
    restored_cells(repaired, canon)
    notes = " ".join(note["text"] for note in notes_of(repaired))
    assert notes, "the student is told what was put back"


def test_the_autograded_file_is_graded_against_the_current_master() -> None:
    graded = _read("autograded.ipynb")
    master = nbformat.read(MASTER, as_version=4)
    assert _graded(graded) == _graded(master), REFRESH
    points = points_by_cell(master)
    for cell in graded.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            assert float(meta["points"]) == points[meta["grade_id"]], REFRESH


def _structure(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """(grade_id, source) of the locked nbgrader cells, in order."""
    return [
        (c.metadata["nbgrader"]["grade_id"], c.source)
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("locked")
    ]


def _structure_of(canon: list) -> list[tuple[str, str]]:
    return [(c.name, c.source) for c in canon if c.locked]


def _scores(nb: nbformat.NotebookNode) -> dict[str, float]:
    """What nbgrader reads as each graded cell's score (``utils.determine_grade``, as ``SaveAutoGrades`` does)."""
    return {
        c.metadata["nbgrader"]["grade_id"]: float(utils.determine_grade(c)[0] or 0.0)
        for c in nb.cells
        if utils.is_grade(c)
    }


def test_the_autograded_file_scores_what_the_manifest_says() -> None:
    """The file is the autograde of the demo student ``kl_sign_flipped``: nbgrader reads the manifest's points."""
    from vae_samples.demo import SUBMISSIONS

    expected = next(s for s in SUBMISSIONS if s.student == AUTOGRADED_STUDENT).expected
    scores = _scores(_read("autograded.ipynb"))
    assert scores == {cell: float(expected.get(cell, 0.0)) for cell in scores}


def _feedback_page(nb: nbformat.NotebookNode) -> str:
    """The feedback page of an autograded notebook, ``GetGrades`` emulated from the cells themselves: the
    score nbgrader reads from each graded cell, no comments."""
    nb = copy.deepcopy(nb)
    scores = _scores(nb)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            meta["score"] = scores[meta["grade_id"]]
        if meta.get("solution") or meta.get("task"):
            meta["comment"] = None
    return feedback_page(nb, sum(scores.values()))


def test_the_feedback_page_of_an_autograded_file_shows_every_verdict_and_no_hidden_test() -> None:
    graded = _read("autograded.ipynb")
    page = _feedback_page(graded)
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))
    for cell in graded.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade"):
            continue
        shown = "".join(
            o.get("text", "") if o.get("output_type") == "stream" else o.get("evalue", "")
            for o in cell.get("outputs", [])
        )
        first = next((line for line in shown.splitlines() if line.strip()), "")
        assert first, f"{meta['grade_id']}: the autograded cell holds no verdict"
        words = re.sub(r"\s+", " ", first).strip()[:60]
        assert words in text, (meta["grade_id"], words)
    assert "BEGIN HIDDEN TESTS" not in page and "check_here" not in page
