"""Part 2's self-check: the sampling layer adds fresh, seeded noise of the right scale to z_mean.

The noise is random, so the verdict judges statistics of thousands of draws; the tolerances are measured
and kept here, next to the probe that draws and the verdict that compares, so they change together.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from course import probing
from course.checks import Check, expect, expect_close, expect_ran, expect_shape
from course.selfcheck.probe import Probe, to_numpy


SAMPLING_ROWS = 2000
"""Rows of the batch the sampling self-check draws for (both latent dims count, so 4,000 draws)."""
SAMPLING_MEAN = 3.0
SAMPLING_VARIANCE = 4.0
"""z_log_var = log 4: the draws' standard deviation must be exp(0.5 * log 4) = 2; exp(z_log_var) gives 4."""
SAMPLING_SD_TOLERANCE = 0.25
"""Accepted |s.d. - 2| per latent dimension (2,000 draws each). Measured (the master's sampler, seeds 0-19, 40
dimensions): s.d. 1.95-2.06; its standard error is 2 / sqrt(2 * 2000) = 0.032, so 0.25 is 8 standard errors.
The exp(z_log_var) sampler gives 3.89-4.13."""
SAMPLING_MEAN_TOLERANCE = 0.25
"""Accepted |mean - z_mean|. Measured (same runs): 2.85-3.07; the standard error of a mean of 2,000 draws of s.d. 2
is 0.045, so 0.25 is 5.6 standard errors."""
SAMPLING_SYMBOLIC = "Sampling()([keras.Input((2,)), keras.Input((2,))])"
"""The probe step that calls the layer the way build_vae does, on symbolic inputs with no batch size."""


def probe_sampling(Sampling: type) -> dict[str, Any]:
    rec = probing.Recorder()
    z_mean = np.full((SAMPLING_ROWS, 2), SAMPLING_MEAN, "float32")
    log_var = np.full((SAMPLING_ROWS, 2), np.log(SAMPLING_VARIANCE), "float32")
    layer = rec.attempt("Sampling(seed=1)", lambda: Sampling(seed=1))
    if layer is not None:
        for key, lv in (
            ("z", log_var),
            ("z_tiny", np.full((4, 2), -40.0, "float32")),
            ("z_again", log_var),
        ):
            what = f"Sampling()([z_mean, z_log_var = {float(lv.flat[0]):.4g}])"
            z = rec.attempt(what, lambda: to_numpy(layer([z_mean[: len(lv)], lv])))
            if z is not None:
                rec[key] = z
    # Two fresh layers with the same seed: keras.random with the layer's SeedGenerator draws the same noise;
    # np.random (one global stream) or an unseeded keras.random call does not.
    for key in ("fresh_a", "fresh_b"):
        z = rec.attempt(
            "a fresh Sampling(seed=1)",
            lambda: to_numpy(Sampling(seed=1)([z_mean[:5], log_var[:5]])),
        )
        if z is not None:
            rec[key] = z

    def symbolic() -> list[Any]:
        import keras

        inputs = [keras.Input(shape=(2,)), keras.Input(shape=(2,))]
        return [None if d is None else int(d) for d in Sampling(seed=1)(inputs).shape]

    shape = rec.attempt(SAMPLING_SYMBOLIC, symbolic)
    if shape is not None:
        rec["symbolic_shape.json"] = shape
    return rec.data


def verdict_sampling(data: dict[str, Any]) -> list[Check]:
    n = SAMPLING_ROWS
    log4 = f"{np.log(SAMPLING_VARIANCE):.4g}"

    def check() -> None:
        expect_ran(data, "Sampling(seed=1)")
        expect_ran(data, f"Sampling()([z_mean, z_log_var = {log4}])")
        z = np.asarray(data["z"], dtype=np.float64)
        expect_shape(
            f"the sampled z for a batch of {n}", z.shape, (n, 2), "z has the shape of z_mean"
        )
        expect(bool(np.isfinite(z).all()), "the sampled z contains NaN or infinity")
        expect(
            not np.allclose(z, SAMPLING_MEAN),
            "z equals z_mean exactly: the layer adds no noise (multiply epsilon in)",
        )
        expect(
            float(np.ptp(z, axis=0).max()) > 1e-6,
            f"all {n} rows of one call got the same z ({np.array2string(z[0], precision=3)}): the noise is shared "
            "across the batch; draw epsilon with the full shape of z_mean, a fresh value for every row",
        )
        sd, mean = z.std(axis=0), z.mean(axis=0)
        expect(
            bool(np.all(np.abs(sd - 2.0) <= SAMPLING_SD_TOLERANCE)),
            f"the standard deviation of {2 * n:,} draws with z_log_var = log 4 is {np.array2string(sd, precision=2)}; "
            "expected 2 = exp(0.5 * log 4) in each dimension"
            + (
                ": exp(z_log_var) is the variance, not the standard deviation (the 0.5 is missing)"
                if np.all(np.abs(sd - 4.0) <= 2 * SAMPLING_SD_TOLERANCE)
                else ""
            ),
        )
        expect(
            bool(np.all(np.abs(mean - SAMPLING_MEAN) <= SAMPLING_MEAN_TOLERANCE)),
            f"the mean of {2 * n:,} draws is {np.array2string(mean, precision=2)}; expected z_mean = {SAMPLING_MEAN:g}: "
            "the noise should be centred on z_mean (z = z_mean + sigma * epsilon)",
        )
        expect_ran(data, "Sampling()([z_mean, z_log_var = -40])")
        expect_close(
            "z for a tiny variance (z_log_var = -40)",
            data["z_tiny"],
            np.full((4, 2), SAMPLING_MEAN),
            atol=1e-3,
            hint="with almost no variance z must be almost exactly z_mean",
        )
        z_again = np.asarray(data["z_again"], dtype=np.float64)
        # A second draw is judged like the first (shape, finite, scale, centre), so only real noise
        # can show that the two calls differ.
        expect(
            z_again.shape == z.shape
            and bool(np.isfinite(z_again).all())
            and bool(np.all(np.abs(z_again.std(axis=0) - 2.0) <= SAMPLING_SD_TOLERANCE))
            and bool(
                np.all(np.abs(z_again.mean(axis=0) - SAMPLING_MEAN) <= SAMPLING_MEAN_TOLERANCE)
            ),
            "a second call of the same layer did not give draws like the first "
            f"({n} rows, standard deviation 2, mean {SAMPLING_MEAN:g})",
        )
        expect(
            not np.allclose(z, z_again),
            "two calls gave the same z: draw fresh noise with seed=self.seed_generator",
        )
        expect_ran(data, "a fresh Sampling(seed=1)")
        first, second = (np.asarray(data[k], dtype=np.float64) for k in ("fresh_a", "fresh_b"))
        expect(
            first.shape == second.shape and bool(np.allclose(first, second, atol=1e-6)),
            "two fresh Sampling(seed=1) layers drew different noise; expected the same draws from the same seed: "
            "draw epsilon with keras.random.normal(..., seed=self.seed_generator), not np.random or an unseeded call",
        )
        error = str(data.get(probing.ERRORS, {}).get(SAMPLING_SYMBOLIC) or "")
        expect(
            not error,
            f"calling Sampling on keras.Input tensors, as build_vae will, raised {error.split(':')[0]}: inside "
            "a Keras model the batch size is not known yet, so call() must use keras.ops and keras.random "
            "only (ops.shape(z_mean), not z_mean.shape or NumPy)",
        )

    return [(2, "the sampling layer's noise: scale, shape, freshness, seed", check)]


CHECK = Probe(2, ("Sampling",), probe_sampling, verdict_sampling)
"""The test cell ``test_sampling``: what the probe reads, the probe and its verdict."""
