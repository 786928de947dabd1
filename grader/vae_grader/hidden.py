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

from course.checks import (
    Check, Outcome, expect, expect_close, expect_layers, expect_param_count, expect_ran, expect_shape,
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
        expect_shape("the feature map before Flatten", (None, *shape_before_flattening(encoder())), (None, 14, 14, 64),
                     "only the second convolution has stride 2")

    def parameters() -> None:
        expect_param_count("the encoder", encoder(), 494_244)
        z_mean, _ = encoder()(np.zeros((3, 28, 28, 1), "float32"))
        expect_shape("z_mean for a batch of 3 images", _numpy(z_mean).shape, (3, 2))

    return [(2, "the encoder's layers", layers), (1, "the encoder's parameters and output", parameters)]


# --- part 2 -----------------------------------------------------------------------------------------


def verdict_sampling(data: dict[str, Any]) -> list[Check]:
    def statistics() -> None:
        expect_ran(data, "Sampling(seed=7)([z_mean, z_log_var])")
        draws = np.asarray(data["draws"], dtype=np.float64)
        expect_shape("20,000 draws", draws.shape, (hp.N_DRAWS, 2), "z has the shape of z_mean")
        # Standard errors at 20,000 draws: 0.014 for the mean (sd 2), 1 % for a variance; the tolerances are 5.7
        # and 8 standard errors. The exp(z_log_var) sampler gives variance ratios 4 and 1/4; noise shared across
        # the batch (drawn once) gives a variance near 0.
        ratio = draws.var(axis=0) / np.array(hp.SAMPLER_VARIANCE)
        if np.all(ratio < 0.05):
            raise AssertionError("all 20,000 draws of one call are (almost) the same point: draw the noise inside call() "
                                 "with the shape of z_mean (ops.shape(z_mean)), a fresh value for every row")
        expect_close("the variance of 20,000 draws / exp(z_log_var)", ratio, [1.0, 1.0], atol=0.08,
                     hint="the variance must be exp(z_log_var), so the standard deviation is exp(0.5 * z_log_var)")
        expect_close("the mean of 20,000 draws", draws.mean(axis=0), list(hp.SAMPLER_MEAN), atol=0.08,
                     hint="the draws should be centred on z_mean")

    def reproducible() -> None:
        expect_ran(data, "Sampling(seed=3)")
        expect_close("a seeded layer's first draw, repeated", data["seeded.second"], data["seeded.first"], atol=1e-6,
                     hint="use keras.random with seed=self.seed_generator so runs are reproducible")

    def gradients() -> None:
        expect_ran(data, "gradients of Sampling")
        m0 = np.array([hp.GRAD_MEAN] * 8)
        expect_close("d z / d z_mean", data["grad.mean"], np.ones_like(m0), atol=1e-5, hint="z must depend on z_mean additively")
        expect_close("d z / d z_log_var", data["grad.log_var"], 0.5 * (np.asarray(data["grad.z"], np.float64) - m0), atol=1e-4,
                     hint="with z = z_mean + exp(0.5 * z_log_var) * eps the gradient is 0.5 * (z - z_mean)")

    def serialisable() -> None:
        expect_ran(data, "serialising Sampling(seed=9)")
        restored = data.get("restored.json") or {}
        expect(bool(restored.get("same_class")) and restored.get("seed") == 9,
               "Sampling does not survive serialisation with its seed (keep seed in get_config)")

    return [(2, "the statistics of many draws", statistics), (1, "reproducibility", reproducible),
            (0.5, "gradients", gradients), (0.5, "serialisation", serialisable)]


# --- part 3 -----------------------------------------------------------------------------------------

DECODER_LAYERS = [
    {"type": "Dense", "units": 14 * 14 * 64, "activation": "relu"},
    {"type": "Reshape", "target_shape": (14, 14, 64)},
    {"type": "Conv2DTranspose", "filters": 32, "kernel_size": (3, 3), "strides": (2, 2), "padding": "same",
     "activation": "relu"},
    {"type": "Conv2D", "filters": 1, "kernel_size": (3, 3), "strides": (1, 1), "padding": "same", "activation": "sigmoid"},
]


def verdict_decoder(data: dict[str, Any]) -> list[Check]:
    decoder = _model(data, "decoder", "build_decoder(2, (14, 14, 64))")
    small = _model(data, "decoder_small", "build_decoder(3, (7, 7, 8))")

    def layers() -> None:
        expect_layers("the decoder", decoder(), DECODER_LAYERS)
        expect_param_count("the decoder", decoder(), 56_385)

    def arguments() -> None:
        expect_shape("build_decoder(3, (7, 7, 8))'s input", small().inputs[0].shape, (None, 3), "use latent_dim")
        expect_shape("build_decoder(3, (7, 7, 8))'s output", small().outputs[0].shape, (None, 14, 14, 1),
                     "use shape_before_flattening and latent_dim instead of fixed numbers")

    return [(2, "the decoder's layers", layers), (1, "latent_dim and shape_before_flattening used", arguments)]


# --- part 4 -----------------------------------------------------------------------------------------


def reference_vae_loss(x: np.ndarray, decoded: np.ndarray, z_mean: np.ndarray, z_log_var: np.ndarray,
                       eps: float = 1e-7) -> tuple[float, float]:
    """(total, reconstruction) as the notebook defines them, in float64."""
    x = x.reshape(len(x), -1).astype("float64")
    p = np.clip(decoded.reshape(len(decoded), -1).astype("float64"), eps, 1 - eps)
    reconstruction = float(np.mean(-(x * np.log(p) + (1 - x) * np.log(1 - p))))
    kl = -np.mean(1 + z_log_var - z_mean**2 - np.exp(z_log_var), axis=-1)
    return reconstruction + 5e-4 * float(np.mean(kl)), reconstruction


def verdict_loss_layer(data: dict[str, Any]) -> list[Check]:
    what = "CustomVariationalLayer()([x, z_decoded, z_mean, z_log_var])"
    batches = hp.loss_batches()

    def output() -> None:
        expect_ran(data, what)
        for index, (x, *_rest) in enumerate(batches):
            expect_close("the layer's output", data[f"batch{index}.output"], x, atol=0, hint="return x unchanged")

    def value() -> None:
        expect_ran(data, what)
        expect_ran(data, f"{what}.losses")
        for index, (inputs, (batch, latent)) in enumerate(zip(batches, hp.LOSS_BATCHES)):
            losses = np.asarray(data[f"batch{index}.losses"])
            expect(len(losses) == 1, f"exactly one loss should be added; found {len(losses)}")
            total, reconstruction = reference_vae_loss(*inputs)
            got = float(losses[0])
            expect(got > reconstruction, "the loss is below the reconstruction term alone: the KL term must be added with a "
                   "positive sign (-mean(1 + z_log_var - z_mean^2 - exp(z_log_var)) is never negative)")
            expect_close(f"the loss for a batch of {batch} with latent_dim {latent}", got, total, atol=1e-5,
                         hint="reconstruction = mean pixel cross-entropy; KL = -mean over latent dims of (1 + z_log_var - "
                              "z_mean^2 - exp(z_log_var)), averaged over the batch, weighted 5e-4")

    return [(1, "the layer passes x through", output), (3, "the loss value", value)]


# --- part 5 -----------------------------------------------------------------------------------------


def verdict_vae_model(data: dict[str, Any]) -> list[Check]:
    def check() -> None:
        expect_ran(data, "build_vae")
        kinds = data.get("layers.json") or []
        expect("Sampling" in kinds, f"the VAE should contain a Sampling layer; its layers are {kinds}")
        expect("CustomVariationalLayer" in kinds, f"the VAE should end in CustomVariationalLayer; its layers are {kinds}")
        expect(all(data.get("uses_given.json") or [False]),
               "build_vae should use the encoder and decoder it is given (call them on the input), not build new ones")
        expect_ran(data, "reading the optimizer's learning rate", "compile the model inside build_vae")
        expect_close("the learning rate", float(data["learning_rate"]), 3e-3, atol=1e-9, hint="pass learning_rate to the optimizer")
        expect_ran(data, "vae.fit(images, None, epochs=1, batch_size=8)")
        expect(bool(np.isfinite(data["fit_loss"])), "training the VAE for one step gave a non-finite loss")
        expect(bool(data["decoder_changed"]),
               "one training step did not change the decoder's weights: is the decoder connected to the loss?")

    return [(2, "the VAE's wiring and one training step", check)]


# --- part 6 -----------------------------------------------------------------------------------------


@functools.cache
def _mnist() -> tuple[np.ndarray, np.ndarray]:
    import course

    (x_train, _), (x_test, _) = course.load_mnist()
    return x_train, x_test


def verdict_data(data: dict[str, Any]) -> list[Check]:
    def preprocess() -> None:
        expect_ran(data, "preprocess(images)")
        out = np.asarray(data.get("preprocessed", np.zeros(0)))
        expect_shape("preprocess() of 3 images", out.shape, (3, 28, 28, 1))
        expect(out.dtype == np.float32, f"preprocess() returns {out.dtype}; expected float32")
        expect_close("preprocess() of pixel values 0, 255, 51, 102", out[0, [0, 0, 14, 14], [0, 14, 0, 14], 0],
                     [0.0, 1.0, 0.2, 0.4], atol=1e-6, hint="scale by 1/255")

    def order() -> None:
        reference_train, reference_test = _mnist()
        for name, reference in (("x_train", reference_train), ("x_test", reference_test)):
            head = data.get(f"{name}.head")
            expect(head is not None, f"{name} is not an array of images")
            expect_close(f"{name} (first 100 images)", head, (reference[:100] / 255.0)[..., None], atol=1e-6,
                         hint=f"{name} must be the MNIST {'training' if name == 'x_train' else 'test'} images in their original order")

    return [(1, "preprocess()", preprocess), (1, "x_train and x_test", order)]


# --- part 7 -----------------------------------------------------------------------------------------

RATIO_THRESHOLD = 0.90
"""Calibrated in README ("Calibration"): master 0.59-0.81 over 10 seeds; input-ignoring models 1.00."""


def verdict_training(data: dict[str, Any]) -> list[Check]:
    from course.quality import reconstruction_report

    def check() -> None:
        encoder = _load(data, "encoder", "the trained encoder")
        decoder = _load(data, "decoder", "the trained decoder")
        expect(len(encoder.outputs) == 2, "the trained encoder should output [z_mean, z_log_var]")
        expect_shape("the trained decoder's output", decoder.outputs[0].shape, (None, 28, 28, 1))
        _, reference_test = _mnist()
        quality_x = (reference_test[:200] / 255.0).astype("float32")[..., None]
        z_mean, _ = encoder(quality_x)
        report = reconstruction_report(quality_x, _numpy(decoder(z_mean)))
        # Error ratio = mean cross-entropy of each reconstruction against its own input / against the other 199
        # inputs (1.00 = reconstructions carry no information about their input).
        expect(report.ratio < RATIO_THRESHOLD,
               f"your reconstructions resemble their own input hardly more than other digits (error ratio {report.ratio:.3f}; "
               "the reference solution reaches 0.59 to 0.81 after the same short training, and a model that ignores its "
               "input scores 1.00). Check that training ran on the preprocessed images and that the decoder is trained "
               "through the loss.")

    return [(5, "reconstruction quality of the trained encoder and decoder", check)]


# --- part 8 -----------------------------------------------------------------------------------------


def verdict_manifold(data: dict[str, Any]) -> list[Check]:
    from scipy.stats import norm

    grid = norm.ppf(np.linspace(0.05, 0.95, 5))

    def image() -> np.ndarray:
        expect_ran(data, "build_manifold(decoder, n=5)")
        out = np.asarray(data.get("probe_image", np.zeros(0)))
        expect_shape("build_manifold(decoder, n=5)", out.shape, (140, 140), "use n and digit_size, not fixed 15 and 28")
        return out

    def layout() -> None:
        out = image()
        z0, z1 = out[0::28, 0::28], out[0::28, 1::28]  # pixels (0, 0) and (0, 1) of every tile hold its code
        if np.allclose(np.stack([z1, z0]), np.stack(np.meshgrid(grid, grid)), atol=1e-4):
            raise AssertionError("z[0] and z[1] are swapped: z[0] must change along a row (column j uses grid[j]) and "
                                 "z[1] down a column (row i uses grid[i])")
        expect_close("z[0] along the first row of tiles", z0[0], grid, atol=1e-4,
                     hint="z[0] must change along a row (column j uses grid[j]); the grid is norm.ppf(np.linspace(0.05, 0.95, n))")
        expect_close("z[1] down the first column of tiles", z1[:, 0], grid, atol=1e-4,
                     hint="z[1] must change down a column (row i uses grid[i])")
        expect_close("every tile's code", np.stack([z0, z1]), np.stack(np.meshgrid(grid, grid)), atol=1e-4,
                     hint="tile (i, j) decodes z = (grid[j], grid[i])")

    def batched() -> None:
        image()
        calls = data.get("probe_calls.json") or []
        expect(calls == [25], f"the decoder was called {len(calls)} time(s) with batch sizes {calls[:6]}; "
                              "decode all n*n codes in one batched call")

    def not_scrambled() -> None:
        expect_ran(data, "build_manifold(decoder, n=15)")
        smooth = np.asarray(data.get("smooth_image", np.zeros(0)), dtype=np.float64)
        expect_shape("build_manifold(decoder, n=15)", smooth.shape, (420, 420))
        tiles = smooth.reshape(15, 28, 15, 28).transpose(0, 2, 1, 3).reshape(15, 15, -1)
        near = np.mean([np.linalg.norm(tiles[i, j] - tiles[i, j + 1]) for i in range(15) for j in range(14)])
        far = np.mean([np.linalg.norm(tiles[i, j] - tiles[i, j + 7]) for i in range(15) for j in range(8)])
        expect(near < 0.5 * far, f"neighbouring tiles differ as much as distant ones ({near:.2f} vs {far:.2f}): the tiles are "
                                 "scrambled; check the reshape/transpose")

    return [(2, "the grid and the layout", layout), (0.5, "one batched decoder call", batched),
            (0.5, "tiles in one piece", not_scrambled)]


VERDICTS: Mapping[str, Callable[[dict[str, Any]], list[Check]]] = {
    "test_encoder_hidden": verdict_encoder,
    "test_sampling_hidden": verdict_sampling,
    "test_decoder_hidden": verdict_decoder,
    "test_loss_layer_hidden": verdict_loss_layer,
    "test_vae_model_hidden": verdict_vae_model,
    "test_data_hidden": verdict_data,
    "test_training_hidden": verdict_training,
    "test_manifold_hidden": verdict_manifold,
}


def probe_spec(grade_id: str) -> Probe:
    """The hidden cell ``grade_id`` as a :class:`course.selfcheck.Probe` (probe function from hidden_probes)."""
    part, names, function = hp.PROBES[grade_id]
    return Probe(part, names, getattr(hp, function), VERDICTS[grade_id])


def judge(grade_id: str, data: dict[str, Any]) -> Outcome:
    return _judge(probe_spec(grade_id), data)


def check_here(grade_id: str, namespace: Mapping[str, Any]) -> None:
    """The master notebook's hidden cells (nbval, the instructor's own runs): probe and verdict in one process.

    When a submission is graded, the cell's source is never run: the grader probes the student's
    kernel and judges here (``vae_grader.judge``). This keeps the master runnable end to end.
    """
    from course import probing
    from course.selfcheck import run_probe

    spec = probe_spec(grade_id)
    outcome = _judge(spec, probing.unpack(probing.pack(run_probe(spec, namespace))))
    if not outcome.full:
        raise AssertionError("\n".join(outcome.failures))
    print(f"Part {spec.part} hidden tests passed ({outcome.points:g} of {outcome.max_points:g} points).")
