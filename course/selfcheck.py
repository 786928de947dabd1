"""The notebook's visible self-checks: each asks the student's code for data, then judges the data.

Every self-check has two halves. The *probe* runs the student's code on inputs chosen here and
packs what it computed (``course.probing``); the *verdict* judges that data and nothing else. In the
notebook, ``selfcheck.encoder(build_encoder)`` runs both and prints "Part 1 self-check passed." or
raises an error that says what is wrong. When the notebook is graded, the grader runs the probe in
the student's sandboxed kernel and the verdict in its own process, so the points never depend on
what the kernel reports about itself. The probe's data travels through ``pack``/``unpack`` in the
notebook too, so a student sees exactly the verdict the grader will reach.

Nothing here solves a part: the expected values are shapes, ranges and formulas stated in the
notebook's instructions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from course import probing
from course.architecture import wiring_problem
from course.checks import (
    Check,
    Outcome,
    expect,
    expect_close,
    expect_ran,
    expect_shape,
    fmt_shape,
    run_checks,
)


@dataclass(frozen=True)
class Probe:
    """One graded test cell: the notebook names its probe reads, what to run on them, how to judge the data."""

    part: int
    names: tuple[str, ...]
    probe: Callable[..., dict[str, Any]]
    verdict: Callable[[dict[str, Any]], list[Check]]


def _load(data: dict[str, Any], key: str, what: str) -> Any:
    """The model a probe saved under ``key``, or a failure that says why there is none."""
    expect_ran(data, what)
    if key + ".keras" not in data:
        expect(
            bool(data.get(f"{key}.is_model")),
            f"{what} should return a keras.Model, not {data.get(f'{key}.type', 'nothing')}",
        )
        expect_ran(data, f"saving {what}")
        raise AssertionError(f"{what} returned a model that could not be saved")
    try:
        return probing.load_model(data[key + ".keras"])
    except Exception as exc:
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise AssertionError(
            f"{what} returned a model the grader cannot load with standard Keras layers only ({text}); "
            "build it from keras.layers (Conv2D, Dense, ...), without Lambda or custom layers"
        ) from None


def _model_step(rec: probing.Recorder, key: str, what: str, build: Callable[[], Any]) -> Any:
    model = rec.attempt(what, build)
    if model is not None:
        import keras

        rec[f"{key}.type"] = type(model).__name__
        rec[f"{key}.is_model"] = isinstance(model, keras.Model)
        blob = rec.attempt(f"saving {what}", lambda: probing.model_bytes(model))
        if blob is not None:
            rec[f"{key}.keras"] = blob
    return model


def _numpy(value: Any) -> np.ndarray:
    from keras import ops

    return np.asarray(ops.convert_to_numpy(value))


# --- part 1: the encoder -----------------------------------------------------------------------------


def probe_encoder(build_encoder: Callable[..., Any]) -> dict[str, Any]:
    rec = probing.Recorder()
    _model_step(rec, "encoder_2", "build_encoder(2)", lambda: build_encoder(2))
    _model_step(rec, "encoder_3", "build_encoder(3)", lambda: build_encoder(3))
    return rec.data


ENCODER_FEATURE_MAP = (14, 14, 64)
"""What the encoder's Flatten receives: only the second convolution halves 28x28 (stride 2, padding "same").
Measured on the usual slips: stride 1 gives (28, 28, 64), padding="valid" everywhere gives (10, 10, 64)."""


def verdict_encoder(data: dict[str, Any]) -> list[Check]:
    from course.architecture import shape_before_flattening

    def check() -> None:
        enc = _load(data, "encoder_2", "build_encoder(2)")
        expect(
            len(enc.outputs) == 2,
            f"the encoder should have two outputs, [z_mean, z_log_var]; it has {len(enc.outputs)}",
        )
        expect_shape(
            "the encoder's input",
            enc.inputs[0].shape,
            (None, 28, 28, 1),
            "use keras.Input(shape=(28, 28, 1))",
        )
        expect_shape("z_mean", enc.outputs[0].shape, (None, 2), "check latent_dim")
        expect_shape("z_log_var", enc.outputs[1].shape, (None, 2), "check latent_dim")
        try:
            feature_map = shape_before_flattening(enc)
        except ValueError:
            raise AssertionError(
                "the encoder has no Flatten layer: flatten the last feature map before Dense 32"
            ) from None
        expect_shape(
            "the feature map before Flatten",
            (None, *feature_map),
            (None, *ENCODER_FEATURE_MAP),
            "only the second convolution has stride 2 (28x28 -> 14x14), and every convolution uses "
            'padding="same"; the encoder then has 494,244 parameters, as the text says',
        )
        enc3 = _load(data, "encoder_3", "build_encoder(3)")
        expect_shape(
            "z_mean from build_encoder(3)",
            enc3.outputs[0].shape,
            (None, 3),
            "use the latent_dim argument, not a fixed 2",
        )

    return [(2, "the encoder's inputs, outputs and feature map", check)]


# --- part 2: the sampling layer -----------------------------------------------------------------------


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
            z = rec.attempt(what, lambda: _numpy(layer([z_mean[: len(lv)], lv])))
            if z is not None:
                rec[key] = z
    # Two fresh layers with the same seed: keras.random with the layer's SeedGenerator draws the same noise;
    # np.random (one global stream) or an unseeded keras.random call does not.
    for key in ("fresh_a", "fresh_b"):
        z = rec.attempt(
            "a fresh Sampling(seed=1)", lambda: _numpy(Sampling(seed=1)([z_mean[:5], log_var[:5]]))
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
        expect(
            z_again.shape != z.shape or not np.allclose(z, z_again),
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


# --- part 3: the decoder -----------------------------------------------------------------------------


def probe_decoder(build_decoder: Callable[..., Any]) -> dict[str, Any]:
    rec = probing.Recorder()
    _model_step(
        rec, "decoder", "build_decoder(2, (14, 14, 64))", lambda: build_decoder(2, (14, 14, 64))
    )
    return rec.data


EXTREME_CODE = 1000.0
"""The largest codes the decoder self-check decodes. An untrained ReLU network with zero biases scales with its
input, so a ReLU or linear last layer leaves [0, 1] by a margin that grows with the code. Measured (the
course's decoder with a ReLU last layer, seeds 0-19): the largest pixel at codes +-50 was 0.54-1.72, so
half the seeds stayed inside [0, 1]; at +-1000 it is 20 times that, 10.9 or more. A sigmoid stays in [0, 1]."""


def verdict_decoder(data: dict[str, Any]) -> list[Check]:
    def check() -> None:
        dec = _load(data, "decoder", "build_decoder(2, (14, 14, 64))")
        expect_shape(
            "the decoder's input",
            dec.inputs[0].shape,
            (None, 2),
            "the input is a latent code of length latent_dim",
        )
        expect_shape(
            "the decoded image",
            dec.outputs[0].shape,
            (None, 28, 28, 1),
            "Reshape to shape_before_flattening, then one stride-2 Conv2DTranspose and a 1-filter Conv2D",
        )
        # Ordinary codes plus extreme ones (+-EXTREME_CODE): a ReLU or linear last layer leaves [0, 1] there even untrained.
        extreme = [
            [EXTREME_CODE, EXTREME_CODE],
            [-EXTREME_CODE, -EXTREME_CODE],
            [EXTREME_CODE, -EXTREME_CODE],
            [-EXTREME_CODE, EXTREME_CODE],
        ]
        codes = np.concatenate([np.random.default_rng(0).normal(0, 3, (16, 2)), extreme])
        pixels = _numpy(dec(codes.astype("float32")))
        expect(
            bool(np.isfinite(pixels).all()) and pixels.min() >= 0.0 and pixels.max() <= 1.0,
            f"for codes between -{EXTREME_CODE:g} and {EXTREME_CODE:g} the decoded pixels range from "
            f"{np.nanmin(pixels):.3f} to {np.nanmax(pixels):.3f}; "
            "they must lie in [0, 1] for every code: end with a sigmoid",
        )
        expect(
            float(pixels.std()) > 1e-6,
            f"every decoded pixel is {float(pixels.flat[0]):.3f} whatever the code, so nothing can be learned "
            "(a softmax over one channel is always 1): end with a sigmoid",
        )

    return [(2, "the decoder's input, output and pixel range", check)]


# --- part 4: the loss layer ----------------------------------------------------------------------------


def loss_layer_result(
    rec: probing.Recorder, key: str, layer_class: type, inputs: list[np.ndarray]
) -> None:
    """Call a fresh loss layer on ``inputs``; store its output and the values of the losses it added."""
    what = "CustomVariationalLayer()([x, z_decoded, z_mean, z_log_var])"
    layer = rec.attempt(what, layer_class)
    if layer is None:
        return
    out = rec.attempt(what, lambda: _numpy(layer(inputs)))
    if out is None:
        return
    rec[f"{key}.output"] = out
    losses = rec.attempt(f"{what}.losses", lambda: [float(_numpy(v)) for v in layer.losses])
    if losses is not None:
        rec[f"{key}.losses"] = np.asarray(losses, dtype=np.float64).reshape(-1)


LOSS_CODE_MEAN = ((1.5, -1.0), (0.5, 2.0))
LOSS_CODE_LOG_VAR = ((0.5, -0.5), (1.0, -1.0))
"""A code far from N(0, I), so the KL term shows: its 5e-4 share (0.0011) is 110 times the tolerance, and the
usual slips land far from the expected value (measured: KL subtracted -0.0022, KL_WEIGHT forgotten +2.2)."""
LOSS_TOLERANCE = 1e-5
"""float32 against the float64 reference: measured differences below 1e-7 for the master's layer."""


def probe_loss_layer(CustomVariationalLayer: type) -> dict[str, Any]:
    rec = probing.Recorder()
    half = np.full((2, 28, 28, 1), 0.5, "float32")
    quarter = np.full((2, 28, 28, 1), 0.25, "float32")
    zeros = np.zeros((2, 2), "float32")
    loss_layer_result(rec, "zero_code", CustomVariationalLayer, [half, quarter, zeros, zeros])
    loss_layer_result(
        rec,
        "code",
        CustomVariationalLayer,
        [
            half,
            quarter,
            np.array(LOSS_CODE_MEAN, "float32"),
            np.array(LOSS_CODE_LOG_VAR, "float32"),
        ],
    )
    return rec.data


def _kl_slip(got: float, reconstruction: float, kl: float, weight: float) -> str:
    """Which usual slip in the KL term explains the loss ``got``, in words ("" if none does)."""
    slips = (
        (
            reconstruction - weight * kl,
            "the KL term is subtracted; it is never negative and must be added",
        ),
        (reconstruction + kl, "the KL term is not multiplied by KL_WEIGHT"),
        (reconstruction - kl, "the KL term is subtracted and not multiplied by KL_WEIGHT"),
        (
            reconstruction,
            "the KL term is missing (it vanishes only when z_mean = 0 and z_log_var = 0)",
        ),
    )
    return next((why for value, why in slips if abs(got - value) <= LOSS_TOLERANCE), "")


def verdict_loss_layer(data: dict[str, Any]) -> list[Check]:
    what = "CustomVariationalLayer()([x, z_decoded, z_mean, z_log_var])"

    def check() -> None:
        expect_ran(data, what)
        expect_close(
            "the layer's output",
            data["zero_code.output"],
            np.full((2, 28, 28, 1), 0.5),
            atol=0,
            hint="return the first input x unchanged, not the reconstruction",
        )
        expect_ran(data, f"{what}.losses")
        losses = np.asarray(data["zero_code.losses"])
        expect(
            len(losses) == 1,
            f"the layer should add exactly one loss with self.add_loss; it added {len(losses)}",
        )
        reconstruction = -(
            0.5 * np.log(0.25) + 0.5 * np.log(0.75)
        )  # cross-entropy of 0.5 against 0.25: 0.83698
        expect_close(
            "the loss when z_mean = 0 and z_log_var = 0",
            float(losses[0]),
            reconstruction,
            atol=LOSS_TOLERANCE,
            hint="mean binary cross-entropy over all pixels (the KL term is zero for a standard normal)",
        )
        z_mean, z_log_var = np.array(LOSS_CODE_MEAN), np.array(LOSS_CODE_LOG_VAR)
        # The KL term as the text of part 4 states it, and its weight there (5e-4).
        kl = float(np.mean(-np.mean(1 + z_log_var - z_mean**2 - np.exp(z_log_var), axis=-1)))
        weight = 5e-4
        expected = reconstruction + weight * kl
        code_losses = np.asarray(data["code.losses"])
        expect(
            len(code_losses) == 1,
            f"the layer should add exactly one loss with self.add_loss; it added {len(code_losses)}",
        )
        got = float(code_losses[0])
        slip = _kl_slip(got, reconstruction, kl, weight)
        expect(
            bool(np.isfinite(got)) and abs(got - expected) <= LOSS_TOLERANCE,
            f"the loss for z_mean = {z_mean.tolist()}, z_log_var = {z_log_var.tolist()} is {got:.5f}; expected "
            f"{expected:.5f} = reconstruction {reconstruction:.5f} + 5e-4 x KL {kl:.4f}: "
            + (
                slip
                or "KL is -mean over the latent dimensions of (1 + z_log_var - z_mean^2 - exp(z_log_var)), "
                "averaged over the batch and weighted by KL_WEIGHT"
            ),
        )

    return [(2, "the loss layer's output and loss", check)]


# --- part 5: the VAE model -----------------------------------------------------------------------------


def probe_vae_model(build_vae: Callable[..., Any]) -> dict[str, Any]:
    from course.stand_ins import stand_in_decoder, stand_in_encoder

    rec = probing.Recorder()
    encoder, decoder = stand_in_encoder(), stand_in_decoder()
    model = rec.attempt("build_vae(encoder, decoder)", lambda: build_vae(encoder, decoder, seed=0))
    if model is None:
        return rec.data
    import keras

    rec["type"] = type(model).__name__
    rec["is_model"] = isinstance(model, keras.Model)
    config = rec.attempt("model.get_config()", model.get_config)
    if config is not None:
        rec["config.json"] = config
    rec["given.json"] = [encoder.name, decoder.name]
    rec["input_shape.json"] = (
        [None if d is None else int(d) for d in getattr(model.inputs[0], "shape", ())]
        if getattr(model, "inputs", None)
        else None
    )
    rec["compiled"] = bool(getattr(model, "optimizer", None) is not None)
    images = np.random.default_rng(1).uniform(0, 1, (4, 28, 28, 1)).astype("float32")
    loss = rec.attempt(
        "vae.evaluate(images)", lambda: float(np.ravel(model.evaluate(images, verbose=0))[0])
    )
    if loss is not None:
        rec["loss"] = loss
    return rec.data


def verdict_vae_model(data: dict[str, Any]) -> list[Check]:
    def check() -> None:
        expect_ran(data, "build_vae(encoder, decoder)")
        expect(
            bool(data.get("is_model")),
            f"build_vae should return a keras.Model, not {data.get('type')}",
        )
        config = data.get("config.json")
        expect(
            isinstance(config, dict),
            "build_vae should return a functional keras.Model (keras.Model(image, output))",
        )
        encoder, decoder = (data.get("given.json") or ["", ""])[:2]
        problem = wiring_problem(config, str(encoder), str(decoder))
        expect(problem is None, problem or "")
        shape = data.get("input_shape.json")
        expect_shape("the VAE's input", shape or (), (None, 28, 28, 1))
        expect(
            bool(data.get("compiled")),
            "the VAE is not compiled: call vae.compile(optimizer=..., loss=None) inside build_vae",
        )
        expect_ran(data, "vae.evaluate(images)")
        loss = float(data["loss"])
        expect(
            np.isfinite(loss) and loss > 0,
            f"the VAE's loss on random images is {loss}; expected a positive number: is the loss layer in the model?",
        )

    return [(1, "the VAE builds, compiles and has a loss", check)]


# --- part 6: the data ----------------------------------------------------------------------------------


def probe_data(x_train: Any, x_test: Any) -> dict[str, Any]:
    rec = probing.Recorder()
    for name, value in (("x_train", x_train), ("x_test", x_test)):
        array = np.asarray(value)
        rec[f"{name}.shape.json"] = list(array.shape)
        rec[f"{name}.dtype"] = str(array.dtype)
        if array.size and array.dtype.kind in "fiub":
            rec[f"{name}.range"] = np.array([array.min(), array.max()], dtype=np.float64)
        rec[f"{name}.head"] = array[:100]
    return rec.data


def verdict_data(data: dict[str, Any]) -> list[Check]:
    from course import training_budget

    budget = training_budget()

    def check() -> None:
        expect_shape(
            "x_train",
            data["x_train.shape.json"],
            (budget.train_images, 28, 28, 1),
            "images need a channel axis: (N, 28, 28, 1)",
        )
        expect_shape("x_test", data["x_test.shape.json"], (10000, 28, 28, 1))
        expect(
            str(data["x_train.dtype"]) == "float32",
            f"x_train has dtype {data['x_train.dtype']}; expected float32",
        )
        low, high = (float(v) for v in data.get("x_train.range", (np.nan, np.nan)))
        expect(
            0.0 <= low and high <= 1.0,
            f"x_train ranges from {low:g} to {high:g}; expected [0, 1]: divide by 255",
        )

    return [(1, "x_train and x_test", check)]


# --- part 7: training ----------------------------------------------------------------------------------


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


# --- part 8: the manifold ------------------------------------------------------------------------------


def probe_manifold(manifold: Any, build_manifold: Callable[..., Any]) -> dict[str, Any]:
    from course.stand_ins import ProbeDecoder

    rec = probing.Recorder()
    rec["type"] = type(manifold).__name__
    array = np.asarray(manifold) if isinstance(manifold, np.ndarray) else None
    if array is not None and array.dtype.kind in "fiub":
        rec["manifold"] = array.astype(np.float32)
    # The layout, read through a decoder that needs no training: pixels (0, 0) and (0, 1) of each tile show its code.
    image = rec.attempt(
        "build_manifold(probe_decoder)", lambda: np.asarray(build_manifold(ProbeDecoder()))
    )
    if image is not None and image.dtype.kind in "fiub":
        rec["probe_image"] = image.astype(np.float32)
    return rec.data


def _layout_problem(z0: np.ndarray, z1: np.ndarray) -> str:
    """What is wrong with the codes read from the tiles (tile (i, j) should show z = (grid[j], grid[i])), or ""."""

    def along_rows(a: np.ndarray) -> bool:  # the same in every row, changing along a row
        return bool(np.allclose(a, a[:1, :], atol=1e-5)) and float(np.ptp(a)) > 1e-3

    def down_columns(a: np.ndarray) -> bool:  # the same in every column, changing down a column
        return along_rows(a.T)

    found = (
        f"found z[0] = {np.array2string(z0[0, :4], precision=2)}... along the first row and "
        f"z[1] = {np.array2string(z1[:4, 0], precision=2)}... down the first column"
    )
    if float(np.ptp(z0)) <= 1e-3 and float(np.ptp(z1)) <= 1e-3:
        return f"every tile shows the same code ({z0[0, 0]:.3g}, {z1[0, 0]:.3g}): each tile must decode its own code"
    if down_columns(z0) and along_rows(z1):
        return (
            "the tiles are transposed: z[0] changes down a column and z[1] along a row; expected z[0] to change "
            "along a row (column j shows grid[j]) and z[1] down a column (row i shows grid[i])"
        )
    if not (along_rows(z0) and down_columns(z1)):
        return (
            "the tiles are not where the text puts them: the tile in row i, column j must show z = (grid[j], grid[i]); "
            + found
            + "; check the reshape/transpose that tiles the digits"
        )
    if np.any(np.diff(z0[0]) < 0) or np.any(np.diff(z1[:, 0]) < 0):
        return (
            "the grid runs backwards: z[0] must increase along a row and z[1] down a column "
            "(grid ascending, tile (i, j) shows (grid[j], grid[i])); " + found
        )
    return ""


def verdict_manifold(data: dict[str, Any]) -> list[Check]:
    def check() -> None:
        expect(
            str(data.get("type")) == "ndarray",
            f"build_manifold should return a NumPy array, not {data.get('type')}",
        )
        expect("manifold" in data, "build_manifold should return an array of numbers")
        manifold = np.asarray(data["manifold"], dtype=np.float64)
        expect_shape(
            "the manifold image",
            manifold.shape,
            (420, 420),
            "15 x 15 tiles of 28 x 28 pixels in one 2-D array",
        )
        expect(
            bool(np.isfinite(manifold).all()) and manifold.min() >= 0 and manifold.max() <= 1,
            f"the manifold's pixels range from {np.nanmin(manifold):.3f} to {np.nanmax(manifold):.3f}; expected values in [0, 1]",
        )
        # The layout is judged on the probe decoder's picture, not on `manifold`: an undertrained decoder may
        # draw (almost) the same blur everywhere, and that is no fault of build_manifold.
        expect_ran(data, "build_manifold(probe_decoder)")
        image = np.asarray(data.get("probe_image", np.zeros(0)), dtype=np.float64)
        expect_shape(
            "build_manifold(decoder) for a probe decoder",
            image.shape,
            (420, 420),
            "15 x 15 tiles of 28 x 28 pixels in one 2-D array",
        )
        expect(
            bool(np.isfinite(image).all()),
            "build_manifold(decoder) for a probe decoder contains NaN or infinity",
        )
        problem = _layout_problem(image[0::28, 0::28], image[0::28, 1::28])
        if problem and not _layout_problem(image.T[0::28, 0::28], image.T[0::28, 1::28]):
            problem = (
                "the whole image is transposed (tiles and the digits in them): tile (i, j) must show "
                "z = (grid[j], grid[i]), z[0] changing along a row"
            )
        expect(
            not problem,
            "with a probe decoder whose tiles show their code in pixels (0, 0) and (0, 1): "
            + problem,
        )

    return [(2, "the manifold image and its layout", check)]


# --- the registry and the notebook's calls ----------------------------------------------------------

PROBES: dict[str, Probe] = {
    "test_encoder": Probe(1, ("build_encoder",), probe_encoder, verdict_encoder),
    "test_sampling": Probe(2, ("Sampling",), probe_sampling, verdict_sampling),
    "test_decoder": Probe(3, ("build_decoder",), probe_decoder, verdict_decoder),
    "test_loss_layer": Probe(4, ("CustomVariationalLayer",), probe_loss_layer, verdict_loss_layer),
    "test_vae_model": Probe(5, ("build_vae",), probe_vae_model, verdict_vae_model),
    "test_data": Probe(6, ("x_train", "x_test"), probe_data, verdict_data),
    "test_training": Probe(7, ("history", "encoder", "decoder"), probe_training, verdict_training),
    "test_manifold": Probe(8, ("manifold", "build_manifold"), probe_manifold, verdict_manifold),
}
"""Visible self-check cells by grade_id (the grader judges the same cells with the same verdicts)."""


def run_probe(probe: Probe, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The probe's data for the names it reads from ``namespace`` (a missing name is recorded, not raised)."""
    missing = [name for name in probe.names if name not in namespace]
    if missing:
        return {probing.ERRORS: {}, "missing.json": missing}
    return probe.probe(*(namespace[name] for name in probe.names))


def judge(probe: Probe, data: dict[str, Any]) -> Outcome:
    """The verdict on probe data; a name the notebook never defined fails every check of the cell."""
    missing = data.get("missing.json")
    if missing:
        names = ", ".join(missing)
        verb = "is" if len(missing) == 1 else "are"
        message = (
            f"{names} {verb} not defined: the cell that defines it did not run to the end. Fill in part "
            f"{probe.part}, run the cells above in order, and fix the first one that stops with an error "
            "(an earlier part's self-check says what is wrong there)"
        )
        return run_checks(
            [
                (points, label, lambda: expect(False, message))
                for points, label, _ in probe.verdict(data)
            ]
        )
    return run_checks(probe.verdict(data))


def report(part: int, outcome: Outcome, kind: str = "self-check") -> None:
    """Print the verdict the way the notebook shows it: passed, or an AssertionError naming every failure."""
    if outcome.full:
        print(f"Part {part} {kind} passed.")
        return
    raise AssertionError("\n".join(outcome.failures))


def judge_here(probe: Probe, namespace: Mapping[str, Any]) -> Outcome:
    """Probe and verdict in one process, the data passed through pack/unpack: exactly what the grader receives."""
    return judge(probe, probing.unpack(probing.pack(run_probe(probe, namespace))))


def _check(grade_id: str, namespace: Mapping[str, Any]) -> None:
    probe = PROBES[grade_id]
    report(probe.part, judge_here(probe, namespace))


def encoder(build_encoder: Callable[..., Any]) -> None:
    """Part 1: build_encoder(2) and build_encoder(3) give the right inputs and outputs."""
    _check("test_encoder", {"build_encoder": build_encoder})


def sampling(Sampling: type) -> None:
    """Part 2: the sampling layer adds fresh noise with the right scale."""
    _check("test_sampling", {"Sampling": Sampling})


def decoder(build_decoder: Callable[..., Any]) -> None:
    """Part 3: build_decoder(2, (14, 14, 64)) maps codes to 28x28x1 images in [0, 1]."""
    _check("test_decoder", {"build_decoder": build_decoder})


def loss_layer(CustomVariationalLayer: type) -> None:
    """Part 4: the loss layer passes x through and adds the right loss."""
    _check("test_loss_layer", {"CustomVariationalLayer": CustomVariationalLayer})


def vae_model(build_vae: Callable[..., Any]) -> None:
    """Part 5: build_vae wires stand-in parts into a compiled model with a loss."""
    _check("test_vae_model", {"build_vae": build_vae})


def data(x_train: Any, x_test: Any) -> None:
    """Part 6: the preprocessed arrays have the right shape, type and range."""
    _check("test_data", {"x_train": x_train, "x_test": x_test})


def training(history: Any, encoder: Any, decoder: Any) -> None:
    """Part 7: the history has the budget's epochs, and the trained model reconstructs far better than a fresh one."""
    _check("test_training", {"history": history, "encoder": encoder, "decoder": decoder})


def manifold(manifold: Any, build_manifold: Callable[..., Any]) -> None:
    """Part 8: the manifold is one 420x420 image in [0, 1], and build_manifold puts each code in its tile."""
    _check("test_manifold", {"manifold": manifold, "build_manifold": build_manifold})


__all__ = [
    "PROBES",
    "Probe",
    "decoder",
    "data",
    "encoder",
    "fmt_shape",
    "judge",
    "loss_layer",
    "manifold",
    "report",
    "run_probe",
    "sampling",
    "training",
    "vae_model",
]
