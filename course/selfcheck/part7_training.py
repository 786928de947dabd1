"""Part 7's self-check: the history, and whether the encoder and decoder it judges were trained.

Everything that earns the points is computed by the checker from the saved encoder and decoder, on MNIST
images it reads itself: that training improved the reconstructions against the same models with fresh
weights (``LEARNED``), and that the reconstruction term of the VAE loss on ``x_val`` reached what a short
training reaches (``TRAINED_RECONSTRUCTION``). The history is stated by the kernel, so it can only fail the
check: it must have the budget's epochs and a final ``val_loss`` that the returned models really reach on
``x_val`` (``history_problem``). What "trained" means here, and what no check can tell apart from it, is
written down in docs/part7-trained.md.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from course import probing
from course.checks import Check, expect, expect_shape
from course.selfcheck.part1_encoder import ENCODER_FEATURE_MAP
from course.selfcheck.probe import _load, _model_step, _numpy


def probe_training(history: Any, encoder: Any, decoder: Any) -> dict[str, Any]:
    rec = probing.Recorder()
    logs = getattr(history, "history", None)
    if isinstance(logs, Mapping):
        rec["history.json"] = {
            str(k): [float(v) for v in np.ravel(np.asarray(vals, dtype=np.float64))]
            for k, vals in logs.items()
        }
    _model_step(rec, "encoder", "the trained encoder", lambda: encoder)
    _model_step(rec, "decoder", "the trained decoder", lambda: decoder)
    return rec.data


VALIDATION_SAMPLE = 500
"""MNIST test images the training self-check reconstructs (the grading budget validates on 500)."""
LEARNED = 0.9
"""The trained model's reconstruction cross-entropy must be below this share of the same model's with fresh
weights. Measured on the master (grading budget): about 0.22 against 0.69, a share near 0.32; a decoder that
cannot learn (softmax output) stays at 1.00."""

KL_WEIGHT = 5e-4
"""The weight of the KL term, as part 4's text states it."""

TRAINED_RECONSTRUCTION = 0.25
"""Largest reconstruction term of the VAE loss on ``x_val`` (mean per-pixel cross-entropy of decoder(z), z drawn
from the encoder's z_mean and z_log_var as ``Sampling`` draws it) that counts as trained. Measured with the
grading budget on its 500 validation images (in-process training, Keras 3.15.1 on TensorFlow 2.21; the table is
in docs/part7-trained.md): the master over seeds 0-9 0.2082-0.2341; 27 runs of correct variants and of slips in
other parts at most 0.2383 (sampler_exp_logvar, seeds 0-2: 0.2375-0.2383; sampler_shared_noise, seeds 0-2:
0.2172-0.2368); always drawing the average training digit 0.2538; fresh weights 0.693. The KL term is left out
on purpose: it is part 4's business. Summing the reconstruction over the pixels (a part-4 slip) trains models
whose KL term puts the course's total loss at 0.286-0.340 (seeds 0-2) while their reconstruction term is
0.223-0.229; leaving the KL term out gives 0.350 and 0.221."""

HISTORY_TOLERANCE = 0.01
"""Relative difference allowed between the history's last val_loss and the checker's value of the same loss
for the returned models. Both are estimates over random draws of z (Keras draws one z per image): over the same
37 trained models (master seeds 0-9 and the 27 variant runs), the history was within 0.30 % of the checker's
value of the loss it was trained with (largest: master seed 0, history 0.2188, checker 0.2182); one draw's mean
over the 500 images varies by about 0.1 %."""

MIN_DECODES = 2000
"""Decoded images per estimate: 4 noise draws for each of the grading budget's 500 validation images (one draw
for the student's 10,000). Measured spread of one draw's mean over 500 images: 0.0001-0.0003."""
NOISE_SEED = 7
"""The checker's own noise for z (fixed, so that a notebook gets the same verdict every time it is judged)."""


class ValidationTerms:
    """The VAE loss's terms for the returned encoder and decoder on ``x_val``, computed by the checker in float64
    with its own noise for z (``NOISE_SEED``)."""

    def __init__(
        self, encoder: Any, decoder: Any, images: np.ndarray, batch_size: int, eps: float = 1e-7
    ) -> None:
        n = len(images)
        self._decoder, self._eps = decoder, eps
        self._z_mean, self._z_log_var = (
            np.asarray(_numpy(t), np.float64) for t in encoder(images)[:2]
        )
        self._x = images.reshape(n, -1).astype(np.float64)
        self._rng = np.random.default_rng(NOISE_SEED)
        self.latent_dim, self.pixels = int(self._z_mean.shape[-1]), int(self._x.shape[1])
        kl = -np.mean(1 + self._z_log_var - self._z_mean**2 - np.exp(self._z_log_var), axis=-1)
        self.kl = float(np.mean(kl))
        """-mean over the latent dimensions of (1 + z_log_var - z_mean^2 - exp(z_log_var)), averaged over images."""
        # Keras averages a per-batch loss over the batches, weighted by their sizes.
        starts = np.arange(0, n, max(1, batch_size))
        sizes = np.diff(np.r_[starts, n])
        self.kl_batch = float(np.sum(sizes * np.add.reduceat(kl, starts)) / n)
        """The KL term summed over each validation batch instead of averaged (a part-4 slip), as Keras averages it."""
        self.reconstruction = self._reconstruction(0.5)
        """Mean per-pixel cross-entropy of decoder(z) against the image, z = z_mean + exp(z_log_var / 2) * noise."""

    def _reconstruction(self, power: float) -> float:
        n, draws = len(self._x), max(1, math.ceil(MIN_DECODES / len(self._x)))
        total = 0.0
        for _ in range(draws):
            z = self._z_mean + np.exp(power * self._z_log_var) * self._rng.standard_normal(
                self._z_mean.shape
            )
            p = _numpy(self._decoder(z.astype("float32"))).astype(np.float64).reshape(n, -1)
            p = np.clip(p, self._eps, 1 - self._eps)
            total += float(np.mean(-(self._x * np.log(p) + (1 - self._x) * np.log(1 - p))))
        return total / draws

    @functools.cached_property
    def reconstruction_exp(self) -> float:
        """The same with exp(z_log_var) as the standard deviation: the 2017 sampler, a part-2 slip."""
        return self._reconstruction(1.0)


def validation_terms(
    encoder: Any, decoder: Any, images: np.ndarray, batch_size: int
) -> ValidationTerms:
    """The terms of the course's loss for ``images`` (validated in batches of ``batch_size``)."""
    return ValidationTerms(encoder, decoder, images, batch_size)


def loss_readings(terms: ValidationTerms) -> Iterator[float]:
    """The values a history's val_loss can hold for these models: the course's loss, and the same loss with one
    of the slips parts 2 and 4 name (each costs points there, not here). The 2017 sampler's come last: they
    need decoding again."""
    for recon in (terms.reconstruction, None):
        recon = terms.reconstruction_exp if recon is None else recon
        yield recon + KL_WEIGHT * terms.kl  # the course's loss
        yield terms.pixels * recon + KL_WEIGHT * terms.kl  # reconstruction summed over the pixels
        yield recon  # KL term missing
        yield recon + terms.kl  # KL term without its weight
        yield (
            recon + KL_WEIGHT * terms.latent_dim * terms.kl
        )  # KL summed over the latent dimensions
        yield recon + KL_WEIGHT * terms.kl_batch  # KL summed over the batch


def history_problem(stated: float, terms: ValidationTerms) -> str | None:
    """Why the history's last val_loss cannot be these models' loss on x_val, or None if it can."""
    if any(abs(stated - value) <= HISTORY_TOLERANCE * abs(value) for value in loss_readings(terms)):
        return None
    course_loss = terms.reconstruction + KL_WEIGHT * terms.kl
    return (
        f"the history's last val_loss is {stated:.4g}, but the encoder and decoder you trained reach "
        f"{course_loss:.4g} on x_val (reconstruction {terms.reconstruction:.4g} + 5e-4 x KL {terms.kl:.4g}, "
        "computed by the checker): keep the History that vae.fit(..., validation_data=(x_val, None)) returns for "
        "the training of these very models, and do not train or rebuild them after it"
    )


def reconstruction_loss(encoder: Any, decoder: Any, images: np.ndarray, eps: float = 1e-7) -> float:
    """Mean per-pixel binary cross-entropy of decoder(z_mean) against the images (computed by the checker)."""
    z_mean = encoder(images)[0]
    decoded = np.clip(
        _numpy(decoder(z_mean)).astype(np.float64).reshape(len(images), -1), eps, 1 - eps
    )
    x = images.reshape(len(images), -1).astype(np.float64)
    return float(np.mean(-(x * np.log(decoded) + (1 - x) * np.log(1 - decoded))))


def verdict_training(data: dict[str, Any]) -> list[Check]:
    from course import load_mnist, training_budget

    budget = training_budget()

    def check() -> None:
        import keras

        from course.architecture import shape_before_flattening

        logs = data.get("history.json")
        expect(
            isinstance(logs, dict),
            "keep the value returned by vae.fit(...) in a variable called history "
            "(if the training cell stopped with an error, an earlier part's self-check may say why)",
        )
        expect(
            "val_loss" in logs,
            "no val_loss in the history: pass validation_data=(x_val, None) to fit",
        )
        epochs = len(logs.get("loss", []))
        expect(
            epochs == budget.epochs,
            f"the model trained for {epochs} epoch(s); the budget says {budget.epochs}: use epochs=budget.epochs",
        )
        expect(
            isinstance(logs["val_loss"], list) and len(logs["val_loss"]) > 0,
            "the history's val_loss holds no value: pass validation_data=(x_val, None) to fit",
        )
        final_val = float(logs["val_loss"][-1])
        expect(
            bool(np.isfinite(final_val)),
            f"the final val_loss is {final_val}: training diverged (a KL term with the "
            "wrong sign in part 4 does this)",
        )
        encoder = _load(data, "encoder", "the trained encoder")
        decoder = _load(data, "decoder", "the trained decoder")
        expect_shape("the trained encoder's z_mean", encoder.outputs[0].shape, (None, 2))
        expect_shape(
            "the trained decoder's output",
            decoder.outputs[0].shape,
            (None, 28, 28, 1),
            "if part 1's self-check fails, fix the encoder first",
        )
        # Part 7 judges the encoder of part 1 after training, not another model that reconstructs digits.
        try:
            feature_map = shape_before_flattening(encoder)
        except ValueError:
            feature_map = None
        expect(
            feature_map == ENCODER_FEATURE_MAP,
            f"the trained encoder's feature map before Flatten is {feature_map}, not {ENCODER_FEATURE_MAP}: "
            "part 7 judges the convolutional encoder of part 1 after training (fix part 1 first)",
        )
        # Judged by the checker itself, on the MNIST test images, against the same architecture with fresh
        # weights: independent of how the student's loss is scaled (part 4) or how the data was prepared (part 6).
        (_, _), (x_test, _) = load_mnist()
        images = (x_test[:VALIDATION_SAMPLE] / 255.0).astype("float32")[..., None]
        keras.utils.set_random_seed(7)
        fresh = reconstruction_loss(
            keras.models.clone_model(encoder), keras.models.clone_model(decoder), images
        )
        trained = reconstruction_loss(encoder, decoder, images)
        # Measured: trained on pixels left in 0..255 (part 6), the model reconstructs [0, 1] test digits
        # worse than fresh weights do (1.01 against 0.69); a model that cannot learn stays level.
        cause = (
            "worse than fresh weights: was it trained on images scaled to [0, 1] (part 6)?"
            if np.isfinite(trained) and trained > fresh
            else "if an earlier self-check fails (the decoder's output, part 3), fix that part first"
        )
        expect(
            bool(np.isfinite(trained)) and trained < LEARNED * fresh,
            f"training did not improve the reconstructions: cross-entropy {trained:.4g} per pixel on test images, against "
            f"{fresh:.4g} for the same model with fresh weights; {cause}",
        )
        # The loss the returned models reach on x_val, computed here: it must be a trained model's, and the
        # history (stated by the notebook) must be the history of these models.
        x_val = (x_test[: budget.val_images] / 255.0).astype("float32")[..., None]
        terms = validation_terms(encoder, decoder, x_val, budget.batch_size)
        expect(
            bool(np.isfinite(terms.reconstruction))
            and terms.reconstruction <= TRAINED_RECONSTRUCTION,
            f"the reconstruction term of the VAE loss on x_val is {terms.reconstruction:.4g} per pixel (computed by "
            f"the checker, z drawn from your encoder's z_mean and z_log_var); after this budget's training the "
            f"reference solution reaches 0.208-0.234 (at most {TRAINED_RECONSTRUCTION} counts as trained), and always "
            "drawing the average digit gives about 0.254. If every reconstruction looks like the same average digit, "
            "the KL term outweighs the reconstruction (check its weight in part 4); otherwise train the encoder and "
            "decoder of parts 1 and 3 with vae.fit as this part asks",
        )
        problem = history_problem(final_val, terms)
        expect(problem is None, problem or "")

    return [(2, "the training history and the loss it reached", check)]
