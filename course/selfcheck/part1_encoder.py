"""Part 1's self-check: build_encoder(2) and build_encoder(3) have the inputs, outputs and feature map the text asks for.

The probe only builds and saves the two models; the verdict reads their shapes from the saved copies, so it
needs nothing from the kernel but standard Keras layers. ``ENCODER_FEATURE_MAP`` lives beside the verdict
that judges it, with the measurements behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


from course import probing
from course.checks import Check, expect, expect_shape
from course.selfcheck.probe import Probe, load_saved, model_step


def probe_encoder(build_encoder: Callable[..., Any]) -> dict[str, Any]:
    rec = probing.Recorder()
    model_step(rec, "encoder_2", "build_encoder(2)", lambda: build_encoder(2))
    model_step(rec, "encoder_3", "build_encoder(3)", lambda: build_encoder(3))
    return rec.data


ENCODER_FEATURE_MAP = (14, 14, 64)
"""What the encoder's Flatten receives: only the second convolution halves 28x28 (stride 2, padding "same").
Measured on the usual slips: stride 1 gives (28, 28, 64), padding="valid" everywhere gives (10, 10, 64)."""


def latent_hint(shape: Any) -> str:
    """What to fix when a latent output has the wrong shape: an image-shaped one means Dense met a feature map."""
    if len(tuple(shape)) > 2:
        return (
            "the feature map was not flattened before the Dense layers (Dense acts on the last axis only, so "
            "each pixel got its own code): put Flatten() after the last convolution"
        )
    return "check latent_dim"


def verdict_encoder(data: dict[str, Any]) -> list[Check]:
    from course.architecture import shape_before_flattening

    def check() -> None:
        enc = load_saved(data, "encoder_2", "build_encoder(2)")
        expect(
            len(enc.outputs) == 2,
            f"the encoder should have two outputs, [z_mean, z_log_var]; it has {len(enc.outputs)}",
        )
        expect_shape(
            "the encoder's input",
            enc.inputs[0].shape,
            (None, 28, 28, 1),
            "use keras.Input(shape=(28, 28, 1))",
        )
        expect_shape("z_mean", enc.outputs[0].shape, (None, 2), latent_hint(enc.outputs[0].shape))
        expect_shape(
            "z_log_var", enc.outputs[1].shape, (None, 2), latent_hint(enc.outputs[1].shape)
        )
        try:
            feature_map = shape_before_flattening(enc)
        except ValueError:
            raise AssertionError(
                "the encoder has no Flatten layer: flatten the last feature map before Dense 32"
            ) from None
        expect_shape(
            "the feature map before Flatten",
            (None, *feature_map),
            (None, *ENCODER_FEATURE_MAP),
            "only the second convolution has stride 2 (28x28 -> 14x14), and every convolution uses "
            'padding="same"; the encoder then has 494,244 parameters, as the text says',
        )
        enc3 = load_saved(data, "encoder_3", "build_encoder(3)")
        expect_shape(
            "z_mean from build_encoder(3)",
            enc3.outputs[0].shape,
            (None, 3),
            "use the latent_dim argument, not a fixed 2",
        )

    return [(2, "the encoder's inputs, outputs and feature map", check)]


CHECK = Probe(1, ("build_encoder",), probe_encoder, verdict_encoder)
"""The test cell ``test_encoder``: what the probe reads, the probe and its verdict."""
