"""The notebook on every Keras backend it promises: TensorFlow, JAX and PyTorch (CPU).

Two claims, each per backend (docs/backends.md):

* the master, run in grading mode with its kernel on the backend, passes every graded cell, visible
  and hidden (the hidden cells' verdicts run in that kernel, on that backend);
* the reference submission, graded by the real pipeline with the kernel on JAX or PyTorch
  (``VAE_KERNEL_BACKEND``), scores full marks: the kernel's ``.keras`` files are judged by the
  grader's verdict process on its own backend, TensorFlow.

CI runs all three (``make test`` installs JAX and PyTorch first), so a missing one where ``CI`` is
set fails the test; elsewhere it is skipped with the command that installs it.
"""

from __future__ import annotations

import importlib.util
import os

import nbformat
import pytest
from nbclient import NotebookClient

from vae_grader.sandbox.environment import BACKENDS, KERNEL_BACKEND_VAR
from vae_grader.paths import MASTER, tool_env

pytestmark = [pytest.mark.backends, pytest.mark.slow]

_MODULE = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
CI_BACKENDS = ("tensorflow", "jax", "torch")
"""The backends CI runs: a missing one fails there instead of skipping."""


def require_backend(backend: str) -> None:
    """Skip (with the command that installs it) or, for a backend CI runs, fail in CI when
    ``backend`` is not installed."""
    if importlib.util.find_spec(_MODULE[backend]) is not None:
        return
    message = f"the {backend} backend is not installed here (make backends installs it)"
    if os.environ.get("CI") and backend in CI_BACKENDS:
        pytest.fail(f"CI runs the {backend} backend, but {message}")
    if backend not in CI_BACKENDS:
        message += "; CI does not run it (docs/backends.md, 'What CI runs')"
    pytest.skip(message)


def _setup_line(nb: nbformat.NotebookNode) -> str:
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    return "".join(
        o.get("text", "") for o in first_code.get("outputs", []) if o.get("name") == "stdout"
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_master_passes_every_graded_cell_on(backend):
    require_backend(backend)
    nb = nbformat.read(MASTER, as_version=4)
    NotebookClient(
        nb,
        timeout=900,
        allow_errors=True,
        kernel_name="python3",
        resources={"metadata": {"path": str(MASTER.parent)}},
    ).execute(env=tool_env({"VAE_MODE": "grading", "KERAS_BACKEND": backend, "MPLBACKEND": "agg"}))
    assert f"· {backend} backend ·" in _setup_line(nb), _setup_line(nb)
    graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert len(graded) == 16, "every part has a visible and a hidden test cell"
    failed = {
        c.metadata["nbgrader"][
            "grade_id"
        ]: f"{o.ename}: {o.evalue.splitlines()[0] if o.evalue else ''}"
        for c in graded
        for o in c.outputs
        if o.output_type == "error"
    }
    assert failed == {}, f"graded cells that fail on {backend}: {failed}"


@pytest.mark.sandbox
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "tensorflow"])
def test_a_kernel_on_another_backend_is_graded_in_full_by_the_tensorflow_grader(
    backend, tmp_path, monkeypatch, course_env
):
    require_backend(backend)
    from vae_grader.apps.demo import chosen_submissions
    from vae_grader.pipeline.grade_class import copy_course, run_pipeline

    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")  # the grader's, and so the verdicts'
    monkeypatch.setenv(KERNEL_BACKEND_VAR, backend)
    run = run_pipeline(
        copy_course(tmp_path / "course"), chosen_submissions(["complete"]), progress=None, workers=1
    )
    result = run.results["complete"]
    graded = nbformat.read(
        run.course_root / "autograded" / "complete" / "vae" / "vae.ipynb", as_version=4
    )
    assert f"· {backend} backend ·" in _setup_line(graded), "the kernel did not run on " + backend
    assert result.scores == run.max_points, f"{result.error or ''} {result.scores}"


@pytest.mark.parametrize(
    "backend, ci, outcome",
    [
        ("jax", "true", "fail"),
        ("jax", "", "skip"),
        ("torch", "true", "fail"),
        ("torch", "", "skip"),
    ],
)
def test_a_missing_backend_fails_only_where_ci_runs_it(backend, ci, outcome, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("CI", ci)
    kind = pytest.fail.Exception if outcome == "fail" else pytest.skip.Exception
    with pytest.raises(kind, match=f"the {backend} backend is not installed"):
        require_backend(backend)
