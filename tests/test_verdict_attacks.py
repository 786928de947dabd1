"""The attacks of ``vae_samples.adversarial.VERDICT_ATTACKS``, checked in this process.

The corpus grades each attack end to end with plain nbgrader (tests/test_adversarial.py). These tests
reach the same weaknesses without a kernel, so a fix can be checked in seconds:

* stated facts: the data a forging notebook hands back (``FORGE_LIB``, exec'd here exactly as the
  kernel runs it) must score 0 wherever no solution code stands behind it;
* verdict-raising data: a probe answer of the right keys but odd types must be judged (0), never
  raise past the checks (nbgrader read the judged cell's empty outputs as full marks);
* formats: the intake and the static scan must read or refuse (with a note) what a student can
  submit, never crash ``autograde``;
* untrained part 7: a PCA or a lookup of the grader's own quality images is not a trained VAE.

The model-file bombs (memory, disk, CPU) are not loaded here: unfixed, they take this process down.
They are corpus cases only (``adversarial.RESOURCE_BOMBS``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from course import probing, selfcheck
from vae_grader.judge import hidden
from vae_grader.judge.hidden import inputs as probe_inputs
from vae_samples import adversarial
from vae_samples.kit import load_master_and_release

CASES = {s.student: s for s in adversarial.VERDICT_ATTACKS + adversarial.OPEN_FORGERIES}


def test_verdict_attack_cases_are_in_the_corpus():
    students = [s.student for s in adversarial.SUBMISSIONS]
    assert len(set(students)) == len(students)
    graded = {s.student for s in adversarial.VERDICT_ATTACKS}
    assert graded <= set(students)
    assert not {s.student for s in adversarial.OPEN_FORGERIES} & set(students)
    assert set(adversarial.RESOURCE_BOMBS) <= set(CASES)
    assert set(adversarial.VERDICT_ATTACKS_NO_CODE) <= set(CASES)
    for student in adversarial.VERDICT_ATTACKS_NO_CODE:
        assert sum(CASES[student].expected.values()) == 0, student
    assert set(adversarial.GRADES_BEFORE_CONFINED_JUDGE) == set(CASES), (
        "every case records what 5453c3c gave it"
    )


# --- stated facts: the forgers' data, judged here ---------------------------------------------------------


@pytest.fixture(scope="module")
def forgers() -> dict:
    namespace: dict = {}
    exec(adversarial.FORGE_LIB, namespace)  # defines the forgers; install() is not called
    return namespace


def probe_globals(salt: int) -> dict:
    """What a hidden probe's functions see as globals in the kernel (``judge.probe_code``)."""
    found = dict(vars(probe_inputs))
    found["SALT"] = salt
    return found


def judged(grade_id: str, data: dict, salt: int = 0):
    """The verdict on ``data`` after the trip through pack/unpack, as the grader receives it."""
    data = probing.unpack(probing.pack(data))
    if grade_id in selfcheck.PROBES:
        return selfcheck.judge(selfcheck.PROBES[grade_id], data)
    return hidden.judge(grade_id, data, salt)


_COMPUTED = (
    "residual risk (README, 'What remains possible'; adversarial.OPEN_FORGERIES): the notebook computes the "
    "right values with its own NumPy code on the inputs the probe hands over, instead of the asked-for layer; "
    "the grader never runs student code outside the kernel and cannot tell the two apart"
)
_CONSTANT = (
    "open (adversarial.OPEN_FORGERIES): the probe's inputs are fixed (MNIST's first rows, part 8's probe "
    "decoder and grid), so precomputed answers fit; salting those probes' inputs would close it"
)


def _open(grade_id: str, forger: str, why: str):
    return pytest.param(grade_id, forger, marks=pytest.mark.xfail(strict=True, reason=why))


FORGED = [
    _open("test_sampling", "_sampling", _COMPUTED),
    _open("test_sampling_hidden", "_sampling_hidden", _COMPUTED),
    _open("test_loss_layer", "_loss_layer", _COMPUTED),
    _open("test_loss_layer_hidden", "_loss_layer_hidden", _COMPUTED),
    ("test_vae_model", "_vae_model"),
    ("test_vae_model_hidden", "_vae_model_hidden"),
    ("test_data", "_data"),
    _open("test_data_hidden", "_data_hidden", _CONSTANT),
    _open("test_manifold", "_manifold", _CONSTANT),
    _open("test_manifold_hidden", "_manifold_hidden", _CONSTANT),
    ("test_manifold_hidden", "_batched_only"),
]


@pytest.mark.parametrize("grade_id,forger", FORGED)
def test_made_up_probe_data_earns_nothing(forgers, grade_id, forger):
    """No Sampling layer, no loss layer, no build_vae, no data cell, no build_manifold: 0 points.
    (5453c3c: 2, 4, 2, 4, 1, 2, 1, 2, 2, 3 and 0.5 points.)"""
    salt = 1234
    data = forgers[forger](probe_globals(salt))
    outcome = judged(grade_id, data, salt)
    assert outcome.points == 0, (
        f"{grade_id} gave {outcome.points:g} of {outcome.max_points:g} points for data made up by the "
        f"notebook ({forger}); passed: {outcome.passed}"
    )


# --- verdict-raising data -------------------------------------------------------------------------------

ODD_MISSING = [1, [0, 1], True, [None], {"x": 1}, 2.5, [["build_manifold"]]]


@pytest.mark.parametrize("value", ODD_MISSING, ids=repr)
@pytest.mark.parametrize(
    "grade_id", ["test_training_hidden", "test_manifold_hidden", "test_data", "test_encoder"]
)
def test_odd_missing_names_are_judged_not_raised(grade_id, value):
    """missing.json of another type than a list of names: 0 points, no exception out of the verdict.
    (5453c3c: TypeError out of selfcheck.judge; the judged cell kept no output, which nbgrader scores
    as full marks: 5/5 for part 7's hidden cell, 3/3 for part 8's, and every later cell flagged.)"""
    outcome = judged(grade_id, {"errors.json": {}, "missing.json": value})
    assert outcome.points == 0


ECHOED = [
    ("test_vae_model", {"type": np.asarray(b"x" * 1_000_000)}),
    ("test_manifold", {"type": np.asarray(b"x" * 1_000_000)}),
    ("test_encoder", {"encoder_2.type": np.asarray(b"x" * 1_000_000)}),
    ("test_encoder_hidden", {"encoder.type": np.asarray(b"x" * 1_000_000)}),
    ("test_vae_model", {"errors.json": {"build_vae(encoder, decoder)": "x" * 1_000_000}}),
]


@pytest.mark.parametrize("grade_id,data", ECHOED, ids=[f"{g}-{next(iter(d))}" for g, d in ECHOED])
def test_failure_messages_do_not_echo_unbounded_student_data(grade_id, data):
    """A stated string goes into the failure message, the cell's error output and the feedback page;
    it must be shortened (5453c3c: copied whole, 1 MB here, ~40 MB per cell from a 53 MB answer)."""
    outcome = judged(grade_id, {"errors.json": {}, **data})
    assert outcome.points == 0
    longest = max(len(f) for f in outcome.failures)
    assert longest < 20_000, f"a failure message of {longest:,} characters"


# --- formats --------------------------------------------------------------------------------------------


def test_static_scan_and_fit_detection_survive_a_deeply_nested_expression():
    """Valid Python on which ast.parse raises RecursionError (MemoryError for 100,000 unary minus
    signs): the scan of the notebook and the training-cell detection must treat it like unparsable
    code (5453c3c: autograde crashed in RepairSubmission, no grade and no feedback page)."""
    import nbformat

    from vae_grader.preprocessors.scan import scan_notebook
    from vae_grader.kernel.time_limits import trains

    for source in (adversarial.DEEP_EXPRESSION, "x = " + "-" * 100_000 + "1\n"):
        cell = nbformat.v4.new_code_cell(source)
        scan_notebook(nbformat.v4.new_notebook(cells=[cell]))
        trains(cell, ["training"])


@pytest.fixture(scope="module")
def master_and_release():
    return load_master_and_release()


def submitted(tmp_path: Path, student: str, master_and_release) -> Path:
    content = CASES[student].build(*master_and_release)
    path = tmp_path / "vae.ipynb"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        import nbformat

        nbformat.write(content, path)
    return path


def grade_ids(nb) -> list[str]:
    from vae_grader.cells import grade_id

    return [g for g in (grade_id(c) for c in nb.cells) if g]


def test_intake_reads_an_nbformat_3_notebook(tmp_path, master_and_release):
    """nbformat 3 (worksheets) is a notebook format nbformat itself upgrades; its graded cells must be
    read (5453c3c: 'no cell list', every part 0 and the notebook flagged)."""
    from vae_grader.preprocessors.intake import load_submission

    nb = load_submission(str(submitted(tmp_path, "nbformat_v3", master_and_release)))
    assert {"encoder", "sampling", "decoder", "loss_layer", "vae_model", "data"} <= set(
        grade_ids(nb)
    )


def test_intake_refuses_a_notebook_nested_too_deeply_with_a_note(tmp_path, master_and_release):
    """200,000 levels of metadata: refused like a file that is not JSON, with the note the student
    reads (5453c3c: RecursionError out of json.loads, autograde exited 1, no feedback page)."""
    from vae_grader.preprocessors.intake import load_submission
    from vae_grader.notes import notes_of

    nb = load_submission(str(submitted(tmp_path, "deep_metadata", master_and_release)))
    assert not nb.cells
    assert "could not be read as a notebook" in json.dumps(notes_of(nb))


@pytest.mark.judge
def test_reading_and_scanning_a_huge_literal_is_bounded(tmp_path, master_and_release):
    """The corpus case's 40 MB list literal (20 M elements): reading the notebook and the static scan
    of its cells must not build a syntax tree of it. Run in a child process under a 1.5 GB
    address-space limit, so that an unbounded scan fails the test instead of exhausting this machine
    (5453c3c: 1.9 GB and 7 s for 4 MB of literal; the grader was killed at 6.9 GB on this case)."""
    path = submitted(tmp_path, "huge_literal_cell", master_and_release)
    script = textwrap.dedent(
        f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (1500 * 2**20, 1500 * 2**20))
        from vae_grader.preprocessors.intake import load_submission
        from vae_grader.preprocessors.scan import scan_notebook
        from vae_grader.kernel.time_limits import trains
        nb = load_submission({str(path)!r})
        scan_notebook(nb)
        for cell in nb.cells:
            trains(cell, ["training"])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
def test_intake_of_millions_of_empty_cells_is_bounded(tmp_path, master_and_release):
    """2.3 M empty raw cells (48 MB, under the 50 MB limit): reading it must take seconds, not the
    ~0.2 ms a cell that salvage spends (8 minutes before any grading limit applies)."""
    path = submitted(tmp_path, "many_cells_notebook", master_and_release)
    script = textwrap.dedent(
        f"""
        from vae_grader.preprocessors.intake import load_submission
        load_submission({str(path)!r})
        """
    )
    try:
        subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("reading the notebook took more than 60 s")


# --- part 7 without training ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("training", ["PCA_TRAINING", "MEMORISED_TRAINING"])
def test_untrained_models_earn_no_training_points(training):
    """A PCA written into Dense weights, or a lookup of the grader's fixed quality images, with a
    hand-made History: no training ran (5453c3c: 2/2 and 5/5 for both)."""
    import keras
    from keras import layers

    import course

    budget = course.training_budget()
    (train, _), (test, _) = course.load_mnist()
    namespace = {
        "np": np,
        "keras": keras,
        "layers": layers,
        "budget": budget,
        "x_train": (train[: budget.train_images] / 255.0).astype("float32")[..., None],
        "x_test": (test / 255.0).astype("float32")[..., None],
    }
    exec(getattr(adversarial, training), namespace)
    visible = selfcheck.judge_here(selfcheck.PROBES["test_training"], namespace)
    hidden_outcome = selfcheck.judge_here(hidden.probe_spec("test_training_hidden"), namespace)
    assert (visible.points, hidden_outcome.points) == (0, 0)
