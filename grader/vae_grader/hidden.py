"""Verdicts of the hidden tests, computed in the grader's process from probe data.

The probes (``vae_grader.hidden_probes``) run in the student's kernel and hand back data: models
saved in Keras's format, arrays, numbers. Everything here runs where no student code runs: models
are loaded with ``safe_mode`` and only standard layers, and every reference value is computed
here from the inputs the probe was given. Each hidden cell is split into checks with their own
points (nbgrader's partial credit), so one slip does not cost a whole part; the split is in the
notebook's points table.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from course.architecture import wiring_problem
from course.checks import (
    Check,
    Outcome,
    expect,
    expect_close,
    expect_layers,
    expect_param_count,
    expect_ran,
    expect_shape,
)
from course.selfcheck import Probe, _load, _numpy
from course.selfcheck import judge as _judge
from vae_grader import hidden_probes as hp


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


# --- part 2 -----------------------------------------------------------------------------------------


def _centred(what: str, draws: Any, mean: np.ndarray, rows: int) -> np.ndarray:
    """Draws of the expected shape, noisy, and centred on ``mean`` within 6 standard errors of their own spread."""
    z = np.asarray(draws, dtype=np.float64)
    expect_shape(what, z.shape, (rows, 2), "z has the shape of z_mean")
    if bool(np.isfinite(z).all()) and rows > 1 and np.allclose(z, z[:1]):
        raise AssertionError(
            f"{what}: all {rows} rows of one call are the same z, so the noise is shared across the batch: "
            "draw epsilon inside call() with the shape of z_mean (ops.shape(z_mean)), a fresh value per row"
        )
    expect(
        bool(np.isfinite(z).all()) and bool(np.all(z.std(axis=0) > 1e-3)),
        f"{what} are not noisy draws around z_mean",
    )
    error = np.abs(z.mean(axis=0) - mean) / (z.std(axis=0) / np.sqrt(rows))
    expect(bool(np.all(error < 6)), f"{what} are not centred on the z_mean they were given")
    return z


def verdict_sampling(data: dict[str, Any], salt: int = 0) -> list[Check]:
    given = hp.sampler_inputs(salt)

    def statistics() -> None:
        expect_ran(data, "Sampling(seed=7)([z_mean, z_log_var])")
        draws = np.asarray(data["draws"], dtype=np.float64)
        expect_shape("20,000 draws", draws.shape, (hp.N_DRAWS, 2), "z has the shape of z_mean")
        # Standard errors at 20,000 draws: at most 0.014 for the mean (sd up to 2), 1 % for a variance; the
        # tolerances are 5.7 and 8 standard errors. The exp(z_log_var) sampler squares the variances (ratios
        # 2.5-4 and 0.25-0.4 with these inputs); noise shared across the batch (drawn once) gives a variance near 0.
        ratio = draws.var(axis=0) / given["variance"]
        if np.all(ratio < 0.05):
            raise AssertionError(
                "all 20,000 draws of one call are (almost) the same point: draw the noise inside call() "
                "with the shape of z_mean (ops.shape(z_mean)), a fresh value for every row"
            )
        expect_close(
            "the variance of 20,000 draws / exp(z_log_var)",
            ratio,
            [1.0, 1.0],
            atol=0.08,
            hint="the variance must be exp(z_log_var), so the standard deviation is exp(0.5 * z_log_var)",
        )
        expect_close(
            "the mean of 20,000 draws",
            draws.mean(axis=0),
            given["mean"],
            atol=0.08,
            hint="the draws should be centred on z_mean",
        )

    def reproducible() -> None:
        expect_ran(data, "Sampling(seed=3)")
        first = _centred("a seeded layer's draws", data["seeded.first"], given["mean"], hp.N_SEEDED)
        expect_close(
            "a seeded layer's first draw, repeated",
            data["seeded.second"],
            first,
            atol=1e-6,
            hint="use keras.random with seed=self.seed_generator so runs are reproducible",
        )

    def gradients() -> None:
        expect_ran(data, "gradients of Sampling")
        m0 = np.tile(given["grad_mean"], (hp.N_SEEDED, 1))
        z = _centred(
            "the draws whose gradients were taken", data["grad.z"], given["grad_mean"], hp.N_SEEDED
        )
        expect_close(
            "d z / d z_mean",
            data["grad.mean"],
            np.ones_like(m0),
            atol=1e-5,
            hint="z must depend on z_mean additively",
        )
        expect_close(
            "d z / d z_log_var",
            data["grad.log_var"],
            0.5 * (z - m0),
            atol=1e-4,
            hint="with z = z_mean + exp(0.5 * z_log_var) * eps the gradient is 0.5 * (z - z_mean)",
        )

    def serialisable() -> None:
        expect_ran(data, "serialising Sampling(seed=9)")
        restored = data.get("restored.json") or {}
        expect(
            bool(restored.get("same_class")) and restored.get("seed") == 9,
            "Sampling does not survive serialisation with its seed (keep seed in get_config)",
        )
        # The template's get_config alone would pass the lines above: the rebuilt layer must also draw.
        draws = _centred(
            "the rebuilt layer's draws",
            restored.get("restored", []),
            given["grad_mean"],
            hp.N_SEEDED,
        )
        expect_close(
            "the rebuilt layer's first draw against the original's",
            draws,
            restored.get("original"),
            atol=1e-6,
            hint="a layer rebuilt with the same seed must draw the same first sample: seed the SeedGenerator with self.seed",
        )

    return [
        (2, "the statistics of many draws", statistics),
        (1, "reproducibility", reproducible),
        (0.5, "gradients", gradients),
        (0.5, "serialisation", serialisable),
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


# --- part 4 -----------------------------------------------------------------------------------------


def reference_vae_loss(
    x: np.ndarray, decoded: np.ndarray, z_mean: np.ndarray, z_log_var: np.ndarray, eps: float = 1e-7
) -> tuple[float, float]:
    """(total, reconstruction) as the notebook defines them, in float64."""
    terms = loss_terms(x, decoded, z_mean, z_log_var, eps)
    return terms["reconstruction"] + KL_WEIGHT * terms["kl"], terms["reconstruction"]


KL_WEIGHT = 5e-4


def loss_terms(
    x: np.ndarray, decoded: np.ndarray, z_mean: np.ndarray, z_log_var: np.ndarray, eps: float = 1e-7
) -> dict[str, float]:
    """The pieces of the loss, and of its plausible misreadings, in float64.

    ``reconstruction``: mean pixel cross-entropy; ``kl``: -mean over latent dims, mean over the batch;
    ``kl_sum``: the same summed over the latent dims; ``kl_batch_sum``: averaged over latent dims but
    summed over the batch.
    """
    x = x.reshape(len(x), -1).astype("float64")
    p = np.clip(decoded.reshape(len(decoded), -1).astype("float64"), eps, 1 - eps)
    pixels = -(x * np.log(p) + (1 - x) * np.log(1 - p))
    per_dim = -(1 + z_log_var - z_mean**2 - np.exp(z_log_var)).astype("float64")
    return {
        "reconstruction": float(np.mean(pixels)),
        "kl": float(np.mean(per_dim.mean(axis=-1))),
        "kl_sum": float(np.mean(per_dim.sum(axis=-1))),
        "kl_batch_sum": float(np.sum(per_dim.mean(axis=-1))),
        "pixels": float(x.shape[1]),
    }


LOSS_SLIPS: tuple[tuple[str, Callable[[dict[str, float]], float]], ...] = (
    (
        "the reconstruction term is summed over the 784 pixels of each image instead of averaged: take the mean over "
        "all pixels (the KL weight 5e-4 is set for a mean)",
        lambda t: t["pixels"] * t["reconstruction"] + KL_WEIGHT * t["kl"],
    ),
    (
        "the KL term is missing: add 5e-4 times -mean(1 + z_log_var - z_mean^2 - exp(z_log_var))",
        lambda t: t["reconstruction"],
    ),
    (
        "the KL term is added without its weight: multiply it by KL_WEIGHT (5e-4)",
        lambda t: t["reconstruction"] + t["kl"],
    ),
    (
        "the KL term is summed over the latent dimensions instead of averaged: take -mean over the last axis",
        lambda t: t["reconstruction"] + KL_WEIGHT * t["kl_sum"],
    ),
    (
        "the KL term is summed over the batch instead of averaged: take its mean over the batch",
        lambda t: t["reconstruction"] + KL_WEIGHT * t["kl_batch_sum"],
    ),
    (
        "the KL term is subtracted: the KL term must be added with a positive sign (-mean(1 + z_log_var - z_mean^2 - "
        "exp(z_log_var)) is never negative)",
        lambda t: t["reconstruction"] - KL_WEIGHT * t["kl"],
    ),
)
"""Measured diagnoses of part 4: each plausible slip and the loss it produces (tests/test_fair_grading.py
writes each one as a student would and checks that its message is the one named here)."""


def diagnose_loss(got: float, terms: dict[str, float]) -> str | None:
    """The slip whose loss matches ``got`` (relative tolerance 1e-4), if exactly one does."""
    matches = [
        message
        for message, formula in LOSS_SLIPS
        if abs(got - formula(terms)) <= 1e-4 * max(1.0, abs(got))
    ]
    return matches[0] if len(matches) == 1 else None


def verdict_loss_layer(data: dict[str, Any], salt: int = 0) -> list[Check]:
    what = "CustomVariationalLayer()([x, z_decoded, z_mean, z_log_var])"
    batches = hp.loss_batches(salt)

    def output() -> None:
        expect_ran(data, what)
        for index, (x, *_rest) in enumerate(batches):
            expect_close(
                "the layer's output",
                data[f"batch{index}.output"],
                x,
                atol=0,
                hint="return x unchanged",
            )

    def value() -> None:
        expect_ran(data, what)
        expect_ran(data, f"{what}.losses")
        for index, (inputs, (batch, latent)) in enumerate(zip(batches, hp.LOSS_BATCHES)):
            losses = np.asarray(data[f"batch{index}.losses"])
            expect(len(losses) == 1, f"exactly one loss should be added; found {len(losses)}")
            total, reconstruction = reference_vae_loss(*inputs)
            got = float(losses[0])
            if abs(got - total) <= 1e-5:
                continue
            slip = diagnose_loss(got, loss_terms(*inputs)) if np.isfinite(got) else None
            if slip is not None:
                raise AssertionError(
                    f"the loss for a batch of {batch} with latent_dim {latent} is {got:.5g}, expected "
                    f"{total:.5g}: {slip}"
                )
            expect(
                got > reconstruction,
                "the loss is below the reconstruction term alone: the KL term must be added with a "
                "positive sign (-mean(1 + z_log_var - z_mean^2 - exp(z_log_var)) is never negative)",
            )
            expect_close(
                f"the loss for a batch of {batch} with latent_dim {latent}",
                got,
                total,
                atol=1e-5,
                hint="reconstruction = mean pixel cross-entropy; KL = -mean over latent dims of (1 + z_log_var - "
                "z_mean^2 - exp(z_log_var)), averaged over the batch, weighted 5e-4",
            )

    return [(1, "the layer passes x through", output), (3, "the loss value", value)]


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


# --- part 8 -----------------------------------------------------------------------------------------


def verdict_manifold(data: dict[str, Any]) -> list[Check]:
    from scipy.stats import norm

    grid = norm.ppf(np.linspace(0.05, 0.95, 5))

    def image() -> np.ndarray:
        expect_ran(data, "build_manifold(decoder, n=5)")
        out = np.asarray(data.get("probe_image", np.zeros(0)))
        expect_shape(
            "build_manifold(decoder, n=5)",
            out.shape,
            (140, 140),
            "use n and digit_size, not fixed 15 and 28",
        )
        return out

    def layout() -> None:
        out = image()
        z0, z1 = (
            out[0::28, 0::28],
            out[0::28, 1::28],
        )  # pixels (0, 0) and (0, 1) of every tile hold its code
        codes = np.stack(np.meshgrid(grid, grid))
        if np.allclose(np.stack([z0, out[1::28, 0::28]]), codes, atol=1e-4) and not np.allclose(
            z1, codes[1], atol=1e-4
        ):
            raise AssertionError(
                "every tile is transposed inside itself (pixel (r, c) of a digit lands at (c, r), so the "
                "digits lie on their side); the tiles are in the right places: reorder the axes of the "
                "(n, n, 28, 28) digits to (row of tiles, pixel row, column of tiles, pixel column), "
                "e.g. transpose(0, 2, 1, 3), before the reshape"
            )
        if np.allclose(np.stack([z1, z0]), codes, atol=1e-4):
            raise AssertionError(
                "z[0] and z[1] are swapped: z[0] must change along a row (column j uses grid[j]) and "
                "z[1] down a column (row i uses grid[i])"
            )
        expect_close(
            "z[0] along the first row of tiles",
            z0[0],
            grid,
            atol=1e-4,
            hint="z[0] must change along a row (column j uses grid[j]); the grid is norm.ppf(np.linspace(0.05, 0.95, n))",
        )
        expect_close(
            "z[1] down the first column of tiles",
            z1[:, 0],
            grid,
            atol=1e-4,
            hint="z[1] must change down a column (row i uses grid[i])",
        )
        expect_close(
            "every tile's code",
            np.stack([z0, z1]),
            np.stack(np.meshgrid(grid, grid)),
            atol=1e-4,
            hint="tile (i, j) decodes z = (grid[j], grid[i])",
        )

    def batched() -> None:
        image()
        calls = data.get("probe_calls.json") or []
        expect(
            calls == [25],
            f"the decoder was called {len(calls)} time(s) with batch sizes {calls[:6]}; "
            "decode all n*n codes in one batched call",
        )

    def not_scrambled() -> None:
        expect_ran(data, "build_manifold(decoder, n=15)")
        smooth = np.asarray(data.get("smooth_image", np.zeros(0)), dtype=np.float64)
        expect_shape("build_manifold(decoder, n=15)", smooth.shape, (420, 420))
        tiles = smooth.reshape(15, 28, 15, 28).transpose(0, 2, 1, 3).reshape(15, 15, -1)
        near = np.mean(
            [np.linalg.norm(tiles[i, j] - tiles[i, j + 1]) for i in range(15) for j in range(14)]
        )
        far = np.mean(
            [np.linalg.norm(tiles[i, j] - tiles[i, j + 7]) for i in range(15) for j in range(8)]
        )
        expect(
            near < 0.5 * far,
            f"neighbouring tiles differ as much as distant ones ({near:.2f} vs {far:.2f}): the tiles are "
            "scrambled; check the reshape/transpose",
        )

    return [
        (2, "the grid and the layout", layout),
        (0.5, "one batched decoder call", batched),
        (0.5, "tiles in one piece", not_scrambled),
    ]


VERDICTS: Mapping[str, Callable[..., list[Check]]] = {
    "test_encoder_hidden": verdict_encoder,
    "test_sampling_hidden": verdict_sampling,
    "test_decoder_hidden": verdict_decoder,
    "test_loss_layer_hidden": verdict_loss_layer,
    "test_vae_model_hidden": verdict_vae_model,
    "test_data_hidden": verdict_data,
    "test_training_hidden": verdict_training,
    "test_manifold_hidden": verdict_manifold,
}


SALTED = ("test_sampling_hidden", "test_loss_layer_hidden")
"""Hidden cells whose inputs the grader draws afresh for every probe (``hidden_probes.SALT``)."""


def probe_spec(grade_id: str, salt: int = 0) -> Probe:
    """The hidden cell ``grade_id`` as a :class:`course.selfcheck.Probe`, its verdict judging the inputs of ``salt``."""
    part, names, function = hp.PROBES[grade_id]
    verdict = (
        functools.partial(VERDICTS[grade_id], salt=salt)
        if grade_id in SALTED
        else VERDICTS[grade_id]
    )
    return Probe(part, names, getattr(hp, function), verdict)


def judge(grade_id: str, data: dict[str, Any], salt: int = 0) -> Outcome:
    return _judge(probe_spec(grade_id, salt), data)


def check_here(grade_id: str, namespace: Mapping[str, Any]) -> None:
    """The master notebook's hidden cells (nbval, the instructor's own runs): probe and verdict in one process.

    When a submission is graded, the cell's source is never run: the grader probes the student's
    kernel and judges here (``vae_grader.judge``). This keeps the master runnable end to end.
    """
    from course.selfcheck import judge_here

    spec = probe_spec(grade_id)
    outcome = judge_here(spec, namespace)
    if not outcome.full:
        raise AssertionError("\n".join(outcome.failures))
    print(
        f"Part {spec.part} hidden tests passed ({outcome.points:g} of {outcome.max_points:g} points)."
    )
