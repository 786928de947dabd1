"""The judge's parts on their own, in this process (seconds): probes, verdicts, canonical architecture, outputs.

The full path (probe in the sandboxed kernel, verdict in the grader) is exercised by the pipeline
tests; here each piece is checked directly, including that equivalent ways of writing a part
earn the same verdict and that nbgrader reads the judge's outputs as the intended score.
"""

from __future__ import annotations

import base64
import builtins
import inspect
import io
import symtable
import textwrap
from collections.abc import Callable
from typing import Any

import keras
import nbformat
import numpy as np
import pytest
from keras import layers
from nbgrader import utils

from course import probing, selfcheck
from course.architecture import model_signature, shape_before_flattening
from vae_grader.judge import hidden
from vae_grader.judge.hidden import inputs as probe_inputs
from vae_grader.judge import rulings as judge
from vae_grader.paths import MASTER


# --- encoders written in different ways (none is shipped to students: tests/ is not released) -------


def functional_encoder(latent_dim: int = 2, stride: int = 2) -> keras.Model:
    image = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(image)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", strides=stride)(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(32, activation="relu")(x)
    return keras.Model(
        image, [layers.Dense(latent_dim)(x), layers.Dense(latent_dim)(x)], name="encoder"
    )


def sequential_block_encoder(latent_dim: int = 2) -> keras.Model:
    """Convolutions in one Sequential block, Flatten + Dense in another, wrapped in a functional model."""
    convs = keras.Sequential(
        [
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
        ],
        name="convs",
    )
    head = keras.Sequential([layers.Flatten(), layers.Dense(32, activation="relu")], name="head")
    image = keras.Input(shape=(28, 28, 1))
    x = head(convs(image))
    return keras.Model(
        image, [layers.Dense(latent_dim)(x), layers.Dense(latent_dim)(x)], name="encoder"
    )


def separate_activation_encoder(latent_dim: int = 2) -> keras.Model:
    """Every activation as its own layer: ReLU(), Activation("relu"), LeakyReLU(negative_slope=0)."""
    image = keras.Input(shape=(28, 28, 1))
    x = layers.ReLU()(layers.Conv2D(32, 3, padding="same")(image))
    x = layers.Activation("relu")(
        layers.Conv2D(64, 3, strides=2, padding="same", activation=None)(x)
    )
    x = layers.LeakyReLU(negative_slope=0.0)(layers.Conv2D(64, 3, padding="same")(x))
    x = layers.ReLU()(layers.Conv2D(64, 3, padding="same")(x))
    x = layers.ReLU()(layers.Dense(32)(layers.Flatten()(x)))
    return keras.Model(
        image, [layers.Dense(latent_dim)(x), layers.Dense(latent_dim)(x)], name="encoder"
    )


def decoder(latent_dim: int, shape: tuple[int, ...], last: str = "sigmoid") -> keras.Model:
    z = keras.Input(shape=(latent_dim,))
    x = layers.Dense(int(np.prod(shape)), activation="relu")(z)
    x = layers.Reshape(shape)(x)
    x = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")(x)
    return keras.Model(z, layers.Conv2D(1, 3, padding="same", activation=last)(x), name="decoder")


def _round_trip(data: dict) -> dict:
    return probing.unpack(probing.pack(data))


@pytest.mark.parametrize(
    "build", [functional_encoder, sequential_block_encoder, separate_activation_encoder]
)
def test_equivalent_encoders_earn_every_point(build) -> None:
    keras.utils.set_random_seed(0)
    assert shape_before_flattening(build(2)) == (14, 14, 64)
    visible = selfcheck.judge(
        selfcheck.PROBES["test_encoder"], _round_trip(selfcheck.PROBES["test_encoder"].probe(build))
    )
    assert visible.full, visible.failures
    outcome = hidden.judge(
        "test_encoder_hidden", _round_trip(hidden.PARTS["test_encoder_hidden"].probe(build))
    )
    assert outcome.full and outcome.points == 3, outcome.failures


def test_a_different_encoder_loses_the_architecture_points_with_the_reason() -> None:
    outcome = hidden.judge(
        "test_encoder_hidden",
        _round_trip(
            hidden.PARTS["test_encoder_hidden"].probe(
                lambda latent_dim: functional_encoder(latent_dim, stride=1)
            )
        ),
    )
    assert outcome.points == 0
    assert any("strides=(2, 2)" in failure for failure in outcome.failures), outcome.failures


def test_a_lambda_encoder_is_not_a_model() -> None:
    outcome = selfcheck.judge(
        selfcheck.PROBES["test_encoder"],
        _round_trip(selfcheck.PROBES["test_encoder"].probe(lambda d: lambda x: (x, x))),
    )
    assert (
        outcome.points == 0 and "should return a keras.Model, not function" in outcome.failures[0]
    )


def test_a_model_with_a_lambda_layer_is_refused_by_safe_loading() -> None:
    def sneaky(latent_dim: int = 2) -> keras.Model:
        image = keras.Input(shape=(28, 28, 1))
        x = layers.Lambda(lambda t: t * 1.0)(image)
        x = layers.Flatten()(x)
        return keras.Model(image, [layers.Dense(latent_dim)(x), layers.Dense(latent_dim)(x)])

    outcome = selfcheck.judge(
        selfcheck.PROBES["test_encoder"],
        _round_trip(selfcheck.PROBES["test_encoder"].probe(sneaky)),
    )
    assert outcome.points == 0 and "built-in layers and activations only" in outcome.failures[0]


def test_decoder_checks_catch_the_wrong_last_activation() -> None:
    for last, phrase in (
        ("relu", "must lie in [0, 1] for every code"),
        ("softmax", "whatever the code"),
    ):
        outcome = selfcheck.judge(
            selfcheck.PROBES["test_decoder"],
            _round_trip(selfcheck.PROBES["test_decoder"].probe(lambda d, s: decoder(d, s, last))),
        )
        assert outcome.points == 0 and phrase in outcome.failures[0], (last, outcome.failures)
    outcome = hidden.judge(
        "test_decoder_hidden",
        _round_trip(
            hidden.PARTS["test_decoder_hidden"].probe(lambda d, s: decoder(d, s, "softmax"))
        ),
    )
    assert outcome.points == 1, outcome  # the layers fail, the arguments are used


def test_unpack_never_unpickles() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([object()], dtype=object), allow_pickle=True)
    archive = io.BytesIO()
    np.savez(archive, evil=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError):
        probing.unpack(archive.getvalue())


def test_answer_reads_exactly_one_probe_output() -> None:
    blob = base64.b64encode(probing.pack({"x": np.arange(3)})).decode()
    one = nbformat.from_dict(
        {"output_type": "display_data", "data": {probing.MIME: blob}, "metadata": {}}
    )
    data, problem = judge.answer([one])
    assert problem is None and data["x"].tolist() == [0, 1, 2]
    assert judge.answer([one, one])[0] is None
    assert "no answer" in judge.answer([])[1]
    garbage = nbformat.from_dict(
        {"output_type": "display_data", "data": {probing.MIME: "not base64!"}, "metadata": {}}
    )
    assert judge.answer([garbage])[0] is None


@pytest.mark.parametrize("points", [0.0, 1.5, 4.0])
def test_nbgrader_reads_the_judges_outputs_as_the_score(points: float) -> None:
    test = judge.Judged("test_sampling_hidden", 2, True)
    failures = () if points == 4.0 else ("one check failed",)
    outcome = judge.Outcome(points, 4.0, failures)
    cell = nbformat.v4.new_code_cell("")
    cell.metadata["nbgrader"] = {
        "grade": True,
        "solution": False,
        "points": 4,
        "grade_id": "test_sampling_hidden",
    }
    cell.outputs = judge.verdict_outputs(test, outcome)
    assert utils.determine_grade(cell) == (points, 4.0)


def test_every_test_cell_of_the_master_is_judged_with_its_points() -> None:
    master = nbformat.read(MASTER, as_version=4)
    for cell in master.cells:
        if utils.is_grade(cell) and not utils.is_solution(cell):
            grade_id = cell.metadata["nbgrader"]["grade_id"]
            test = judge.judged(grade_id)
            assert test is not None, grade_id
            assert judge.failed(test, "x").max_points == cell.metadata["nbgrader"]["points"], (
                grade_id
            )


def test_the_points_table_lists_the_hidden_checks() -> None:
    intro = nbformat.read(MASTER, as_version=4).cells[0].source
    for grade_id, spec in hidden.PARTS.items():
        part = spec.part
        row = next(line for line in intro.splitlines() if line.startswith(f"| {part} |"))
        total, _, items = row.split("|")[4].partition(
            ":"
        )  # "3: layers 2, parameter count and output 1"
        listed = (
            [float(item.split()[-1]) for item in items.split(",")]
            if "," in items
            else [float(total)]
        )
        checks = hidden.probe_spec(grade_id).verdict({})
        assert sorted(listed) == sorted(float(p) for p, _, _ in checks), (grade_id, listed)
        assert float(total) == sum(listed), grade_id


def test_signature_folds_activations_and_flattens_blocks() -> None:
    reference = model_signature(functional_encoder())
    assert model_signature(sequential_block_encoder()) == reference
    assert model_signature(separate_activation_encoder()) == reference


def _master_namespace(*cells: str) -> dict:
    """The master's set-up cell and the given solution cells, run in this process (as a correct student's would)."""
    from vae_grader.cells import require_cell
    from vae_samples.kit import solution_source

    master = nbformat.read(MASTER, as_version=4)
    namespace: dict = {}
    setup = require_cell(master, "setup").source
    exec(setup.split("budget = course.training_budget()")[0], namespace)  # noqa: S102 (imports only)
    namespace["LATENT_DIM"] = 2
    for grade_id in cells:
        exec(solution_source(master, grade_id), namespace)  # noqa: S102
    return namespace


@pytest.mark.parametrize("salt", [1, 2_000_003, 987_654_321])
def test_the_master_passes_the_salted_checks_for_any_inputs(
    salt: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The grader draws the sampler's and loss layer's inputs afresh per probe: correct code passes whatever they are."""
    namespace = _master_namespace("sampling", "loss_layer")
    for grade_id, name in (
        ("test_sampling_hidden", "Sampling"),
        ("test_loss_layer_hidden", "CustomVariationalLayer"),
    ):
        probe = hidden.PARTS[grade_id].probe
        monkeypatch.setitem(probe.__globals__, "SALT", salt)  # what probe_code sets in the kernel
        outcome = hidden.judge(grade_id, _round_trip(probe(namespace[name])), salt)
        assert outcome.full, (grade_id, salt, outcome.failures)
        wrong_salt = hidden.judge(grade_id, _round_trip(probe(namespace[name])), salt + 1)
        assert wrong_salt.points < wrong_salt.max_points, (
            f"{grade_id}: data for other inputs passed"
        )


def test_a_grader_without_mnist_flags_instead_of_failing_the_student(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MNIST missing on the grader's side is the grader's fault: the verdict refuses, the executor flags the cell."""

    def no_mnist():
        raise OSError("no MNIST here")

    monkeypatch.setattr(judge, "mnist", no_mnist)
    with pytest.raises(judge.GraderError, match="MNIST could not be read by the grader"):
        judge.verdict(judge.judged("test_training_hidden"), {})


def test_each_part_is_declared_once_per_side_and_the_sides_agree() -> None:
    """The student package's table (``selfcheck.PROBES``) and the grader's (``hidden.PARTS``) name the same
    parts with the same numbers, in the notebook's order; every other list of parts derives from them."""
    from vae_grader.submissions import PARTS

    visible = {grade_id.removeprefix("test_"): p.part for grade_id, p in selfcheck.PROBES.items()}
    secret = {
        grade_id.removeprefix("test_").removesuffix("_hidden"): p.part
        for grade_id, p in hidden.PARTS.items()
    }
    assert visible == secret
    assert list(visible.values()) == list(range(1, len(visible) + 1))
    assert PARTS == tuple(visible)
    master = nbformat.read(MASTER, as_version=4)
    graded = [
        c.metadata["nbgrader"]["grade_id"]
        for c in master.cells
        if c.metadata.get("nbgrader", {}).get("grade")
    ]
    assert graded == [cell for part in PARTS for cell in (f"test_{part}", f"test_{part}_hidden")]
    for spec in [*selfcheck.PROBES.values(), *hidden.PARTS.values()]:
        assert list(inspect.signature(spec.probe).parameters) == list(spec.names), spec
    for grade_id, spec in hidden.PARTS.items():
        # The kernel gets ``inputs`` and the probe with its helpers, nothing else of the part's module: each
        # global name they read must be defined there (or be a builtin), and the call names the probe.
        code = judge.probe_code(judge.judged(grade_id), 7)
        assert f"{spec.probe.__name__}, None)" in code
        defined = (
            set(vars(probe_inputs)) | set(dir(builtins)) | {fn.__name__ for fn in spec.helpers}
        )
        for fn in (*spec.helpers, spec.probe):
            assert _global_names(fn) <= defined, (
                grade_id,
                fn.__name__,
                _global_names(fn) - defined,
            )


def _global_names(fn: Callable[..., Any]) -> set[str]:
    """The global names ``fn``'s source reads, its nested functions and lambdas included."""
    table = symtable.symtable(textwrap.dedent(inspect.getsource(fn)), "<probe>", "exec")
    found: set[str] = set()
    pending = list(table.get_children())
    while pending:
        scope = pending.pop()
        found |= {s.get_name() for s in scope.get_symbols() if s.is_global() and s.is_referenced()}
        pending += scope.get_children()
    return found
