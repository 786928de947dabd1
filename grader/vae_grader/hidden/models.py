"""Verdicts of the parts that build models: 1 (the encoder), 3 (the decoder) and 5 (the VAE).

Kept together because they judge the same kind of probe data, a model saved in Keras's format and
loaded here (``safe_mode``, standard layers only), against the architecture the notebook asks for.
The expected layer lists and parameter counts exist only here, never in the student's kernel
(tests/test_judge_attacks.py greps everything the kernel could see for them).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from course.architecture import wiring_problem
from course.checks import (
    Check,
    expect,
    expect_close,
    expect_layers,
    expect_param_count,
    expect_ran,
    expect_shape,
)
from course.selfcheck import _load, _numpy


def _model(data: dict[str, Any], key: str, what: str) -> Callable[[], Any]:
    """Load a probed model once, on first use (a failure to load fails every check that needs it)."""
    return functools.cache(lambda: _load(data, key, what))


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
        expect_shape("z_mean for a batch of 3 images", _numpy(z_mean).shape, (3, 2))

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


def verdict_vae_model(data: dict[str, Any]) -> list[Check]:
    def check() -> None:
        expect_ran(data, "build_vae")
        expect_ran(data, "model.get_config()", "build_vae should return a functional keras.Model")
        config = data.get("config.json")
        expect(isinstance(config, dict), "build_vae should return a functional keras.Model")
        encoder, decoder = (data.get("given.json") or ["", ""])[:2]
        problem = wiring_problem(config, str(encoder), str(decoder))
        expect(problem is None, problem or "")
        expect_ran(data, "reading the optimizer (compile the model inside build_vae)")
        rate = (data.get("optimizer.json") or {}).get("learning_rate")
        expect(
            isinstance(rate, (int, float)),
            "the optimizer has no learning rate: compile with keras.optimizers.Adam(learning_rate)",
        )
        expect_close(
            "the learning rate",
            float(rate),
            3e-3,
            atol=1e-9,
            hint="pass learning_rate to the optimizer",
        )
        expect_ran(data, "vae.fit(images, None, epochs=1, batch_size=8)")
        expect(
            bool(np.isfinite(data["fit_loss"])),
            "training the VAE for one step gave a non-finite loss",
        )
        expect(
            bool(data["decoder_changed"]),
            "one training step did not change the decoder's weights: is the decoder connected to the loss?",
        )

    return [(2, "the VAE's wiring and one training step", check)]
