"""Old notebook formats are converted and graded; pathological JSON gets a note, not a crash.

In process, on files written to ``tmp_path``, through intake's reader (``load_submission``) and nbgrader's
entry point for it (``TolerantNotebookExporter.from_filename``): a notebook in nbformat 3 (IPython 2's
worksheets; also 2 and 1) is converted with nbformat's own upgrade and keeps every cell, source and
nbgrader id, with a note; a file nested 200,000 levels deep (it made ``nbgrader autograde`` exit 1 with no
feedback page) is refused before ``json.loads`` sees it, and becomes an empty, flagged notebook whose note
reaches the feedback page; metadata nested deeper than any real notebook is left out instead; cells past
the caps (count, source size, metadata size) are left out or emptied with a note.
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from pathlib import Path

import nbformat
import pytest

from vae_grader.preprocessors import intake
from vae_grader.preprocessors.intake import (
    SubmittedNotebook,
    TolerantNotebookExporter,
    load_submission,
)
from vae_grader.notes import flags_of, notes_of
from vae_grader.paths import MASTER
from vae_samples.kit import feedback_page

NOT_READABLE = "the submitted file is not a readable notebook"


@pytest.fixture(scope="module")
def master() -> nbformat.NotebookNode:
    return nbformat.read(MASTER, as_version=4)


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, object]]:
    """What grading reads of each cell: its type, source and nbgrader metadata."""
    return [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in nb.cells]


def _old(nb: nbformat.NotebookNode, version: int) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = copy.deepcopy(nb)
        for step in range(4, version, -1):
            old = nbformat.convert(old, step - 1)
        return json.dumps(old)


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _texts(nb: nbformat.NotebookNode) -> list[str]:
    return [note["text"] for note in notes_of(nb)]


@pytest.mark.parametrize("version", [3, 2])
def test_an_old_format_notebook_is_converted_and_keeps_every_cell(
    tmp_path: Path, master, version: int
) -> None:
    """The master (every part solved) saved in nbformat 3 or 2 reads as the master, with a note, no flag."""
    nb = load_submission(_write(tmp_path / "vae.ipynb", _old(master, version)))
    assert _cells(nb) == _cells(master)
    assert all(cell.get("id") for cell in nb.cells)
    assert _texts(nb) == [
        f"Your notebook was in an old format (v{version}); it was converted to the current one (v4) with "
        "nbformat's own upgrade and graded as converted."
    ]
    assert flags_of(nb) == {}
    nbformat.validate(nb)


def test_an_nbformat_1_notebook_is_converted(tmp_path: Path) -> None:
    text = json.dumps(
        {
            "nbformat": 1,
            "cells": [
                {"cell_type": "code", "code": "x = 1", "prompt_number": 1},
                {"cell_type": "text", "text": "hello"},
            ],
        }
    )
    nb = load_submission(_write(tmp_path / "vae.ipynb", text))
    assert [(c.cell_type, c.source) for c in nb.cells] == [("code", "x = 1"), ("markdown", "hello")]
    assert "old format (v1)" in _texts(nb)[0] and flags_of(nb) == {}


def test_a_broken_old_notebook_is_graded_as_unreadable_with_a_note(tmp_path: Path) -> None:
    text = json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {}})
    nb = load_submission(_write(tmp_path / "vae.ipynb", text))
    assert nb.cells == [] and flags_of(nb) == {"*": [NOT_READABLE]}
    assert "(it is in nbformat 3, and nbformat could not convert it: " in _texts(nb)[0]


def test_a_notebook_nested_200000_levels_deep_is_refused_before_parsing_with_afeedback_page(
    tmp_path: Path, master
) -> None:
    """The red team's file: the master with notebook metadata nested 200,000 levels deep (1.4 MB)."""
    data = json.loads(nbformat.writes(master))
    data["metadata"]["deep"] = "@@DEEP@@"
    deep = '{"a": ' * 200_000 + "0" + "}" * 200_000
    path = _write(tmp_path / "vae.ipynb", json.dumps(data).replace('"@@DEEP@@"', deep, 1))
    start = time.perf_counter()
    # As nbgrader reads it: its own list entry, through the exporter, which must not raise.
    exported, _ = TolerantNotebookExporter().from_filename(SubmittedNotebook(path, path))
    seconds = time.perf_counter() - start
    nb = nbformat.reads(exported, as_version=4)
    assert seconds < 5, seconds
    assert nb.cells == [] and flags_of(nb) == {"*": [NOT_READABLE]}
    (text,) = _texts(nb)
    assert "could not be read as a notebook (it is nested 200,002 levels deep" in text
    page = feedback_page(nb)
    assert "could not be read as a notebook" in page and "200,002 levels deep" in page


def test_the_depth_limit_is_far_above_real_notebooks_and_below_json_recursion(master) -> None:
    from course.untrusted import json_nesting_depth

    assert json_nesting_depth(nbformat.writes(master)) <= 7 < intake.MAX_KEPT_DEPTH
    assert intake.MAX_KEPT_DEPTH < intake.MAX_NOTEBOOK_DEPTH < 1_000


def test_cell_metadata_nested_450_levels_deep_is_left_out_and_the_cells_graded(
    tmp_path: Path, master
) -> None:
    """Jupyter opens this file; only the deep metadata goes (copy.deepcopy and nbformat recurse on it)."""
    data = json.loads(nbformat.writes(master))
    data["cells"].append(
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "deep-metadata",
            "metadata": {"deep": "@@DEEP@@", "tags": ["kept"]},
            "outputs": [],
            "source": "print('deep')",
        }
    )
    deep = '{"a": ' * 450 + "0" + "}" * 450
    text = json.dumps(data).replace('"@@DEEP@@"', deep, 1)
    nb = load_submission(_write(tmp_path / "vae.ipynb", text))
    assert _cells(nb)[:-1] == _cells(master)
    assert nb.cells[-1].source == "print('deep')" and "tags" in nb.cells[-1].metadata
    assert flags_of(nb) == {}
    assert _texts(nb) == [
        f"Your file vae.ipynb: 1 part(s) of it nested more than {intake.MAX_KEPT_DEPTH} levels deep "
        "(metadata, not code) were left out."
    ]
    assert intake.prune_deep(json.loads(json.dumps(nb))) == 0  # nothing deep is left to recurse on


def test_a_flood_of_empty_cells_is_left_out(tmp_path: Path, master) -> None:
    """The master followed by 200,000 empty raw cells (the red team's file had 2,300,000: 48 MB)."""
    data = json.loads(nbformat.writes(master))
    data["cells"] += [{"cell_type": "raw"}] * 200_000
    start = time.perf_counter()
    nb = load_submission(_write(tmp_path / "vae.ipynb", json.dumps(data)))
    assert time.perf_counter() - start < 10
    assert _cells(nb) == _cells(master) and flags_of(nb) == {}
    assert _texts(nb) == [
        f"Your file vae.ipynb: it has {len(master.cells) + 200_000:,} cells, more than the "
        f"{intake.MAX_CELLS:,} graded; its 200,000 empty cells were left out."
    ]


def test_cells_past_the_count_are_left_out(tmp_path: Path) -> None:
    cells = [nbformat.v4.new_code_cell(f"x = {i}") for i in range(intake.MAX_CELLS + 5)]
    nb = load_submission(
        _write(tmp_path / "vae.ipynb", nbformat.writes(nbformat.v4.new_notebook(cells=cells)))
    )
    assert (
        len(nb.cells) == intake.MAX_CELLS and nb.cells[-1].source == f"x = {intake.MAX_CELLS - 1}"
    )
    assert "only its first 1,000 cells were graded (5 more were left out" in _texts(nb)[0]


def test_a_huge_cell_is_graded_as_empty_and_huge_metadata_keeps_only_nbgrader(
    tmp_path: Path,
) -> None:
    grading = {"grade_id": "encoder", "solution": True, "grade": False, "locked": False}
    cells = [
        nbformat.v4.new_code_cell("x" * (intake.MAX_CELL_SOURCE_CHARS + 1)),
        nbformat.v4.new_code_cell(
            "y = 1", metadata={"nbgrader": grading, "blob": "z" * intake.MAX_CELL_METADATA_BYTES}
        ),
    ]
    nb = load_submission(
        _write(tmp_path / "vae.ipynb", nbformat.writes(nbformat.v4.new_notebook(cells=cells)))
    )
    assert [c.source for c in nb.cells] == ["", "y = 1"]
    assert dict(nb.cells[1].metadata) == {"nbgrader": grading}
    texts = _texts(nb)
    assert any("held more than 1,048,576 characters and were graded as empty" in t for t in texts)
    assert any("only its nbgrader entry was kept" in t for t in texts)
