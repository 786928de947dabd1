"""Verdict of part 4, the loss layer: the reference loss in float64, and the diagnoses of its plausible slips.

The slips (``LOSS_SLIPS``) are measured, not guessed: tests/test_fair_grading.py writes each one as a
student would and checks that the verdict names it. The inputs are salted like part 2's
(``inputs.loss_batches``), so the reference is computed here from the salt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from course.checks import Check, expect, expect_close, expect_ran
from vae_grader.judge.hidden import inputs as hp
from vae_grader.judge.hidden.inputs import loss_batches, loss_layer_result, probing, SALT
from vae_grader.judge.hidden.part import HiddenPart


# --- the probes, sent into the kernel one at a time (after ``inputs``) ------------------------------


def probe_loss_layer_hidden(CustomVariationalLayer: Any) -> dict[str, Any]:
    rec = probing.Recorder()
    for index, inputs in enumerate(loss_batches(SALT)):
        loss_layer_result(rec, f"batch{index}", CustomVariationalLayer, inputs)
    return rec.data


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

    ``reconstruction``: mean pixel cross-entropy; ``reconstruction_logits``: the same with ``decoded`` read
    as logits (``from_logits=True`` on the decoder's sigmoid output: softplus(p) - x p per pixel, which is what
    Keras computes then); ``kl``: -mean over latent dims, mean over the batch;
    ``kl_sum``: the same summed over the latent dims; ``kl_half_sum``: half that sum, the textbook
    form, which equals ``kl`` only for 2 latent dims; ``kl_batch_sum``: averaged over latent dims but
    summed over the batch.
    """
    x = x.reshape(len(x), -1).astype("float64")
    p = np.clip(decoded.reshape(len(decoded), -1).astype("float64"), eps, 1 - eps)
    pixels = -(x * np.log(p) + (1 - x) * np.log(1 - p))
    logits = decoded.reshape(len(decoded), -1).astype("float64")
    pixels_logits = np.logaddexp(0.0, logits) - x * logits
    per_dim = -(1 + z_log_var - z_mean**2 - np.exp(z_log_var)).astype("float64")
    return {
        "reconstruction": float(np.mean(pixels)),
        "reconstruction_logits": float(np.mean(pixels_logits)),
        "kl": float(np.mean(per_dim.mean(axis=-1))),
        "kl_sum": float(np.mean(per_dim.sum(axis=-1))),
        "kl_half_sum": float(np.mean(0.5 * per_dim.sum(axis=-1))),
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
        "the cross-entropy reads z_decoded as logits (from_logits=True), but the decoder's sigmoid already "
        "gives probabilities in [0, 1]: leave from_logits at its default, False",
        lambda t: t["reconstruction_logits"] + KL_WEIGHT * t["kl"],
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
        "KL is the textbook -0.5 * sum over the latent dims; the text asks for -mean over them "
        "(equal only when latent_dim is 2)",
        lambda t: t["reconstruction"] + KL_WEIGHT * t["kl_half_sum"],
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
    """The slip whose loss matches ``got`` (relative tolerance 1e-4), if exactly one does.

    A slip that gives the right loss on these inputs (the textbook half-sum for 2 latent
    dimensions) explains nothing here, and the right loss is never diagnosed as a slip."""

    def near(a: float, b: float) -> bool:
        return abs(a - b) <= 1e-4 * max(1.0, abs(a))

    right = terms["reconstruction"] + KL_WEIGHT * terms["kl"]
    if near(got, right):
        return None
    matches = [
        message
        for message, formula in LOSS_SLIPS
        if near(got, formula(terms)) and not near(right, formula(terms))
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
            # A NaN or infinite loss says nothing about the KL sign: it is refused first, with its own message.
            expect(
                bool(np.isfinite(got)),
                f"the loss for a batch of {batch} with latent_dim {latent} is {got}: every decoded pixel here "
                "is in [0.01, 0.99], so a NaN or infinite loss comes from the formula itself (a log of 0 or of a "
                "negative number, an exp that overflows)",
            )
            if abs(got - total) <= 1e-5:
                continue
            slip = diagnose_loss(got, loss_terms(*inputs))
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


PARTS = (
    HiddenPart(
        4, ("CustomVariationalLayer",), probe_loss_layer_hidden, verdict_loss_layer, salted=True
    ),
)
"""The hidden test cells judged here."""
