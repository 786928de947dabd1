"""Verdict of part 2, the ``Sampling`` layer: statistics of many draws, reproducibility, gradients, serialisation.

Its inputs are salted (drawn afresh by the grader for every probe, ``inputs.sampler_inputs``),
so every reference value is computed here from the salt: data a kernel fabricated or replayed from an
earlier probe does not match.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from course.checks import Check, expect, expect_close, expect_ran, expect_shape
from vae_grader.judge.hidden import inputs as hp
from vae_grader.judge.hidden.inputs import (
    N_DRAWS,
    N_SEEDED,
    probing,
    SALT,
    sampler_inputs,
    to_numpy,
)
from vae_grader.judge.hidden.part import HiddenPart


# --- the probes, sent into the kernel one at a time (after ``inputs``) ------------------------------


def _restore(Sampling: Any, mean: np.ndarray, log_var: np.ndarray) -> dict[str, Any]:
    """A layer rebuilt from its serialised config, and whether it draws what the original draws."""
    import keras

    original = Sampling(seed=9, name="s")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(original))
    return {
        "same_class": isinstance(restored, Sampling),
        "seed": getattr(restored, "seed", None),
        "original": to_numpy(original([mean, log_var])).tolist(),
        "restored": to_numpy(restored([mean, log_var])).tolist(),
    }


def probe_sampling_hidden(Sampling: Any) -> dict[str, Any]:
    import course.autodiff

    rec = probing.Recorder()
    given = sampler_inputs(SALT)
    mean = np.tile(given["mean"].astype("float32"), (N_DRAWS, 1))
    log_var = np.tile(np.log(given["variance"]).astype("float32"), (N_DRAWS, 1))
    draws = rec.attempt(
        "Sampling(seed=7)([z_mean, z_log_var])", lambda: to_numpy(Sampling(seed=7)([mean, log_var]))
    )
    if draws is not None:
        rec["draws"] = draws
    for key in ("first", "second"):
        again = rec.attempt(
            "Sampling(seed=3)",
            lambda: to_numpy(Sampling(seed=3)([mean[:N_SEEDED], log_var[:N_SEEDED]])),
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
        # The rebuilt layer's class and seed are stated (the grader never runs the student's class);
        # the half point also needs the rebuilt layer's draws, noisy and centred on the salted mean, to
        # equal the original's: answers computed for inputs learned when the probe arrives, the same
        # residual risk as the statistics (README, "What remains possible").
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


PARTS = (
    HiddenPart(
        2, ("Sampling",), probe_sampling_hidden, verdict_sampling, salted=True, helpers=(_restore,)
    ),
)
"""The hidden test cells judged here."""
