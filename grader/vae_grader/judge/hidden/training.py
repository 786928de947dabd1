"""Verdicts of parts 6 (the data) and 7 (the trained model's reconstructions).

Kept together because both compare with MNIST read by the grader itself (``mnist``): ``vae_grader.judge.rulings``
reads it before these verdicts run, so a grader without MNIST flags the cell for manual grading
instead of failing the student. The quality threshold and the diagnosis of an untrained model are
calibrated constants, documented where they are defined. What part 7 calls "trained", and what no check
can tell apart from it, is written down in docs/part7-trained.md.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from course.checks import Check, expect, expect_close, expect_ran, expect_shape
from course.selfcheck.probe import load_saved, to_numpy
from vae_grader.judge.hidden import inputs as hp
from vae_grader.judge.hidden.inputs import model_step, preprocess_input, probing
from vae_grader.judge.hidden.part import HiddenPart


# --- the probes, sent into the kernel one at a time (after ``inputs``) ------------------------------


def probe_data_hidden(preprocess: Any, x_train: Any, x_test: Any) -> dict[str, Any]:
    rec = probing.Recorder()
    out = rec.attempt("preprocess(images)", lambda: np.asarray(preprocess(preprocess_input())))
    if out is not None and out.dtype != object:
        rec["preprocessed"] = out
    for name, value in (("x_train", x_train), ("x_test", x_test)):
        head = np.asarray(value)[:100]
        if head.dtype != object:
            rec[f"{name}.head"] = head
    return rec.data


def probe_training_hidden(encoder: Any, decoder: Any) -> dict[str, Any]:
    rec = probing.Recorder()
    model_step(rec, "encoder", "the trained encoder", lambda: encoder)
    model_step(rec, "decoder", "the trained decoder", lambda: decoder)
    return rec.data


# --- part 6 -----------------------------------------------------------------------------------------


@functools.cache
def mnist() -> tuple[np.ndarray, np.ndarray]:
    import course

    (x_train, _), (x_test, _) = course.load_mnist()
    return x_train, x_test


def verdict_data(data: dict[str, Any]) -> list[Check]:
    """preprocess() on known pixels; x_train and x_test as preprocess() scales MNIST, in MNIST's order.

    One slip, one check: a preprocess() that divides by another number fails the preprocess() check, which names
    the divisor, and the arrays are then compared with MNIST scaled the way that preprocess() scales it, so
    the order check judges the order only."""
    from course.selfcheck.part6_data import divisor_found, scale_hint

    pixels = hp.preprocess_input()[0, [0, 0, 14, 14], [0, 14, 0, 14]]  # 0, 255, 51, 102

    def preprocessed() -> np.ndarray:
        expect_ran(data, "preprocess(images)")
        out = np.asarray(data.get("preprocessed", np.zeros(0)))
        expect_shape("preprocess() of 3 images", out.shape, (3, 28, 28, 1))
        return out

    def preprocess() -> None:
        out = preprocessed()
        expect(out.dtype == np.float32, f"preprocess() returns {out.dtype}; expected float32")
        values = out[0, [0, 0, 14, 14], [0, 14, 0, 14], 0]
        divisor = divisor_found(values, pixels)
        expect(
            divisor is None or abs(divisor - 255.0) <= 255.0 * 1e-5,
            f"preprocess() of pixel values 0, 255, 51, 102 is "
            f"{', '.join(f'{v:.4g}' for v in np.asarray(values, np.float64))}: the pixels are "
            f"{scale_hint(divisor or 255.0)}",
        )
        expect_close(
            "preprocess() of pixel values 0, 255, 51, 102",
            values,
            pixels / 255.0,
            atol=1e-6,
            hint="scale by 1/255",
        )

    def student_divisor() -> float:
        """The divisor preprocess() uses, read from its output on the known pixels (255 when there is none)."""
        try:
            out = preprocessed()
        except AssertionError:
            return 255.0
        return divisor_found(out[0, [0, 0, 14, 14], [0, 14, 0, 14], 0], pixels) or 255.0

    def order() -> None:
        reference_train, reference_test = mnist()
        divisor = student_divisor()
        for name, reference in (("x_train", reference_train), ("x_test", reference_test)):
            head = data.get(f"{name}.head")
            expect(head is not None, f"{name} is not an array of images")
            expected = (reference[:100] / divisor)[..., None]
            actual = np.asarray(head, dtype=np.float64)
            if actual.shape == expected.shape and bool(
                np.all(np.isfinite(actual))
                and np.allclose(actual, expected, atol=1e-6 * 255 / divisor)
            ):
                continue
            found = divisor_found(actual, reference[: len(actual)]) if len(actual) == 100 else None
            expect(
                found is None,
                f"{name} holds the MNIST {'training' if name == 'x_train' else 'test'} images in their original "
                f"order, but not as preprocess() scales them: {name} is MNIST divided by {found or 0:.6g}, "
                f"preprocess() divides by {divisor:.6g}; make {name} with preprocess()",
            )
            expect_close(
                f"{name} (first 100 images)",
                head,
                expected,
                atol=1e-6 * 255 / divisor,
                hint=f"{name} must be the MNIST {'training' if name == 'x_train' else 'test'} images in their "
                "original order",
            )

    return [(1, "preprocess()", preprocess), (1, "x_train and x_test", order)]


# --- part 7 -----------------------------------------------------------------------------------------
#
# What "trained" means here (docs/part7-trained.md): the encoder and decoder of parts 1 and 3 (``architecture_problem``),
# whose reconstructions resemble their own inputs (``RATIO_THRESHOLD``) and whose reconstruction term of the VAE loss,
# computed here on x_val with z drawn from the encoder's own z_mean and z_log_var, is what a short training reaches
# (``course.selfcheck.part7_training.TRAINED_RECONSTRUCTION``). Nothing the kernel states is read.

RATIO_THRESHOLD = 0.90
"""Calibrated in docs/measurements.md ("Calibration"): master 0.59-0.81 over 10 seeds; input-ignoring models 1.00."""


UNTRAINED_SPREAD = 0.02
"""Below this, the reconstructions are the grey blur of an untrained decoder. Measured on the 200 quality
images (tests/test_fair_grading.py's base notebook, Keras 3.15, TF backend): the master's encoder and
decoder with fresh weights, seeds 0-4: mean pixel 0.50, mean per-pixel standard deviation across images
below 5e-5, error ratio 1.00; after the grading budget's training, seeds 0 and 1: mean pixel 0.131 / 0.123,
spread 0.070 / 0.076, ratio 0.684 / 0.589. A trained decoder that ignores its code also has no spread, but
its mean pixel is the share of ink (about 0.13), not 0.5."""

RECONSTRUCTION_DRAWS = 4
"""Draws of z per validation image for the reconstruction term (2,000 decoded images for the grading budget's
500); the spread of one draw's mean over 500 images measured 0.0001-0.0003 on the master."""
RECONSTRUCTION_SEED = 11
"""The grader's own noise for z (fixed, so a submission gets the same grade each time it is graded)."""


def diagnose_training(decoded: np.ndarray, decoder: Any) -> str:
    """Why reconstructions fail: a decoder stuck at sigmoid(0), one that never trained, or one that trained but
    ignores its code."""
    from course.selfcheck.part7_training import stuck_output

    stuck = stuck_output(decoded, decoder)
    if stuck is not None:
        return stuck
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
        "(an earlier part whose checks fail, e.g. the loss layer of part 4 or the decoder's output of part 3, is "
        "the first thing to fix)"
    )


def architecture_problem(data: dict[str, Any]) -> str | None:
    """What keeps the trained encoder and decoder from being the models parts 1 and 3 ask for, or None.

    Judged by the hidden part-1 checks (layers, parameter count, output) and the part-3 layer check, run on
    the trained models: the same canonical reading of a model (``course.architecture``), so a Sequential block
    or a separate activation layer reads as the layer it computes."""
    from vae_grader.judge.hidden.models import verdict_decoder, verdict_encoder

    for model, checks in (
        ("encoder", verdict_encoder(data)),
        ("decoder", verdict_decoder(data)[:1]),
    ):
        for _, _, check in checks:
            try:
                check()
            except AssertionError as exc:
                part = 1 if model == "encoder" else 3
                return (
                    f"the trained {model} is not the {model} part {part} asks for ({exc}). Part 7 judges the "
                    f"encoder and decoder of parts 1 and 3 after vae.fit, so another model earns nothing here: "
                    f"fix part {part} first"
                )
    return None


def sampled_reconstruction(encoder: Any, decoder: Any, images: np.ndarray) -> float:
    """The reconstruction term of the VAE loss (``loss.loss_terms``) for ``images``, z drawn as Sampling draws it
    from the encoder's own z_mean and z_log_var, averaged over ``RECONSTRUCTION_DRAWS`` draws of the grader's noise."""
    from vae_grader.judge.hidden.loss import loss_terms

    z_mean, z_log_var = (np.asarray(to_numpy(t), np.float64) for t in encoder(images)[:2])
    rng = np.random.default_rng(RECONSTRUCTION_SEED)
    total = 0.0
    for _ in range(RECONSTRUCTION_DRAWS):
        z = z_mean + np.exp(0.5 * z_log_var) * rng.standard_normal(z_mean.shape)
        decoded = to_numpy(decoder(z.astype("float32")))
        total += loss_terms(images, decoded, z_mean, z_log_var)["reconstruction"]
    return total / RECONSTRUCTION_DRAWS


def verdict_training(data: dict[str, Any]) -> list[Check]:
    from course import training_budget
    from course.architecture import shape_before_flattening
    from course.quality import reconstruction_report
    from course.selfcheck.part1_encoder import latent_hint
    from course.selfcheck.part7_training import TRAINED_RECONSTRUCTION

    def check() -> None:
        encoder = load_saved(data, "encoder", "the trained encoder")
        decoder = load_saved(data, "decoder", "the trained decoder")
        expect(len(encoder.outputs) == 2, "the trained encoder should output [z_mean, z_log_var]")
        # The reconstructions must pass through the 2-number code: an encoder that hands the image itself to the
        # decoder would "reconstruct" perfectly without learning anything.
        expect_shape(
            "the trained encoder's z_mean",
            encoder.outputs[0].shape,
            (None, 2),
            "the code has latent_dim = 2 numbers"
            if len(tuple(encoder.outputs[0].shape)) <= 2
            else latent_hint(encoder.outputs[0].shape) + " (part 1)",
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
        problem = architecture_problem(data)
        expect(problem is None, problem or "")
        _, reference_test = mnist()
        quality_x = (reference_test[:200] / 255.0).astype("float32")[..., None]
        z_mean, _ = encoder(quality_x)
        decoded = to_numpy(decoder(z_mean))
        report = reconstruction_report(quality_x, decoded)
        # Error ratio = mean cross-entropy of each reconstruction against its own input / against the other 199
        # inputs (1.00 = reconstructions carry no information about their input).
        expect(
            report.ratio < RATIO_THRESHOLD,
            f"your reconstructions resemble their own input hardly more than other digits (error ratio {report.ratio:.3f}; "
            "the reference solution reaches 0.59 to 0.81 after the same short training, and a model that ignores its "
            f"input scores 1.00): {diagnose_training(decoded, decoder)}.",
        )
        # The reconstruction term of the VAE loss on x_val as the notebook defines it, computed here. The KL term is
        # part 4's business: a part-4 slip must not cost part 7 (docs/part7-trained.md has the measurements).
        x_val = (reference_test[: training_budget().val_images] / 255.0).astype("float32")[
            ..., None
        ]
        reached = sampled_reconstruction(encoder, decoder, x_val)
        expect(
            bool(np.isfinite(reached)) and reached <= TRAINED_RECONSTRUCTION,
            f"the reconstruction term of the VAE loss on the validation images is {reached:.4g} per pixel (z drawn "
            f"from your encoder's z_mean and z_log_var); the reference solution reaches 0.208 to 0.234 after the same "
            f"short training, and always drawing the average digit gives 0.254: your encoder and decoder do not "
            f"reconstruct like a trained VAE ({diagnose_training(decoded, decoder)}).",
        )

    return [(5, "reconstruction quality of the trained encoder and decoder", check)]


PARTS = (
    HiddenPart(
        6, ("preprocess", "x_train", "x_test"), probe_data_hidden, verdict_data, reads_mnist=True
    ),
    HiddenPart(
        7, ("encoder", "decoder"), probe_training_hidden, verdict_training, reads_mnist=True
    ),
)
"""The hidden test cells judged here."""
