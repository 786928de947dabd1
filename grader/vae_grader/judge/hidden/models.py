"""Verdicts of the parts that build models: 1 (the encoder), 3 (the decoder) and 5 (the VAE).

Kept together because they judge the same kind of probe data, a model saved in Keras's format and
loaded here (``safe_mode``, standard layers only), against the architecture the notebook asks for.
The expected layer lists and parameter counts exist only here, never in the student's kernel
(tests/test_judge_attacks.py greps everything the kernel could see for them). Part 5's VAE holds the
notebook's own Sampling and CustomVariationalLayer, which no grader loads: its graph is rebuilt here with
the checker's stand-ins for those two layers and run on the checker's images
(``course.selfcheck.part5_vae_model``); nothing the kernel states about it can pass the check.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from course.checks import (
    Check,
    expect,
    expect_close,
    expect_layers,
    expect_param_count,
    expect_ran,
    expect_shape,
)
from course.selfcheck.probe import load_saved, to_numpy
from course.selfcheck.part1_encoder import latent_hint
from course.selfcheck.part5_vae_model import compile_config, load_vae, vae_problem
from vae_grader.judge.hidden import inputs as hp
from vae_grader.judge.hidden.inputs import model_step, probing, VAE_SEED
from vae_grader.judge.hidden.part import HiddenPart


def _model(data: dict[str, Any], key: str, what: str) -> Callable[[], Any]:
    """Load a probed model once, on first use (a failure to load fails every check that needs it)."""
    return functools.cache(lambda: load_saved(data, key, what))


# --- the probes, sent into the kernel one at a time (after ``inputs``) ------------------------------


def probe_encoder_hidden(build_encoder: Any) -> dict[str, Any]:
    import keras

    rec = probing.Recorder()
    keras.utils.set_random_seed(101)
    model_step(rec, "encoder", "build_encoder(2)", lambda: build_encoder(2))
    return rec.data


def probe_decoder_hidden(build_decoder: Any) -> dict[str, Any]:
    import keras

    rec = probing.Recorder()
    keras.utils.set_random_seed(103)
    model_step(
        rec, "decoder", "build_decoder(2, (14, 14, 64))", lambda: build_decoder(2, (14, 14, 64))
    )
    model_step(
        rec, "decoder_small", "build_decoder(3, (7, 7, 8))", lambda: build_decoder(3, (7, 7, 8))
    )
    return rec.data


def probe_vae_model_hidden(build_vae: Any) -> dict[str, Any]:
    from course.selfcheck.part5_vae_model import given_stand_ins, with_checker_layers

    rec = probing.Recorder()
    enc, dec = given_stand_ins(VAE_SEED)
    # Saved before the training step below, so the file holds the given weights: the grader rebuilds the
    # graph from it, runs it on its own images and reads the compile settings from it.
    model = model_step(
        rec, "vae", "build_vae", lambda: build_vae(enc, dec, seed=0, learning_rate=3e-3)
    )
    if model is None:
        return rec.data
    images = (np.random.default_rng(5).uniform(0, 1, (8, 28, 28, 1)) > 0.6).astype("float32")
    # Only whether it raised is used (a VAE that cannot train fails); nothing about the step earns points. It
    # trains the graph rebuilt with the checker's sampler and loss layer and the student's compile settings, so
    # a loss layer that adds no loss costs part 4, not this part.
    rec.attempt(
        "vae.fit(images, None, epochs=1, batch_size=8)",
        lambda: with_checker_layers(rec.data.get("vae.keras")).fit(
            images, None, epochs=1, batch_size=8, verbose=0
        ),
    )
    return rec.data


# --- part 1 -----------------------------------------------------------------------------------------

CONV = {"type": "Conv2D", "kernel_size": (3, 3), "padding": "same", "activation": "relu"}
ENCODER_LAYERS = [
    {**CONV, "filters": 32, "strides": (1, 1)},
    {**CONV, "filters": 64, "strides": (2, 2)},
    {**CONV, "filters": 64, "strides": (1, 1)},
    {**CONV, "filters": 64, "strides": (1, 1)},
    {"type": "Flatten"},
    {"type": "Dense", "units": 32, "activation": "relu"},
    {"type": "Dense", "units": 2, "activation": "linear"},
    {"type": "Dense", "units": 2, "activation": "linear"},
]


def verdict_encoder(data: dict[str, Any]) -> list[Check]:
    from course.architecture import shape_before_flattening

    encoder = _model(data, "encoder", "build_encoder(2)")

    def layers() -> None:
        expect_layers("the encoder", encoder(), ENCODER_LAYERS)
        expect_shape(
            "the feature map before Flatten",
            (None, *shape_before_flattening(encoder())),
            (None, 14, 14, 64),
            "only the second convolution has stride 2",
        )

    def parameters() -> None:
        expect_param_count("the encoder", encoder(), 494_244)
        z_mean, _ = encoder()(np.zeros((3, 28, 28, 1), "float32"))
        expect_shape(
            "z_mean for a batch of 3 images",
            to_numpy(z_mean).shape,
            (3, 2),
            latent_hint(to_numpy(z_mean).shape),
        )

    return [
        (2, "the encoder's layers", layers),
        (1, "the encoder's parameters and output", parameters),
    ]


# --- part 3 -----------------------------------------------------------------------------------------

DECODER_LAYERS = [
    {"type": "Dense", "units": 14 * 14 * 64, "activation": "relu"},
    {"type": "Reshape", "target_shape": (14, 14, 64)},
    {
        "type": "Conv2DTranspose",
        "filters": 32,
        "kernel_size": (3, 3),
        "strides": (2, 2),
        "padding": "same",
        "activation": "relu",
    },
    {
        "type": "Conv2D",
        "filters": 1,
        "kernel_size": (3, 3),
        "strides": (1, 1),
        "padding": "same",
        "activation": "sigmoid",
    },
]


def verdict_decoder(data: dict[str, Any]) -> list[Check]:
    decoder = _model(data, "decoder", "build_decoder(2, (14, 14, 64))")
    small = _model(data, "decoder_small", "build_decoder(3, (7, 7, 8))")

    def layers() -> None:
        expect_layers("the decoder", decoder(), DECODER_LAYERS)
        expect_param_count("the decoder", decoder(), 56_385)

    def arguments() -> None:
        expect_shape(
            "build_decoder(3, (7, 7, 8))'s input",
            small().inputs[0].shape,
            (None, 3),
            "use latent_dim",
        )
        expect_shape(
            "build_decoder(3, (7, 7, 8))'s output",
            small().outputs[0].shape,
            (None, 14, 14, 1),
            "use shape_before_flattening and latent_dim instead of fixed numbers",
        )

    return [
        (2, "the decoder's layers", layers),
        (1, "latent_dim and shape_before_flattening used", arguments),
    ]


# --- part 5 -----------------------------------------------------------------------------------------

LEARNING_RATE = 3e-3
"""The learning rate the hidden probe passes to build_vae."""


def _learning_rate(config: dict[str, Any]) -> float | None:
    """The optimizer's learning rate, as the model file's compile settings give it, read through Keras's own
    (standard) optimizer classes; None when there is no optimizer with a plain learning rate."""
    import keras

    optimizer = (compile_config(config) or {}).get("optimizer")
    if not isinstance(optimizer, dict):
        return None
    try:
        rebuilt = keras.optimizers.deserialize(optimizer)
    except Exception:  # a name, a class Keras does not have: no rate to read
        return None
    rate = to_numpy(rebuilt.learning_rate)
    return float(rate) if rate.shape == () else None


def verdict_vae_model(data: dict[str, Any]) -> list[Check]:
    def check() -> None:
        # The wiring: the VAE rebuilt here from its file, holding the given weights, run on the checker's images
        # (course.selfcheck.part5_vae_model.vae_problem); every value it compares is computed here.
        vae, config = load_vae(data, "vae", "build_vae")
        problem = vae_problem(vae, hp.VAE_SEED)
        expect(problem is None, problem or "")
        # What the kernel states from here on can only fail the check: the compile settings written in the
        # model file, and whether one training step raised an error there.
        expect(
            compile_config(config) is not None,
            "the VAE is not compiled: compile it inside build_vae with keras.optimizers.Adam(learning_rate)",
        )
        rate = _learning_rate(config)
        expect(
            rate is not None,
            "the optimizer has no learning rate: compile with keras.optimizers.Adam(learning_rate)",
        )
        expect_close(
            "the learning rate",
            rate,
            LEARNING_RATE,
            atol=1e-9,
            hint="pass learning_rate to the optimizer",
        )
        expect_ran(data, "vae.fit(images, None, epochs=1, batch_size=8)")

    return [(2, "the VAE's wiring and one training step", check)]


PARTS = (
    HiddenPart(1, ("build_encoder",), probe_encoder_hidden, verdict_encoder),
    HiddenPart(3, ("build_decoder",), probe_decoder_hidden, verdict_decoder),
    HiddenPart(5, ("build_vae",), probe_vae_model_hidden, verdict_vae_model),
)
"""The hidden test cells judged here."""
