"""Probes of the hidden tests: what the grader asks the student's kernel to compute.

This module's source is sent into the sandboxed kernel when a hidden test cell is graded (see
``vae_grader.judge.rulings``); it only *collects data* from the student's code on inputs chosen here. It
holds no expected value and no verdict: those live in ``vae_grader.judge.hidden`` and run in the grader's
process. So a submission that reads its own kernel learns at most which inputs the grader used,
never what it expects of them. Only the student package, NumPy and Keras are imported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from course import probing
from course.selfcheck import _model_step, _numpy, loss_layer_result

SALT = 0
"""Chosen by the grader for every probe it sends (``judge.probe_code`` sets it after this source): the
sampler's and the loss layer's inputs are drawn from it, so data made up in advance cannot fit them.
The master notebook's own run uses 0."""
N_DRAWS = 20000
N_SEEDED = 2000


def sampler_inputs(salt: int) -> dict[str, np.ndarray]:
    """z_mean and variance of the statistics test, and the inputs of the seeded and gradient draws."""
    rng = np.random.default_rng([salt, 2])
    return {
        "mean": np.round(rng.uniform(-2, 2, 2), 3),
        # One variance well above 1 and one well below: exp(z_log_var) as the s.d. squares them (ratio 2.5-4 and 0.25-0.4).
        "variance": np.round([rng.uniform(2.5, 4.0), rng.uniform(0.25, 0.4)], 3),
        "grad_mean": np.round(rng.uniform(-1, 1, 2), 3),
        "grad_log_var": np.round(rng.uniform(-0.7, 0.7, 2), 3),
    }


LOSS_BATCHES = ((5, 2), (3, 4))


def loss_batches(salt: int = 0) -> list[list[np.ndarray]]:
    """The hidden loss test's inputs [x, z_decoded, z_mean, z_log_var], per batch."""
    rng = np.random.default_rng([salt, 4])
    out = []
    for batch, latent in LOSS_BATCHES:
        x = (rng.uniform(0, 1, (batch, 28, 28, 1)) > 0.7).astype("float32")
        decoded = rng.uniform(0.01, 0.99, (batch, 28, 28, 1)).astype("float32")
        z_mean = rng.normal(0, 2, (batch, latent)).astype("float32")
        z_log_var = rng.normal(0, 1, (batch, latent)).astype("float32")
        out.append([x, decoded, z_mean, z_log_var])
    return out


def preprocess_input() -> np.ndarray:
    """Three 28x28 uint8 images whose quadrants are 0, 255, 51 and 102."""
    return (
        np.array([[[0, 255], [51, 102]]] * 3, dtype=np.uint8).repeat(14, axis=1).repeat(14, axis=2)
    )


def probe_encoder_hidden(build_encoder: Any) -> dict[str, Any]:
    import keras

    rec = probing.Recorder()
    keras.utils.set_random_seed(101)
    _model_step(rec, "encoder", "build_encoder(2)", lambda: build_encoder(2))
    return rec.data


def probe_sampling_hidden(Sampling: Any) -> dict[str, Any]:
    import course.autodiff

    rec = probing.Recorder()
    given = sampler_inputs(SALT)
    mean = np.tile(given["mean"].astype("float32"), (N_DRAWS, 1))
    log_var = np.tile(np.log(given["variance"]).astype("float32"), (N_DRAWS, 1))
    draws = rec.attempt(
        "Sampling(seed=7)([z_mean, z_log_var])", lambda: _numpy(Sampling(seed=7)([mean, log_var]))
    )
    if draws is not None:
        rec["draws"] = draws
    for key in ("first", "second"):
        again = rec.attempt(
            "Sampling(seed=3)",
            lambda: _numpy(Sampling(seed=3)([mean[:N_SEEDED], log_var[:N_SEEDED]])),
        )
        if again is not None:
            rec[f"seeded.{key}"] = again
    m0 = np.tile(given["grad_mean"].astype("float32"), (N_SEEDED, 1))
    lv0 = np.tile(given["grad_log_var"].astype("float32"), (N_SEEDED, 1))
    # The draws come back with their gradients: under JAX they are traced inside the call and can
    # only be read once the gradient computation hands them out.
    drawn = rec.attempt(
        "gradients of Sampling",
        lambda: course.autodiff.value_and_gradients(
            lambda m, lv: Sampling(seed=5)([m, lv]), [m0, lv0]
        ),
    )
    if drawn is not None:
        rec["grad.z"], (rec["grad.mean"], rec["grad.log_var"]) = drawn
    restored = rec.attempt("serialising Sampling(seed=9)", lambda: _restore(Sampling, m0, lv0))
    if restored is not None:
        rec["restored.json"] = restored
    return rec.data


def _restore(Sampling: Any, mean: np.ndarray, log_var: np.ndarray) -> dict[str, Any]:
    """A layer rebuilt from its serialised config, and whether it draws what the original draws."""
    import keras

    original = Sampling(seed=9, name="s")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(original))
    return {
        "same_class": isinstance(restored, Sampling),
        "seed": getattr(restored, "seed", None),
        "original": _numpy(original([mean, log_var])).tolist(),
        "restored": _numpy(restored([mean, log_var])).tolist(),
    }


def probe_decoder_hidden(build_decoder: Any) -> dict[str, Any]:
    import keras

    rec = probing.Recorder()
    keras.utils.set_random_seed(103)
    _model_step(
        rec, "decoder", "build_decoder(2, (14, 14, 64))", lambda: build_decoder(2, (14, 14, 64))
    )
    _model_step(
        rec, "decoder_small", "build_decoder(3, (7, 7, 8))", lambda: build_decoder(3, (7, 7, 8))
    )
    return rec.data


def probe_loss_layer_hidden(CustomVariationalLayer: Any) -> dict[str, Any]:
    rec = probing.Recorder()
    for index, inputs in enumerate(loss_batches(SALT)):
        loss_layer_result(rec, f"batch{index}", CustomVariationalLayer, inputs)
    return rec.data


VAE_SEED = 105
"""Seed of the weights of the stand-in encoder and decoder given to build_vae (the grader draws them again)."""


def probe_vae_model_hidden(build_vae: Any) -> dict[str, Any]:
    from course.selfcheck.part5_vae_model import given_stand_ins, with_checker_layers

    rec = probing.Recorder()
    enc, dec = given_stand_ins(VAE_SEED)
    # Saved before the training step below, so the file holds the given weights: the grader rebuilds the
    # graph from it, runs it on its own images and reads the compile settings from it.
    model = _model_step(
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
    _model_step(rec, "encoder", "the trained encoder", lambda: encoder)
    _model_step(rec, "decoder", "the trained decoder", lambda: decoder)
    return rec.data


def probe_manifold_hidden(build_manifold: Any) -> dict[str, Any]:
    from course.stand_ins import ProbeDecoder, smooth_decoder

    rec = probing.Recorder()
    probe = ProbeDecoder()
    image = rec.attempt(
        "build_manifold(decoder, n=5)", lambda: np.asarray(build_manifold(probe, n=5))
    )
    if image is not None and image.dtype != object:
        rec["probe_image"] = image.astype(np.float64)
    rec["probe_calls.json"] = list(probe.calls)
    smooth = rec.attempt(
        "build_manifold(decoder, n=15)", lambda: np.asarray(build_manifold(smooth_decoder(), n=15))
    )
    if smooth is not None and smooth.dtype != object:
        rec["smooth_image"] = smooth.astype(np.float32)
    return rec.data
