"""The student notebook: in sync with the master, free of solutions, every TO-DO cell unfilled."""

from __future__ import annotations

import os
import re

import nbformat
import pytest
from nbclient import NotebookClient

from vae_grader.paths import MASTER, RELEASE
from vae_grader.apps.release import clean_notebook, generate_release, is_clean
from vae_grader.cells import Markers, hidden_test_markers, require_cell, solution_markers
from vae_grader.submissions import PARTS

SOLUTION, HIDDEN = solution_markers(), hidden_test_markers()


def _regions(source: str, markers: Markers) -> list[str]:
    """Stripped, non-trivial lines between the markers (what must never reach a student)."""
    stripped = (line.strip() for line in markers.inside(source))
    return [line for line in stripped if len(line) >= 8 and not line.startswith("#")]


@pytest.fixture(scope="module")
def master():
    return nbformat.read(MASTER, as_version=4)


@pytest.fixture(scope="module")
def release():
    return nbformat.read(RELEASE, as_version=4)


@pytest.mark.nbgrader
def test_committed_release_is_what_nbgrader_generates(tmp_path):
    fresh = generate_release(tmp_path / "vae.ipynb")
    regenerated = clean_notebook(nbformat.read(fresh, as_version=4))
    committed = clean_notebook(nbformat.read(RELEASE, as_version=4))
    assert nbformat.writes(regenerated) == nbformat.writes(committed), (
        "release/vae/vae.ipynb is out of date: run `make release` and commit it"
    )


def _public(source: str) -> str:
    """The cell without its solution and hidden-test regions: what the student is meant to see."""
    kept = SOLUTION.outside("\n".join(HIDDEN.outside(source)))
    return "\n".join(line.strip() for line in kept)


def test_release_holds_no_solution_and_no_hidden_test(master, release):
    public = "\n".join(_public(cell.source) for cell in master.cells)
    secret = []
    for cell in master.cells:
        secret += _regions(cell.source, SOLUTION) + _regions(cell.source, HIDDEN)
    # A hidden test may repeat a line of a visible test; only lines found nowhere public are secret.
    secret = [line for line in secret if line not in public]
    # Measured: 55 secret lines (part 6's loading line and preprocess signature out of the solution).
    assert len(secret) > 50, "the master should hold solutions and hidden tests"
    release_text = "\n".join(
        line.strip() for cell in release.cells for line in cell.source.splitlines()
    )
    leaked = [line for line in secret if line in release_text]
    assert leaked == [], f"solution or hidden-test lines in the student notebook: {leaked[:5]}"
    assert "BEGIN HIDDEN TESTS" not in release_text and "BEGIN SOLUTION" not in release_text


def test_each_part_has_one_todo_cell_and_points_add_up(master, release):
    for part in PARTS:
        assert "raise NotImplementedError()" in require_cell(release, part).source, part
    points = {
        c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"]["points"]
        for c in master.cells
        if c.metadata.get("nbgrader", {}).get("grade")
    }
    assert len(points) == 2 * len(PARTS)
    total = sum(points.values())
    intro = master.cells[0].source
    assert f"**{total:g}**" in intro, "the introduction must state the total points"
    for part in PARTS:
        part_total = points[f"test_{part}"] + points[f"test_{part}_hidden"]
        assert re.search(rf"\| {part_total:g} \|\s*$", intro, re.M), (
            f"the introduction must state the points of {part}"
        )


@pytest.mark.nbgrader
def test_every_todo_cell_raises_not_implemented_until_filled(master, release):
    """Run setup, then each TO-DO cell twice: the student stub (must raise NotImplementedError),
    then the master's solution (so the next stub meets the state a real student would have)."""
    cells = [require_cell(master, "setup")]
    for part in PARTS:
        cells += [require_cell(release, part), require_cell(master, part)]
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(c.source) for c in cells], metadata=master.metadata
    )
    env = {
        "VAE_MODE": "grading",
        "VAE_TRAIN_IMAGES": "64",
        "VAE_VAL_IMAGES": "64",
        "MPLBACKEND": "agg",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(
            nb,
            timeout=300,
            allow_errors=True,
            kernel_name="python3",
            resources={"metadata": {"path": str(MASTER.parent)}},
        ).execute()
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    errors = [[o for o in c.outputs if o.output_type == "error"] for c in nb.cells]
    assert errors[0] == [], "the setup cell failed"
    printed = "".join(o.text for o in nb.cells[0].outputs if o.get("name") == "stdout")
    assert len(printed.splitlines()) == 1 and printed.startswith("Keras 3."), (
        f"the setup cell should print one line (Keras, backend, budget), got {printed!r}"
    )
    for index, part in enumerate(PARTS):
        stub_errors, solution_errors = errors[1 + 2 * index], errors[2 + 2 * index]
        assert [e.ename for e in stub_errors] == ["NotImplementedError"], (
            f"the {part} stub should raise NotImplementedError, got {stub_errors}"
        )
        assert solution_errors == [], (
            f"the master's {part} cell failed: {solution_errors[0].evalue if solution_errors else ''}"
        )


@pytest.mark.parametrize("path", [MASTER, RELEASE], ids=["master", "release"])
def test_notebooks_are_committed_clean(path):
    assert is_clean(path) == []


@pytest.mark.parametrize("path", [MASTER, RELEASE], ids=["master", "release"])
def test_notebooks_use_no_tensorflow_api(path):
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert not re.search(r"\btf\.|import tensorflow|from tensorflow", code), (
        "use keras.ops / keras.random, not tf.*"
    )


def test_checked_outputs_are_committed(master):
    checked = [c for c in master.cells if "nbval-check-output" in c.metadata.get("tags", [])]
    assert len(checked) >= 3
    for cell in checked:
        text = "".join(o.get("text", "") for o in cell.outputs)
        assert text.strip(), (
            f"cell {cell.metadata['nbgrader']['grade_id']} is checked by nbval but has no committed output"
        )
