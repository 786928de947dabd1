"""No verdict on facts the kernel states: parts 5, 6 and 8, in this process (about a minute).

A kernel can hand back any data. Each test here builds what a forging kernel would send (the old keys of
part 5's probe, stated shapes for part 6, a call list beside a made-up picture for part 8) and shows that it
earns nothing; beside them, correct code written in different ways keeps every point, and the verdicts give
a failure, never an exception, on mistyped data. docs/verdict-facts.md lists, verdict by verdict, which
facts the grader computes and which the kernel states.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

import keras
import nbformat
import numpy as np
import pytest
from keras import layers

from course import model_file, probing, selfcheck
from course.checks import run_checks
from course.selfcheck import part5_vae_model as part5
from course.selfcheck import part6_data as part6
from course.stand_ins import ProbeDecoder, stand_in_decoder, stand_in_encoder
from vae_grader.judge import hidden
from vae_grader.paths import MASTER
from vae_samples.kit import solution_source

VISIBLE, HIDDEN = "test_vae_model", "test_vae_model_hidden"


def _round_trip(data: dict) -> dict:
    return probing.unpack(probing.pack(data))


def _visible(grade_id: str, data: dict):
    return selfcheck.judge(selfcheck.PROBES[grade_id], _round_trip(data))


def _hidden(grade_id: str, data: dict):
    return hidden.judge(grade_id, _round_trip(data))


@pytest.fixture(scope="module")
def master() -> dict[str, Any]:
    """The master's imports and its Sampling, CustomVariationalLayer, build_vae and build_manifold."""
    notebook = nbformat.read(MASTER, as_version=4)
    namespace: dict[str, Any] = {}
    from vae_grader.cells import require_cell

    setup = require_cell(notebook, "setup").source
    exec(setup.split("budget = course.training_budget()")[0], namespace)  # noqa: S102 (imports only)
    namespace["LATENT_DIM"] = 2
    for grade_id in ("sampling", "loss_layer", "vae_model", "manifold"):
        exec(_definitions(solution_source(notebook, grade_id)), namespace)  # noqa: S102
    return namespace


def _definitions(source: str) -> str:
    """A cell's constants, classes and functions, without the statements after them that use the notebook's models."""
    kept: list[str] = []
    inside = False
    for line in source.splitlines():
        if line[:1] not in ("", " ", "#", ")"):  # a new top-level statement
            inside = line.startswith(("def ", "class ", "@", "KL_WEIGHT"))
        if inside:
            kept.append(line)
    return "\n".join(kept)


# --- part 5: the VAE is rebuilt and run by the grader ---------------------------------------------------


def _wired(namespace: dict, encoder: Any, decoder: Any, *, compile: bool = True) -> keras.Model:
    """A VAE wired as the text asks, from the master's classes."""
    image = keras.Input(shape=(28, 28, 1))
    z_mean, z_log_var = encoder(image)
    z = namespace["Sampling"](seed=0)([z_mean, z_log_var])
    output = namespace["CustomVariationalLayer"]()([image, decoder(z), z_mean, z_log_var])
    vae = keras.Model(image, output)
    if compile:
        vae.compile(optimizer=keras.optimizers.Adam(3e-3), loss=None)
    return vae


def test_a_forged_part5_answer_of_stated_facts_earns_nothing(master) -> None:
    """Every key the old part-5 probes sent, filled in as a correct model would fill it: no model, no points."""
    config = _wired(master, stand_in_encoder(), stand_in_decoder()).get_config()
    forged = {
        probing.ERRORS: {},
        "type": "Functional",
        "is_model": True,
        "vae.is_model": True,
        "vae.type": "Functional",
        "config.json": config,
        "given.json": ["stand_in_encoder", "stand_in_decoder"],
        "input_shape.json": [None, 28, 28, 1],
        "compiled": True,
        "loss": 0.69,
        "optimizer.json": {"learning_rate": 3e-3},
        "fit_loss": 0.69,
        "decoder_changed": True,
    }
    for outcome in (_visible(VISIBLE, forged), _hidden(HIDDEN, forged)):
        assert outcome.points == 0, outcome


def test_a_hand_made_model_file_without_the_given_weights_earns_nothing(master) -> None:
    """A correctly wired VAE, saved, but around fresh stand-ins instead of the ones build_vae was given."""
    blob = model_file.model_bytes(_wired(master, stand_in_encoder(), stand_in_decoder()))
    forged = {probing.ERRORS: {}, "vae.keras": blob}
    for outcome in (_visible(VISIBLE, forged), _hidden(HIDDEN, forged)):
        assert outcome.points == 0
        assert "use the encoder and decoder it is given" in outcome.failures[0], outcome


def test_a_standard_layer_imitation_of_the_vae_earns_nothing() -> None:
    """The given stand-ins in a graph of standard layers (no sampler, no loss layer): safe to load, and wrong."""
    for seed, grade_id, judge in ((part5.VISIBLE_SEED, VISIBLE, _visible), (105, HIDDEN, _hidden)):
        encoder, decoder = part5.given_stand_ins(seed)
        image = keras.Input(shape=(28, 28, 1))
        z_mean, z_log_var = encoder(image)
        decoded = decoder(layers.Add()([z_mean, z_log_var]))
        vae = keras.Model(image, layers.Average()([image, decoded]))
        vae.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
        outcome = judge(grade_id, {probing.ERRORS: {}, "vae.keras": model_file.model_bytes(vae)})
        assert outcome.points == 0
        assert "the decoder should be called on the sampled z" in outcome.failures[0], (
            outcome.failures
        )


def _build_vae(namespace: dict, variant: str) -> Callable[..., Any]:
    """build_vae written in one of several correct ways, or with one wiring slip."""
    Sampling, Loss = namespace["Sampling"], namespace["CustomVariationalLayer"]

    def build_vae(encoder, decoder, seed=None, learning_rate=1e-3, steps_per_execution=1):
        image = layers.Input((28, 28, 1))
        if variant == "indexed":
            encoded = encoder(image)
            z_mean, z_log_var = encoded[0], encoded[1]
        elif variant == "encoder_twice":
            z_mean, z_log_var = encoder(image)[0], encoder(image)[1]
        elif variant == "new_encoder":
            flat = layers.Flatten()(image)
            z_mean, z_log_var = layers.Dense(2)(flat), layers.Dense(2)(flat)
        else:
            z_mean, z_log_var = encoder(image)
        pair = [z_log_var, z_mean] if variant == "sampler_swapped" else [z_mean, z_log_var]
        z = Sampling(seed=seed, name="z")(pair)
        z_decoded = decoder(z_mean if variant == "decoder_on_mean" else z)
        if variant == "frozen":
            decoder.trainable = False
        order = (
            [image, z_decoded, z_log_var, z_mean]
            if variant == "loss_misordered"
            else [image, z_decoded, z_mean, z_log_var]
        )
        output = Loss(name="vae_loss")(order)
        vae = (
            keras.Model(inputs=[image], outputs=[output])
            if variant == "lists"
            else keras.Model(image, output)
        )
        if variant != "not_compiled":
            optimizer = (
                "adam"
                if variant == "adam_by_name"
                else keras.optimizers.Adam(learning_rate=learning_rate)
            )
            vae.compile(optimizer=optimizer, loss=None, steps_per_execution=steps_per_execution)
        return vae

    return build_vae


CORRECT_VAES = ["master", "indexed", "lists", "encoder_twice"]
VAE_SLIPS = {
    # variant: (visible points, hidden points, the message names)
    "new_encoder": (0, 0, "use the encoder and decoder it is given"),
    "sampler_swapped": (0, 0, "the Sampling layer should receive [z_mean, z_log_var]"),
    "decoder_on_mean": (0, 0, "the decoder should be called on the sampled z"),
    "frozen": (0, 0, "must stay trainable"),
    "loss_misordered": (
        0,
        0,
        "CustomVariationalLayer should receive [image, z_decoded, z_mean, z_log_var]",
    ),
    "not_compiled": (0, 0, "the VAE is not compiled"),
    "adam_by_name": (1, 0, "the learning rate is 0.001"),
}


@pytest.mark.parametrize("variant", CORRECT_VAES)
def test_correct_build_vae_variants_keep_every_point(master, variant) -> None:
    build = master["build_vae"] if variant == "master" else _build_vae(master, variant)
    visible = _visible(VISIBLE, part5.probe_vae_model(build))
    hidden_outcome = _hidden(HIDDEN, hidden.PARTS["test_vae_model_hidden"].probe(build))
    assert visible.full and visible.points == 1, visible.failures
    assert hidden_outcome.full and hidden_outcome.points == 2, hidden_outcome.failures


@pytest.mark.parametrize("variant", sorted(VAE_SLIPS))
def test_wiring_slips_are_found_on_the_graph_the_grader_rebuilt(master, variant) -> None:
    visible_points, hidden_points, phrase = VAE_SLIPS[variant]
    build = _build_vae(master, variant)
    visible = _visible(VISIBLE, part5.probe_vae_model(build))
    hidden_outcome = _hidden(HIDDEN, hidden.PARTS["test_vae_model_hidden"].probe(build))
    assert (visible.points, hidden_outcome.points) == (visible_points, hidden_points)
    assert any(phrase in f for f in visible.failures + hidden_outcome.failures), (
        visible.failures,
        hidden_outcome.failures,
    )


def test_the_stand_in_sampler_is_not_the_notebooks_sampler() -> None:
    """The checker's replacement for Sampling is a fixed mix, not the reparameterisation the students write."""
    layer = part5._stand_in_layers()["sampler"]()
    z = keras.ops.convert_to_numpy(layer([np.zeros((1, 2), "float32"), np.ones((1, 2), "float32")]))
    assert np.allclose(z, [part5.SAMPLER_MIX])


# --- part 6: the arrays themselves ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_raw() -> tuple[np.ndarray, np.ndarray]:
    import course

    (x_train, _), (x_test, _) = course.load_mnist()
    return x_train, x_test


def _arrays(mnist_raw, scale: float = 255.0, channel: bool = True):
    import course

    train, test = mnist_raw
    n = course.training_budget().train_images

    def prep(images: np.ndarray) -> np.ndarray:
        out = images.astype("float32") / np.float32(scale)
        return out[..., None] if channel else out

    return prep(train[:n]), prep(test)


def test_stated_shapes_without_arrays_earn_nothing() -> None:
    import course

    n = course.training_budget().train_images
    forged = {
        probing.ERRORS: {},
        "x_train.shape.json": [n, 28, 28, 1],
        "x_test.shape.json": [10000, 28, 28, 1],
        "x_train.dtype": "float32",
        "x_train.range": np.array([0.0, 1.0]),
        "x_train.length.json": n,
        "x_test.length.json": 10000,
    }
    outcome = _visible("test_data", forged)
    assert outcome.points == 0, outcome
    # Stated lengths beside a few made-up images that cannot be the sample of arrays that long.
    forged["x_train.sample"] = (
        np.random.default_rng(0).uniform(0, 1, (3, 28, 28, 1)).astype("float32")
    )
    forged["x_test.sample"] = forged["x_train.sample"]
    outcome = _visible("test_data", forged)
    assert outcome.points == 0 and "do not come from an array" in outcome.failures[0], outcome


def test_part6_is_judged_on_the_images_received(mnist_raw) -> None:
    x_train, x_test = _arrays(mnist_raw)
    assert _visible("test_data", part6.probe_data(x_train, x_test)).full
    unscaled = _visible("test_data", part6.probe_data(*_arrays(mnist_raw, scale=1.0)))
    assert unscaled.points == 0 and "divide by 255" in unscaled.failures[0], unscaled
    flat = _visible("test_data", part6.probe_data(*_arrays(mnist_raw, channel=False)))
    assert flat.points == 0 and "channel axis" in flat.failures[0], flat
    as_float64 = _visible("test_data", part6.probe_data(x_train.astype("float64"), x_test))
    assert as_float64.points == 0 and "expected float32" in as_float64.failures[0], as_float64
    blank = _visible("test_data", part6.probe_data(np.zeros_like(x_train), x_test))
    assert blank.points == 0, blank


def test_the_sample_covers_the_whole_array() -> None:
    rows = part6.sample_rows(8000)
    assert rows[0] == 0 and rows[-1] == 7999 and len(rows) <= part6.HEAD + part6.SPREAD
    assert list(part6.sample_rows(3)) == [0, 1, 2] and len(part6.sample_rows(0)) == 0


# --- part 8: the call list counts only beside the decoder's own tiles ------------------------------------


def _manifold_variant(namespace: dict, variant: str) -> Callable[..., Any]:
    from scipy.stats import norm

    def build_manifold(decoder, n=15, digit_size=28):
        grid = (
            np.linspace(-2, 2, n) if variant == "linspace" else norm.ppf(np.linspace(0.05, 0.95, n))
        )
        z0, z1 = np.meshgrid(grid, grid)
        if variant == "swapped":
            z0, z1 = z1, z0
        codes = np.stack([z0.ravel(), z1.ravel()], axis=1).astype("float32")
        if variant == "loop":
            digits = np.concatenate([keras.ops.convert_to_numpy(decoder(c[None])) for c in codes])
        else:
            digits = keras.ops.convert_to_numpy(decoder(codes))
        digits = digits.reshape(n, n, digit_size, digit_size)
        order = (0, 3, 1, 2) if variant == "tiles_transposed" else (0, 2, 1, 3)
        return digits.transpose(*order).reshape(n * digit_size, n * digit_size)

    return namespace["build_manifold"] if variant == "master" else build_manifold


@pytest.mark.parametrize(
    "variant, points",
    [("master", 3), ("linspace", 1), ("swapped", 1), ("tiles_transposed", 1), ("loop", 2.5)],
)
def test_hidden_manifold_points(master, variant, points) -> None:
    """The demo's mistakes keep the batched and unscrambled points; only a loop of calls loses the batched one."""
    outcome = _hidden(
        "test_manifold_hidden",
        hidden.PARTS["test_manifold_hidden"].probe(_manifold_variant(master, variant)),
    )
    assert outcome.points == points, outcome.failures


def test_a_call_list_beside_a_made_up_picture_earns_nothing() -> None:
    rng = np.random.default_rng(0)
    forged = {
        probing.ERRORS: {},
        "probe_image": rng.uniform(0, 1, (140, 140)),
        "probe_calls.json": [25],
        "smooth_image": rng.uniform(0, 1, (420, 420)).astype("float32"),
    }
    outcome = _hidden("test_manifold_hidden", forged)
    assert outcome.points == 0, outcome
    assert any("judged on the image it drew" in f for f in outcome.failures), outcome.failures


def test_codes_written_into_a_picture_no_decoder_drew_earn_nothing() -> None:
    """The right codes in pixels (0, 0) and (0, 1) of every tile, noise elsewhere, a smooth gradient as the
    smooth decoder's picture: every tile is compared with the stand-in decoder's own output and fails."""
    from scipy.stats import norm

    rng = np.random.default_rng(1)
    grid = norm.ppf(np.linspace(0.05, 0.95, 5))
    image = rng.uniform(0, 1, (140, 140))
    z0, z1 = np.meshgrid(grid, grid)
    image[0::28, 0::28], image[0::28, 1::28] = z0, z1
    ramp = np.linspace(0, 1, 420)
    forged = {
        probing.ERRORS: {},
        "probe_image": image,
        "probe_calls.json": [25],
        "smooth_image": np.add.outer(ramp, ramp).astype("float32") / 2,
    }
    outcome = _hidden("test_manifold_hidden", forged)
    assert outcome.points == 0, outcome
    visible = _visible(
        "test_manifold",
        {
            probing.ERRORS: {},
            "type": "ndarray",
            "manifold": rng.uniform(0, 1, (420, 420)).astype("float32"),
            "probe_image": np.kron(np.ones((3, 3)), image).astype("float32"),
        },
    )
    assert visible.points == 0, visible


def test_the_probe_decoders_tiles_are_what_the_check_recomputes() -> None:
    decoder = ProbeDecoder()
    tile = keras.ops.convert_to_numpy(decoder(np.array([[0.3, -1.2]], "float32")))[0, :, :, 0]
    assert tile[0, 0] == np.float32(0.3) and tile[0, 1] == np.float32(-1.2)
    assert np.count_nonzero(tile) == 2


# --- robustness: odd data is a failure, never an exception outside run_checks ---------------------------

ODD_VALUES = [
    None,
    7,
    "text",
    b"not a zip",
    np.array(np.nan),
    np.full((3, 3), np.inf),
    np.zeros((0,)),
    np.array(["a", "b"]),
    {"a": [1, 2]},
    [[1, 2], [3]],
]


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, value in members.items():
            archive.writestr(name, value)
    return buffer.getvalue()


ODD_MODEL_FILES = [
    _zip({"config.json": b"{}", "metadata.json": b"{}", "model.weights.h5": b""}),
    _zip({"config.json": b"[1, 2]", "metadata.json": b"{}", "model.weights.h5": b""}),
    _zip(
        {
            "config.json": json.dumps({"config": {"layers": [1, "x"]}}).encode(),
            "metadata.json": b"{}",
            "model.weights.h5": b"",
        }
    ),
    _zip(
        {
            "config.json": json.dumps(
                {"config": {"layers": [{"class_name": "Sampling", "config": 5}]}}
            ).encode(),
            "metadata.json": b"{}",
            "model.weights.h5": b"",
        }
    ),
    _zip({"config.json": b"[" * 100_000, "metadata.json": b"{}", "model.weights.h5": b""}),
]

KEYS = {
    "test_vae_model": ["vae.keras", "vae.is_model", "vae.type", probing.ERRORS],
    "test_vae_model_hidden": ["vae.keras", probing.ERRORS],
    "test_data": ["x_train.sample", "x_test.sample", "x_train.length.json", "x_test.length.json"],
    "test_manifold": ["type", "manifold", "probe_image", probing.ERRORS],
    "test_manifold_hidden": ["probe_image", "probe_calls.json", "smooth_image", probing.ERRORS],
}


def _spec(grade_id: str):
    return (
        selfcheck.PROBES[grade_id] if grade_id in selfcheck.PROBES else hidden.probe_spec(grade_id)
    )


@pytest.mark.parametrize("grade_id", sorted(KEYS))
def test_odd_data_fails_every_check_and_never_raises(grade_id) -> None:
    spec = _spec(grade_id)
    odd = ODD_VALUES + (ODD_MODEL_FILES if "vae" in grade_id else [])
    for key in KEYS[grade_id]:
        for value in odd:
            data = {probing.ERRORS: {}, key: value}
            checks = spec.verdict(data)  # building the checks reads nothing
            outcome = run_checks(checks)
            assert outcome.points == 0, (key, value, outcome)
            for points, label, _ in checks:
                assert isinstance(points, (int, float)) and isinstance(label, str)
