"""Part 3's self-check: build_decoder(2, (14, 14, 64)) maps latent codes to 28x28x1 images in [0, 1].

The verdict decodes extreme codes as well as ordinary ones (``EXTREME_CODE``), because only there does
an untrained decoder without a sigmoid leave [0, 1] on every seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from course import probing
from course.checks import Check, expect, expect_shape
from course.selfcheck.probe import Probe, load_saved, model_step, to_numpy


def probe_decoder(build_decoder: Callable[..., Any]) -> dict[str, Any]:
    rec = probing.Recorder()
    model_step(
        rec, "decoder", "build_decoder(2, (14, 14, 64))", lambda: build_decoder(2, (14, 14, 64))
    )
    return rec.data


EXTREME_CODE = 1000.0
"""The largest codes the decoder self-check decodes. An untrained ReLU network with zero biases scales with its
input, so a ReLU or linear last layer leaves [0, 1] by a margin that grows with the code. Measured (the
course's decoder with a ReLU last layer, seeds 0-19): the largest pixel at codes +-50 was 0.54-1.72, so
half the seeds stayed inside [0, 1]; at +-1000 it is 20 times that, 10.9 or more. A sigmoid stays in [0, 1]."""


DARKEST_PIXEL = 0.25
"""Some pixel of the decoded codes (extreme ones included) must be darker than this. Measured (the course's decoder,
untrained, seeds 0-19, 2026-12-07): the darkest pixel was at most 0.0043; with a ReLU feeding the final sigmoid it
is exactly 0.5 = sigmoid(0) on every seed, since the sigmoid only ever sees values >= 0."""


def verdict_decoder(data: dict[str, Any]) -> list[Check]:
    def check() -> None:
        dec = load_saved(data, "decoder", "build_decoder(2, (14, 14, 64))")
        expect_shape(
            "the decoder's input",
            dec.inputs[0].shape,
            (None, 2),
            "the input is a latent code of length latent_dim",
        )
        expect_shape(
            "the decoded image",
            dec.outputs[0].shape,
            (None, 28, 28, 1),
            "Reshape to shape_before_flattening, then one stride-2 Conv2DTranspose and a 1-filter Conv2D",
        )
        # Ordinary codes plus extreme ones (+-EXTREME_CODE): a ReLU or linear last layer leaves [0, 1] there even untrained.
        extreme = [
            [EXTREME_CODE, EXTREME_CODE],
            [-EXTREME_CODE, -EXTREME_CODE],
            [EXTREME_CODE, -EXTREME_CODE],
            [-EXTREME_CODE, EXTREME_CODE],
        ]
        codes = np.concatenate([np.random.default_rng(0).normal(0, 3, (16, 2)), extreme])
        pixels = to_numpy(dec(codes.astype("float32")))
        expect(
            bool(np.isfinite(pixels).all()) and pixels.min() >= 0.0 and pixels.max() <= 1.0,
            f"for codes between -{EXTREME_CODE:g} and {EXTREME_CODE:g} the decoded pixels range from "
            f"{np.nanmin(pixels):.3f} to {np.nanmax(pixels):.3f}; "
            "they must lie in [0, 1] for every code: end with a sigmoid",
        )
        expect(
            float(pixels.std()) > 1e-6,
            f"every decoded pixel is {float(pixels.flat[0]):.3f} whatever the code, so nothing can be learned "
            "(a softmax over one channel is always 1): end with a sigmoid",
        )
        expect(
            float(pixels.min()) < DARKEST_PIXEL,
            f"for codes between -{EXTREME_CODE:g} and {EXTREME_CODE:g} no decoded pixel is below "
            f"{float(pixels.min()):.3f}: what enters the sigmoid is never negative, so the decoder can never draw "
            "the dark background (a ReLU before the sigmoid; trained, it gets stuck at 0.5): end with "
            'Conv2D(1, 3, activation="sigmoid"), no ReLU after it',
        )

    return [(2, "the decoder's input, output and pixel range", check)]


CHECK = Probe(3, ("build_decoder",), probe_decoder, verdict_decoder)
"""The test cell ``test_decoder``: what the probe reads, the probe and its verdict."""
