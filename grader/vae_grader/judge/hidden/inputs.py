"""What every hidden probe is sent with: the inputs the grader chooses, and the student package's probe steps.

A hidden probe (each part module's ``probe_*_hidden``) runs in the student's sandboxed kernel; the grader
sends this module's source, then that one function's source and its declared helpers
(``vae_grader.judge.rulings.probe_code``). So a probe may use only the names defined here, which the
test of the part tables checks. Nothing here is an expected value or a verdict: a submission that reads its
own kernel learns at most which inputs the grader used, never what it expects of them. Only the student
package, NumPy and Keras are imported.
"""

from __future__ import annotations

# What the probes sent after this source use (each part module imports them from here, so one source
# serves the kernel and the grader's own runs):
from typing import Any  # noqa: F401

import numpy as np

from course import probing  # noqa: F401
from course.selfcheck.part4_loss_layer import loss_layer_result  # noqa: F401
from course.selfcheck.probe import model_step, to_numpy  # noqa: F401

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


VAE_SEED = 105
"""Seed of the weights of the stand-in encoder and decoder given to build_vae (the grader draws them again)."""
