"""Verdicts of parts 6 (the data) and 7 (the trained model's reconstructions).

Kept together because both compare with MNIST read by the grader itself (``mnist``): ``vae_grader.judge``
reads it before these verdicts run, so a grader without MNIST flags the cell for manual grading
instead of failing the student. The quality threshold and the diagnosis of an untrained model are
calibrated constants, documented where they are defined.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from course.checks import Check, expect, expect_close, expect_ran, expect_shape
from course.selfcheck import _load, _numpy


# --- part 6 -----------------------------------------------------------------------------------------


@functools.cache
def mnist() -> tuple[np.ndarray, np.ndarray]:
    import course

    (x_train, _), (x_test, _) = course.load_mnist()
    return x_train, x_test


def verdict_data(data: dict[str, Any]) -> list[Check]:
    def preprocess() -> None:
        expect_ran(data, "preprocess(images)")
        out = np.asarray(data.get("preprocessed", np.zeros(0)))
        expect_shape("preprocess() of 3 images", out.shape, (3, 28, 28, 1))
        expect(out.dtype == np.float32, f"preprocess() returns {out.dtype}; expected float32")
        expect_close(
            "preprocess() of pixel values 0, 255, 51, 102",
            out[0, [0, 0, 14, 14], [0, 14, 0, 14], 0],
            [0.0, 1.0, 0.2, 0.4],
            atol=1e-6,
            hint="scale by 1/255",
        )

    def order() -> None:
        reference_train, reference_test = mnist()
        for name, reference in (("x_train", reference_train), ("x_test", reference_test)):
            head = data.get(f"{name}.head")
            expect(head is not None, f"{name} is not an array of images")
            expect_close(
                f"{name} (first 100 images)",
                head,
                (reference[:100] / 255.0)[..., None],
                atol=1e-6,
                hint=f"{name} must be the MNIST {'training' if name == 'x_train' else 'test'} images in their original order",
            )

    return [(1, "preprocess()", preprocess), (1, "x_train and x_test", order)]


# --- part 7 -----------------------------------------------------------------------------------------

RATIO_THRESHOLD = 0.90
"""Calibrated in README ("Calibration"): master 0.59-0.81 over 10 seeds; input-ignoring models 1.00."""


UNTRAINED_SPREAD = 0.02
"""Below this, the reconstructions are the grey blur of an untrained decoder. Measured on the 200 quality
images (tests/test_fair_grading.py's base notebook, Keras 3.15, TF backend): the master's encoder and
decoder with fresh weights, seeds 0-4: mean pixel 0.50, mean per-pixel standard deviation across images
below 5e-5, error ratio 1.00; after the grading budget's training, seeds 0 and 1: mean pixel 0.131 / 0.123,
spread 0.070 / 0.076, ratio 0.684 / 0.589. A trained decoder that ignores its code also has no spread, but
its mean pixel is the share of ink (about 0.13), not 0.5."""


def diagnose_training(decoded: np.ndarray) -> str:
    """Why reconstructions fail: a decoder that never trained, or one that trained but ignores its code."""
    mean, spread = float(np.mean(decoded)), float(np.mean(np.std(decoded, axis=0)))
    if spread < UNTRAINED_SPREAD and abs(mean - 0.5) < 0.1:
        return (
            f"your encoder and decoder look untrained: every reconstruction is the same grey blur (mean pixel "
            f"{mean:.2f}, as for fresh weights; a trained decoder averages about 0.13). Did vae.fit run to the end? "
            "If the training cell raised an error (fit needs the preprocessed x_train, shape (N, 28, 28, 1)) or was "
            "stopped at the grader's time limit, fix that first"
        )
    return (
        "check that training ran on the preprocessed images and that the decoder is trained through the loss "
        "(an earlier self-check that fails, e.g. the decoder's output in part 3, is the first thing to fix)"
    )


def verdict_training(data: dict[str, Any]) -> list[Check]:
    from course.architecture import shape_before_flattening
    from course.quality import reconstruction_report

    def check() -> None:
        encoder = _load(data, "encoder", "the trained encoder")
        decoder = _load(data, "decoder", "the trained decoder")
        expect(len(encoder.outputs) == 2, "the trained encoder should output [z_mean, z_log_var]")
        # The reconstructions must pass through the 2-number code: an encoder that hands the image itself to the
        # decoder would "reconstruct" perfectly without learning anything.
        expect_shape(
            "the trained encoder's z_mean",
            encoder.outputs[0].shape,
            (None, 2),
            "the code has latent_dim = 2 numbers",
        )
        expect_shape(
            "the trained decoder's input",
            decoder.inputs[0].shape,
            (None, 2),
            "the decoder reads a code of 2 numbers",
        )
        shape = tuple(decoder.outputs[0].shape)
        if shape != (None, 28, 28, 1):
            try:
                feature_map = shape_before_flattening(encoder)
            except ValueError:
                feature_map = None
            if feature_map is not None and feature_map != (14, 14, 64):
                raise AssertionError(
                    f"the trained decoder makes images of shape {shape[1:]}, not (28, 28, 1), because it mirrors your "
                    f'encoder\'s feature map {feature_map} (expected (14, 14, 64)): fix part 1 first (padding="same" in '
                    "every convolution, stride 2 only in the second); nothing could be trained with these shapes"
                )
        expect_shape(
            "the trained decoder's output",
            shape,
            (None, 28, 28, 1),
            "fix part 3 first: the decoder must end in a 28x28x1 image",
        )
        _, reference_test = mnist()
        quality_x = (reference_test[:200] / 255.0).astype("float32")[..., None]
        z_mean, _ = encoder(quality_x)
        decoded = _numpy(decoder(z_mean))
        report = reconstruction_report(quality_x, decoded)
        # Error ratio = mean cross-entropy of each reconstruction against its own input / against the other 199
        # inputs (1.00 = reconstructions carry no information about their input).
        expect(
            report.ratio < RATIO_THRESHOLD,
            f"your reconstructions resemble their own input hardly more than other digits (error ratio {report.ratio:.3f}; "
            "the reference solution reaches 0.59 to 0.81 after the same short training, and a model that ignores its "
            f"input scores 1.00): {diagnose_training(decoded)}.",
        )

    return [(5, "reconstruction quality of the trained encoder and decoder", check)]
