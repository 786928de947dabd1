"""Part 7's self-check: the history has the budget's epochs, and training improved the reconstructions.

Progress is judged by the checker itself (``reconstruction_loss`` on MNIST test images, against the
same model with fresh weights), so the verdict does not depend on how the student's loss is scaled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from course import probing
from course.checks import Check, expect, expect_shape
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
        final_val = logs["val_loss"][-1]
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

    return [(2, "the training history and the loss it reached", check)]
