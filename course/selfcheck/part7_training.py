"""Part 7's self-check: the history, and whether the encoder and decoder it judges were trained.

Everything that earns the points is computed by the checker from the saved encoder and decoder, on MNIST
images it reads itself: that training improved the reconstructions against the same models with fresh
weights (``LEARNED``), and that the reconstruction term of the VAE loss on ``x_val`` reached what a short
training reaches (``TRAINED_RECONSTRUCTION``). The history is stated by the kernel, so it can only fail the
check: it must have the budget's epochs and a final ``val_loss`` that the returned models really reach on
``x_val`` (``history_problem``) and that the VAE vae.fit trained (``history.model``), evaluated on ``x_val`` in the
kernel, also reaches (``validation_data_problem``: validating on ``x_train`` states another loss). Which models
vae.fit trained and the history's own loss only choose the message when training did not help
(``untrained_cause``). What "trained" means here, and what no check can tell apart from it, is
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
from course.selfcheck.part1_encoder import ENCODER_FEATURE_MAP, latent_hint
from course.selfcheck.probe import Probe, load_saved, model_step, to_numpy


def probe_training(history: Any, encoder: Any, decoder: Any) -> dict[str, Any]:
    rec = probing.Recorder()
    logs = getattr(history, "history", None)
    if isinstance(logs, Mapping):
        rec["history.json"] = {
            str(k): [float(v) for v in np.ravel(np.asarray(vals, dtype=np.float64))]
            for k, vals in logs.items()
        }
    model_step(rec, "encoder", "the trained encoder", lambda: encoder)
    model_step(rec, "decoder", "the trained decoder", lambda: decoder)
    trained = getattr(history, "model", None)  # the model vae.fit trained: Keras's History keeps it
    if _is_model(trained):
        ids = {id(w) for w in trained.weights}
        rec["fitted.json"] = {
            name: _is_model(model) and all(id(w) in ids for w in model.weights)
            for name, model in (("encoder", encoder), ("decoder", decoder))
        }
        loss = rec.attempt("evaluating history.model on x_val", lambda: _x_val_loss(trained))
        if loss is not None:
            rec["x_val_loss.json"] = loss
    return rec.data


def _is_model(value: Any) -> bool:
    import keras

    return isinstance(value, keras.Model)


def _x_val_loss(model: Any) -> float:
    """The trained VAE's own loss on x_val as the notebook makes it (``x_test[:budget.val_images]``)."""
    from course import load_mnist, training_budget

    budget = training_budget()
    (_, _), (x_test, _) = load_mnist()
    x_val = (x_test[: budget.val_images] / 255.0).astype("float32")[..., None]
    return float(np.ravel(model.evaluate(x_val, None, batch_size=budget.batch_size, verbose=0))[0])


TRAINING_CAUSES = {
    "no_loss": (
        "vae.fit stopped because the VAE has no loss. Keras's advice to pass a loss to compile() does not apply "
        "here: CustomVariationalLayer must add the VAE loss with self.add_loss(...) in its call() (part 4's "
        "self-check says more); then run parts 4, 5 and 7 again"
    ),
}
"""Messages for a missing ``history``, by the cause ``probe_training_diagnosis`` names."""


def probe_training_diagnosis(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Why there is no history, when the notebook's vae says it: a VAE whose loss layer adds no loss cannot be fit."""
    vae = namespace.get("vae")
    if "history" in namespace or not _is_model(vae):
        return {}
    images = np.zeros((2, 28, 28, 1), "float32")
    try:
        vae.evaluate(images, None, verbose=0)
    except Exception as exc:  # the student's model may raise anything; only this one cause is named
        if "no loss to compute" in str(exc).lower():
            return {"cause.json": "no_loss"}
    return {}


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
            np.asarray(to_numpy(t), np.float64) for t in encoder(images)[:2]
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
            p = to_numpy(self._decoder(z.astype("float32"))).astype(np.float64).reshape(n, -1)
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


VALIDATION_DATA_TOLERANCE = 0.01
"""Relative difference allowed between the history's last val_loss and the loss the VAE that vae.fit trained
(``history.model``) has on x_val, evaluated in the kernel. Measured with the grading budget (master, seeds 0-2,
2026-12-07): the history within 0.05-0.16 % of that evaluation (both draw their own z); validating on the 8,000
training images instead gives a last val_loss 2.5-3.3 % above it (0.2250 against 0.2185, 0.2175 against 0.2120,
0.2254 against 0.2183): MNIST's test digits are easier to reconstruct than its training digits."""


def validation_data_problem(stated: float, x_val_loss: Any) -> str | None:
    """Why the history's last val_loss was not measured on x_val, or None. ``x_val_loss`` is stated by the kernel
    (the trained VAE evaluated there on x_val), so it can only fail the check: a missing one judges nothing."""
    if isinstance(x_val_loss, bool) or not isinstance(x_val_loss, (int, float)):
        return None
    value = float(x_val_loss)
    if math.isfinite(value) and abs(stated - value) <= VALIDATION_DATA_TOLERANCE * abs(value):
        return None
    return (
        f"the history's last val_loss is {stated:.4g}, but the VAE that vae.fit trained has loss {value:.4g} on "
        "x_val: the validation data were not x_val. Validate on the held-out images, "
        "validation_data=(x_val, None), not on x_train, which only tells how well the model fits what it was "
        "trained on"
    )


STUCK_OUTPUT = 0.5
"""sigmoid(0): a decoder whose last layer feeds the sigmoid through a ReLU never draws a pixel below it."""


def stuck_output(decoded: np.ndarray, decoder: Any) -> str | None:
    """Why a trained decoder cannot draw digits, when its pixels never fall below sigmoid(0), or None.

    Two causes leave every pixel at 0.5 or above, told apart by the decoder's layers: a never-negative activation
    (a ReLU) feeding the final sigmoid (part 3), or a well-built decoder trained towards targets above 1, which
    pull every pixel up (images not scaled to [0, 1], part 6)."""
    from course.architecture import sigmoid_fed_non_negative

    decoded = np.asarray(decoded, dtype=np.float64)
    if not (bool(np.isfinite(decoded).all()) and float(decoded.min()) >= STUCK_OUTPUT - 1e-6):
        return None
    if float(np.ptp(decoded)) < 1e-6 and abs(float(decoded.min()) - STUCK_OUTPUT) > 1e-6:
        return None  # one constant other than 0.5 (a softmax over one channel is 1 everywhere): another cause
    seen = f"no decoded pixel is below {STUCK_OUTPUT} (their mean is {float(decoded.mean()):.3f})"
    if not sigmoid_fed_non_negative(decoder):
        return (
            f"{seen}, although the decoder's sigmoid can go below it: training pulled every pixel up, as targets "
            "above 1 do: check that it was trained on images scaled to [0, 1] (part 6: divide by 255)"
        )
    return (
        f"{seen}: the decoder's output is stuck at sigmoid(0) = 0.5 or above, so it cannot draw the dark "
        "background. A ReLU before the final sigmoid (its units die in training) does this: end the decoder with "
        'one Conv2D(1, 3, activation="sigmoid", padding="same") and no ReLU before the sigmoid (part 3)'
    )


def untrained_cause(
    data: dict[str, Any], encoder: Any, decoder: Any, images: np.ndarray, worse: bool
) -> str:
    """The likeliest reason why training did not improve the reconstructions, for the message.

    Read from what the checker computes (the decoder's pixels) and, to pick between causes only, from what the
    kernel states (which models vae.fit trained, the history's training loss)."""
    fitted = data.get("fitted.json")
    if isinstance(fitted, dict) and False in (fitted.get("encoder"), fitted.get("decoder")):
        stale = [name for name in ("encoder", "decoder") if fitted.get(name) is False]
        return (
            f"the {' and '.join(stale)} you pass here {'is' if len(stale) == 1 else 'are'} not the one inside the "
            "VAE that vae.fit trained (was part 1 or 3 run again after part 5 built vae?): after changing part 1 "
            "or 3, run parts 5 and 7 again"
        )
    logs = data.get("history.json")
    last = (
        [
            float(values[-1])
            for values in (logs.get(key) for key in ("loss", "val_loss"))
            if isinstance(values, list) and values and isinstance(values[-1], (int, float))
        ]
        if isinstance(logs, dict)
        else []
    )
    # A cross-entropy of images in [0, 1] is never negative; with pixels left in 0..255 it is (measured: the
    # data_unscaled student's val_loss about -480, and its models reconstruct [0, 1] test digits worse than
    # fresh weights, 1.01 against 0.69). Checked first: such training also leaves every pixel above 0.5.
    if last and min(last) < 0:
        return (
            f"the history's loss reached {min(last):.4g}, which a cross-entropy of images in [0, 1] never does: "
            "was it trained on images scaled to [0, 1] (part 6: divide by 255)?"
        )
    stuck = stuck_output(to_numpy(decoder(encoder(images)[0])), decoder)
    if stuck is not None:
        return stuck
    if worse:
        return (
            "worse than fresh weights although the training loss stayed a cross-entropy's: the loss rewards "
            "something else than good reconstructions. Check the loss layer (part 4): binary cross-entropy of "
            "the decoder's probabilities (from_logits=False, the default), not of logits"
        )
    return "if an earlier self-check fails (the decoder's output, part 3), fix that part first"


def reconstruction_loss(encoder: Any, decoder: Any, images: np.ndarray, eps: float = 1e-7) -> float:
    """Mean per-pixel binary cross-entropy of decoder(z_mean) against the images (computed by the checker)."""
    z_mean = encoder(images)[0]
    decoded = np.clip(
        to_numpy(decoder(z_mean)).astype(np.float64).reshape(len(images), -1), eps, 1 - eps
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
        encoder = load_saved(data, "encoder", "the trained encoder")
        decoder = load_saved(data, "decoder", "the trained decoder")
        expect_shape(
            "the trained encoder's z_mean",
            encoder.outputs[0].shape,
            (None, 2),
            latent_hint(encoder.outputs[0].shape) + " (part 1)",
        )
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
        if not (bool(np.isfinite(trained)) and trained < LEARNED * fresh):
            raise AssertionError(
                f"training did not improve the reconstructions: cross-entropy {trained:.4g} per pixel on test "
                f"images, against {fresh:.4g} for the same model with fresh weights; "
                + untrained_cause(data, encoder, decoder, images, trained > fresh)
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
        problem = validation_data_problem(final_val, data.get("x_val_loss.json"))
        expect(problem is None, problem or "")
        problem = history_problem(final_val, terms)
        expect(problem is None, problem or "")

    return [(2, "the training history and the loss it reached", check)]


CHECK = Probe(
    7,
    ("history", "encoder", "decoder"),
    probe_training,
    verdict_training,
    probe_training_diagnosis,
    TRAINING_CAUSES,
    reads_mnist=True,
)
"""The test cell ``test_training``: what the probe reads, the probe and its verdict."""
