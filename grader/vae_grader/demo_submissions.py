"""The demo class: sample submissions that ``make demo`` and the test suite grade, with their manifest.

Every submission is built from the release and the master (submission_kit.filled), so the set
follows the master when it changes; a mistake whose text no longer matches the master raises at
once. Each has one plausible mistake in one graded part. The expected points ARE the manifest:
``lost`` names each graded cell that scores nothing and why, reasoned from the tests and checked
by grading (tests/test_pipeline.py asserts every cell exactly). Points per cell are read from the
master, never written here.

Render the manifest with ``python -m vae_grader.demo --manifest`` (grader/vae_grader/demo_manifest.md
is that output, kept in sync by a test).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import nbformat

from vae_grader.paths import MASTER
from vae_grader.submission_kit import PARTS, Submission, filled, full_points, test_cells

_MASTER = nbformat.read(MASTER, as_version=4)

NOT_ATTEMPTED = "not attempted: the part still raises NotImplementedError"


def _part_lost(part: str, visible: str, hidden: str | None = None) -> dict[str, str]:
    """Reasons for losing both test cells of ``part`` (``hidden`` defaults to ``visible``)."""
    visible_id, hidden_id = test_cells(part)
    return {visible_id: visible, hidden_id: hidden or visible}


def _not_attempted(parts: Iterable[str]) -> dict[str, str]:
    return {cell: NOT_ATTEMPTED for part in parts for cell in test_cells(part)}


def sample(
    student: str,
    description: str,
    parts: Iterable[str] = PARTS,
    mistakes: Mapping[str, tuple[str, str]] | None = None,
    lost: Mapping[str, str] | None = None,
    feedback: tuple[str, ...] = (),
    partial: Mapping[str, tuple[float, str]] | None = None,
) -> Submission:
    """A submission whose expected points are full marks minus the cells in ``lost`` (0) and ``partial``
    (``grade_id -> (points kept, why the rest is lost)``)."""
    parts = tuple(parts)
    lost = {**_not_attempted(p for p in PARTS if p not in parts), **dict(lost or {})}
    unknown = set(lost) - {cell for part in PARTS for cell in test_cells(part)}
    if unknown:
        raise ValueError(f"{student}: unknown graded cells {sorted(unknown)}")
    return Submission(
        student=student,
        description=description,
        build=filled(parts, mistakes),
        expected=full_points(_MASTER, PARTS, minus=lost, partial={c: kept for c, (kept, _) in (partial or {}).items()}),
        expected_feedback=feedback,
        lost=lost,
        partial={c: why for c, (_, why) in (partial or {}).items()},
    )


# When the model cannot be trained (a part before training is broken), both training tests fail.
_NOT_TRAINED = {
    "test_training": "no trained model: `vae` (or `history`) was never defined because an earlier cell failed",
    "test_training_hidden": "no trained model, so reconstructions do not resemble their inputs",
}

SUBMISSIONS: list[Submission] = [
    sample("complete", "every part filled in from the master solution"),
    sample("untouched", "the release exactly as handed out", parts=(), feedback=("not attempted",)),
    sample(
        "half_done", "encoder and sampling done, the rest not started", parts=("encoder", "sampling"),
        feedback=("not attempted",),
    ),
    # Training still works at the grading seed (reconstruction error ratio 0.67, threshold 0.90;
    # complete: 0.64), so only the sampler's hidden test is lost. That part depends on the seed:
    # at seeds 0-5 the ratio was 0.67 / 0.95 / 0.70 / 0.93 / 0.98 / 0.98 (VAE_SEED, grading budget
    # of course/budget.py at the time). Seeded grading is deterministic on one machine; re-check
    # this line when the grading budget or seed changes. The mistake itself is the point of the demo.
    sample(
        "sampler_exp_logvar",
        "the original sampler: exp(z_log_var) as the standard deviation instead of exp(0.5 * z_log_var)",
        mistakes={"sampling": ("ops.exp(0.5 * z_log_var)", "ops.exp(z_log_var)")},
        partial={"test_sampling_hidden": (1.5, "the statistics of 20,000 draws (2 points) and the gradient with respect "
                                               "to z_log_var (0.5) fail: exp(z_log_var) as the s.d. squares the variance "
                                               "(ratios 4 and 1/4); reproducibility and serialisation pass; training still works")},
        feedback=("the variance of 20,000 draws",),
    ),
    sample(
        "kl_sign_flipped",
        "the KL term added with the wrong sign (kl = mean(...) instead of -mean(...))",
        mistakes={"loss_layer": ("kl = -ops.mean(", "kl = ops.mean(")},
        lost={
            "test_training": "training diverges to NaN: with the KL term subtracted, growing exp(z_log_var) "
                             "lowers the loss without bound",
            "test_training_hidden": "the diverged model reconstructs NaN",
            "test_manifold": "the diverged decoder draws NaN pixels",
        },
        partial={"test_loss_layer_hidden": (1, "the loss value (3 points) is below the reconstruction term: the KL term is "
                                                "subtracted; the layer still passes x through (1 point)")},
        feedback=("the KL term must be added with a positive sign", "training diverged"),
    ),
    # "Without its sigmoid": softmax in its place, the classifier habit. Softmax over one channel is
    # 1.0 everywhere, so nothing trains, whatever the training threshold. The literal variant (no
    # activation) was measured and left out as too close to call: the cross-entropy clips the linear
    # output and training half works (reconstruction error ratio 0.80 / 0.72 / 0.88 at seeds 0 / 1 / 2
    # while the threshold was being calibrated between 0.85 and 0.90; activation="relu" trains
    # identically, the clip kills the same gradients).
    sample(
        "decoder_no_sigmoid",
        "the decoder's last Conv2D with softmax instead of sigmoid (softmax over one channel is 1.0 everywhere)",
        mistakes={"decoder": ('activation="sigmoid")', 'activation="softmax")')},
        lost={
            "test_decoder": "every decoded pixel is 1.0 whatever the code: a softmax over one channel is always 1",
            "test_training": "nothing learns through a constant output: val_loss 14, far above 0.5",
            "test_training_hidden": "every reconstruction is the same blank image (error ratio 1.00)",
            "test_manifold": "the manifold is one flat image",
        },
        partial={"test_decoder_hidden": (1, "the layers (2 points): layer 4 has activation 'softmax', expected "
                                             "'sigmoid'; latent_dim and shape_before_flattening are used (1 point)")},
        feedback=("expected activation='sigmoid'", "a softmax over one channel"),
    ),
    sample(
        "encoder_stride1",
        "the second encoder convolution with stride 1 instead of 2",
        mistakes={"encoder": ('activation="relu", strides=2)', 'activation="relu")')},
        lost={
            "test_encoder_hidden": "layer 2 has strides (1, 1), expected (2, 2)",
            **_NOT_TRAINED,
            "test_manifold": "the decoder built from the 28x28 feature map makes 56x56 digits, so build_manifold fails "
                             "and `manifold` is never defined",
        },
        feedback=("expected strides=(2, 2)",),
    ),
    sample(
        "data_unscaled",
        "pixels left in 0..255 (no division by 255)",
        mistakes={"data": ('(images.astype("float32") / 255.0)', 'images.astype("float32")')},
        lost={
            "test_data": "x_train ranges up to 255, expected [0, 1]",
            "test_data_hidden": "preprocess() returns 255 for a white pixel, expected 1.0",
            # Cross-entropy against 0..255 targets is negative (val_loss about -480): the visible
            # training check says so and points back at part 6.
            "test_training": "val_loss is negative (about -480): the self-check asks whether the images are scaled to [0, 1]",
            "test_training_hidden": "trained on 0..255 targets, reconstructions of [0, 1] test images are no "
                                    "closer to their own input than to other digits (error ratio 1.00)",
        },
        feedback=("divide by 255", "are the images scaled to [0, 1]"),
    ),
    sample(
        "manifold_linspace",
        "the manifold grid evenly spaced in z (linspace from -2 to 2) instead of through the inverse normal CDF",
        mistakes={"manifold": ("grid = norm.ppf(np.linspace(0.05, 0.95, n))", "grid = np.linspace(-2, 2, n)")},
        partial={"test_manifold_hidden": (1, "the grid and layout (2 points): the codes along the first row are not "
                                              "norm.ppf(linspace(0.05, 0.95, n)); one batched call and unscrambled tiles pass")},
        feedback=("norm.ppf(np.linspace(0.05, 0.95, n))",),
    ),
    sample(
        "manifold_swapped",
        "the manifold with rows and columns swapped (z[1] changes along a row)",
        mistakes={"manifold": ("z0, z1 = np.meshgrid(grid, grid)", "z1, z0 = np.meshgrid(grid, grid)")},
        partial={"test_manifold_hidden": (1, "the grid and layout (2 points): z[0] and z[1] are swapped; one batched "
                                              "call and unscrambled tiles pass")},
        feedback=("z[0] and z[1] are swapped",),
    ),
    sample(
        "loss_returns_reconstruction",
        "the loss layer returns the reconstruction instead of passing its input x through",
        mistakes={"loss_layer": ("return x", "return z_decoded")},
        lost={
            "test_loss_layer": "the layer's output is the reconstruction, not x",
        },
        partial={"test_loss_layer_hidden": (3, "the layer's output (1 point) is the reconstruction, not x; the loss "
                                                "value is right (3 points)")},
        feedback=("not the reconstruction",),
    ),
]
