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
from course.checks import Check, Outcome, expect, expect_close, expect_ran, expect_shape, fmt_shape, run_checks


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
        expect(bool(data.get(f"{key}.is_model")), f"{what} should return a keras.Model, not {data.get(f'{key}.type', 'nothing')}")
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


def verdict_encoder(data: dict[str, Any]) -> list[Check]:
    def check() -> None:
        enc = _load(data, "encoder_2", "build_encoder(2)")
        expect(len(enc.outputs) == 2, f"the encoder should have two outputs, [z_mean, z_log_var]; it has {len(enc.outputs)}")
        expect_shape("the encoder's input", enc.inputs[0].shape, (None, 28, 28, 1), "use keras.Input(shape=(28, 28, 1))")
        expect_shape("z_mean", enc.outputs[0].shape, (None, 2), "check latent_dim")
        expect_shape("z_log_var", enc.outputs[1].shape, (None, 2), "check latent_dim")
        enc3 = _load(data, "encoder_3", "build_encoder(3)")
        expect_shape("z_mean from build_encoder(3)", enc3.outputs[0].shape, (None, 3), "use the latent_dim argument, not a fixed 2")

    return [(2, "the encoder's inputs and outputs", check)]


# --- part 2: the sampling layer -----------------------------------------------------------------------


def probe_sampling(Sampling: type) -> dict[str, Any]:
    rec = probing.Recorder()
    z_mean = np.full((4, 2), 3.0, "float32")
    layer = rec.attempt("Sampling(seed=1)", lambda: Sampling(seed=1))
    if layer is not None:
        for key, log_var in (("z", 0.0), ("z_tiny", -40.0), ("z_again", 0.0)):
            what = f"Sampling()([z_mean, z_log_var = {log_var:g}])"
            z = rec.attempt(what, lambda: _numpy(layer([z_mean, np.full((4, 2), log_var, "float32")])))
            if z is not None:
                rec[key] = z
    return rec.data


def verdict_sampling(data: dict[str, Any]) -> list[Check]:
    z_mean = np.full((4, 2), 3.0)

    def check() -> None:
        expect_ran(data, "Sampling(seed=1)")
        expect_ran(data, "Sampling()([z_mean, z_log_var = 0])")
        z = np.asarray(data["z"], dtype=np.float64)
        expect_shape("the sampled z", z.shape, (4, 2), "z has the shape of z_mean")
        expect(not np.allclose(z, z_mean), "z equals z_mean exactly: the layer adds no noise (multiply epsilon in)")
        expect_ran(data, "Sampling()([z_mean, z_log_var = -40])")
        expect_close("z for a tiny variance (z_log_var = -40)", data["z_tiny"], z_mean, atol=1e-3,
                     hint="with almost no variance z must be almost exactly z_mean")
        expect_ran(data, "Sampling()([z_mean, z_log_var = 0])")
        z_again = np.asarray(data["z_again"], dtype=np.float64)
        expect(z_again.shape != z.shape or not np.allclose(z, z_again),
               "two calls gave the same z: draw fresh noise with seed=self.seed_generator")

    return [(2, "the sampling layer adds fresh noise", check)]


# --- part 3: the decoder -----------------------------------------------------------------------------


def probe_decoder(build_decoder: Callable[..., Any]) -> dict[str, Any]:
    rec = probing.Recorder()
    _model_step(rec, "decoder", "build_decoder(2, (14, 14, 64))", lambda: build_decoder(2, (14, 14, 64)))
    return rec.data


def verdict_decoder(data: dict[str, Any]) -> list[Check]:
    def check() -> None:
        dec = _load(data, "decoder", "build_decoder(2, (14, 14, 64))")
        expect_shape("the decoder's input", dec.inputs[0].shape, (None, 2), "the input is a latent code of length latent_dim")
        expect_shape("the decoded image", dec.outputs[0].shape, (None, 28, 28, 1),
                     "Reshape to shape_before_flattening, then one stride-2 Conv2DTranspose and a 1-filter Conv2D")
        # Ordinary codes plus extreme ones (+-50): a ReLU or linear last layer leaves [0, 1] there even untrained.
        codes = np.concatenate([np.random.default_rng(0).normal(0, 3, (16, 2)), [[50, 50], [-50, -50], [50, -50], [-50, 50]]])
        pixels = _numpy(dec(codes.astype("float32")))
        expect(bool(np.isfinite(pixels).all()) and pixels.min() >= 0.0 and pixels.max() <= 1.0,
               f"for codes between -50 and 50 the decoded pixels range from {np.nanmin(pixels):.3f} to {np.nanmax(pixels):.3f}; "
               "they must lie in [0, 1] for every code: end with a sigmoid")
        expect(float(pixels.std()) > 1e-6,
               f"every decoded pixel is {float(pixels.flat[0]):.3f} whatever the code, so nothing can be learned "
               "(a softmax over one channel is always 1): end with a sigmoid")

    return [(2, "the decoder's input, output and pixel range", check)]


# --- part 4: the loss layer ----------------------------------------------------------------------------


def loss_layer_result(rec: probing.Recorder, key: str, layer_class: type, inputs: list[np.ndarray]) -> None:
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


def probe_loss_layer(CustomVariationalLayer: type) -> dict[str, Any]:
    rec = probing.Recorder()
    half = np.full((2, 28, 28, 1), 0.5, "float32")
    zeros = np.zeros((2, 2), "float32")
    loss_layer_result(rec, "zero_code", CustomVariationalLayer, [half, np.full((2, 28, 28, 1), 0.25, "float32"), zeros, zeros])
    return rec.data


def verdict_loss_layer(data: dict[str, Any]) -> list[Check]:
    what = "CustomVariationalLayer()([x, z_decoded, z_mean, z_log_var])"

    def check() -> None:
        expect_ran(data, what)
        expect_close("the layer's output", data["zero_code.output"], np.full((2, 28, 28, 1), 0.5), atol=0,
                     hint="return the first input x unchanged, not the reconstruction")
        expect_ran(data, f"{what}.losses")
        losses = np.asarray(data["zero_code.losses"])
        expect(len(losses) == 1, f"the layer should add exactly one loss with self.add_loss; it added {len(losses)}")
        expected = -(0.5 * np.log(0.25) + 0.5 * np.log(0.75))  # cross-entropy of 0.5 against 0.25; the KL term is 0 here
        expect_close("the loss when z_mean = 0 and z_log_var = 0", float(losses[0]), expected, atol=1e-5,
                     hint="mean binary cross-entropy over all pixels (the KL term is zero for a standard normal)")

    return [(2, "the loss layer's output and loss", check)]


# --- part 5: the VAE model -----------------------------------------------------------------------------


def probe_vae_model(build_vae: Callable[..., Any]) -> dict[str, Any]:
    from course.stand_ins import stand_in_decoder, stand_in_encoder

    rec = probing.Recorder()
    model = rec.attempt("build_vae(encoder, decoder)", lambda: build_vae(stand_in_encoder(), stand_in_decoder(), seed=0))
    if model is None:
        return rec.data
    import keras

    rec["type"] = type(model).__name__
    rec["is_model"] = isinstance(model, keras.Model)
    rec["input_shape.json"] = [None if d is None else int(d) for d in getattr(model.inputs[0], "shape", ())] \
        if getattr(model, "inputs", None) else None
    rec["compiled"] = bool(getattr(model, "optimizer", None) is not None)
    images = np.random.default_rng(1).uniform(0, 1, (4, 28, 28, 1)).astype("float32")
    loss = rec.attempt("vae.evaluate(images)", lambda: float(np.ravel(model.evaluate(images, verbose=0))[0]))
    if loss is not None:
        rec["loss"] = loss
    return rec.data


def verdict_vae_model(data: dict[str, Any]) -> list[Check]:
    def check() -> None:
        expect_ran(data, "build_vae(encoder, decoder)")
        expect(bool(data.get("is_model")), f"build_vae should return a keras.Model, not {data.get('type')}")
        shape = data.get("input_shape.json")
        expect_shape("the VAE's input", shape or (), (None, 28, 28, 1))
        expect(bool(data.get("compiled")), "the VAE is not compiled: call vae.compile(optimizer=..., loss=None) inside build_vae")
        expect_ran(data, "vae.evaluate(images)")
        loss = float(data["loss"])
        expect(np.isfinite(loss) and loss > 0,
               f"the VAE's loss on random images is {loss}; expected a positive number: is the loss layer in the model?")

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
        expect_shape("x_train", data["x_train.shape.json"], (budget.train_images, 28, 28, 1), "images need a channel axis: (N, 28, 28, 1)")
        expect_shape("x_test", data["x_test.shape.json"], (10000, 28, 28, 1))
        expect(str(data["x_train.dtype"]) == "float32", f"x_train has dtype {data['x_train.dtype']}; expected float32")
        low, high = (float(v) for v in data.get("x_train.range", (np.nan, np.nan)))
        expect(0.0 <= low and high <= 1.0, f"x_train ranges from {low:g} to {high:g}; expected [0, 1]: divide by 255")

    return [(1, "x_train and x_test", check)]


# --- part 7: training ----------------------------------------------------------------------------------


def probe_training(history: Any, vae: Any, x_val: Any) -> dict[str, Any]:
    import keras

    rec = probing.Recorder()
    logs = getattr(history, "history", None)
    if isinstance(logs, Mapping):
        rec["history.json"] = {str(k): [float(v) for v in np.ravel(np.asarray(vals, dtype=np.float64))] for k, vals in logs.items()}
    images = np.asarray(x_val)[:VALIDATION_SAMPLE]
    # The loss the student's own model reaches, against the same model with fresh weights: a judgement
    # relative to the student's loss (part 4 may scale it differently), not an absolute level.
    trained = rec.attempt("vae.evaluate(x_val)", lambda: float(np.ravel(vae.evaluate(images, verbose=0))[0]))
    if trained is not None:
        rec["trained_loss"] = trained

    def fresh_loss() -> float:
        keras.utils.set_random_seed(7)
        fresh = keras.models.clone_model(vae)
        fresh.compile(optimizer="adam", loss=None)
        return float(np.ravel(fresh.evaluate(images, verbose=0))[0])

    fresh = rec.attempt("the same VAE with fresh weights (keras.models.clone_model)", fresh_loss)
    if fresh is not None:
        rec["fresh_loss"] = fresh
    return rec.data


VALIDATION_SAMPLE = 500
"""Validation images the training self-check evaluates (the grading budget validates on 500)."""
LEARNED = 0.9
"""The trained loss must be below this share of the fresh model's. Measured (master, grading budget,
10 seeds): val_loss 0.215-0.239 against 0.695 with fresh weights, a share of 0.31-0.34; a decoder that
cannot learn (softmax output) stays at 1.00."""


def verdict_training(data: dict[str, Any]) -> list[Check]:
    from course import training_budget

    budget = training_budget()

    def check() -> None:
        logs = data.get("history.json")
        expect(isinstance(logs, dict), "keep the value returned by vae.fit(...) in a variable called history")
        expect("val_loss" in logs, "no val_loss in the history: pass validation_data=(x_val, None) to fit")
        epochs = len(logs.get("loss", []))
        expect(epochs == budget.epochs,
               f"the model trained for {epochs} epoch(s); the budget says {budget.epochs}: use epochs=budget.epochs")
        final_val = logs["val_loss"][-1]
        expect(bool(np.isfinite(final_val)), f"the final val_loss is {final_val}: training diverged (a KL term with the "
                                             "wrong sign in part 4 does this)")
        expect_ran(data, "vae.evaluate(x_val)")
        expect_ran(data, "the same VAE with fresh weights (keras.models.clone_model)",
                   "the layers of parts 2 and 4 need a working get_config")
        trained, fresh = float(data["trained_loss"]), float(data["fresh_loss"])
        expect(bool(np.isfinite(trained)) and trained < LEARNED * fresh,
               f"training did not lower the loss: {trained:.4g} on the validation images, against {fresh:.4g} for the same "
               "model with fresh weights. If an earlier self-check fails (the decoder's output, part 3), fix that part first")

    return [(2, "the training history and the loss it reached", check)]


# --- part 8: the manifold ------------------------------------------------------------------------------


def probe_manifold(manifold: Any) -> dict[str, Any]:
    rec = probing.Recorder()
    rec["type"] = type(manifold).__name__
    array = np.asarray(manifold) if isinstance(manifold, np.ndarray) else None
    if array is not None and array.dtype.kind in "fiub":
        rec["manifold"] = array.astype(np.float32)
    return rec.data


def verdict_manifold(data: dict[str, Any]) -> list[Check]:
    def check() -> None:
        expect(str(data.get("type")) == "ndarray", f"build_manifold should return a NumPy array, not {data.get('type')}")
        expect("manifold" in data, "build_manifold should return an array of numbers")
        manifold = np.asarray(data["manifold"], dtype=np.float64)
        expect_shape("the manifold image", manifold.shape, (420, 420), "15 x 15 tiles of 28 x 28 pixels in one 2-D array")
        expect(bool(np.isfinite(manifold).all()) and manifold.min() >= 0 and manifold.max() <= 1,
               f"the manifold's pixels range from {np.nanmin(manifold):.3f} to {np.nanmax(manifold):.3f}; expected values in [0, 1]")
        expect(manifold.std() > 0.05, "the manifold is (almost) a flat image: did every tile get a different code?")

    return [(2, "the manifold image", check)]


# --- the registry and the notebook's calls ----------------------------------------------------------

PROBES: dict[str, Probe] = {
    "test_encoder": Probe(1, ("build_encoder",), probe_encoder, verdict_encoder),
    "test_sampling": Probe(2, ("Sampling",), probe_sampling, verdict_sampling),
    "test_decoder": Probe(3, ("build_decoder",), probe_decoder, verdict_decoder),
    "test_loss_layer": Probe(4, ("CustomVariationalLayer",), probe_loss_layer, verdict_loss_layer),
    "test_vae_model": Probe(5, ("build_vae",), probe_vae_model, verdict_vae_model),
    "test_data": Probe(6, ("x_train", "x_test"), probe_data, verdict_data),
    "test_training": Probe(7, ("history", "vae", "x_val"), probe_training, verdict_training),
    "test_manifold": Probe(8, ("manifold",), probe_manifold, verdict_manifold),
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
        message = f"{', '.join(missing)} is not defined: run the cells above this one (and fill in part {probe.part})"
        return run_checks([(points, label, lambda: expect(False, message)) for points, label, _ in probe.verdict(data)])
    return run_checks(probe.verdict(data))


def report(part: int, outcome: Outcome, kind: str = "self-check") -> None:
    """Print the verdict the way the notebook shows it: passed, or an AssertionError naming every failure."""
    if outcome.full:
        print(f"Part {part} {kind} passed.")
        return
    raise AssertionError("\n".join(outcome.failures))


def _check(grade_id: str, namespace: Mapping[str, Any]) -> None:
    probe = PROBES[grade_id]
    data = probing.unpack(probing.pack(run_probe(probe, namespace)))  # exactly what the grader receives
    report(probe.part, judge(probe, data))


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


def training(history: Any, vae: Any, x_val: Any) -> None:
    """Part 7: the training history has the budget's epochs, and the model's loss fell well below a fresh model's."""
    _check("test_training", {"history": history, "vae": vae, "x_val": x_val})


def manifold(manifold: Any) -> None:
    """Part 8: the manifold is one 420x420 image of values in [0, 1]."""
    _check("test_manifold", {"manifold": manifold})


__all__ = ["PROBES", "Probe", "decoder", "data", "encoder", "fmt_shape", "judge", "loss_layer", "manifold",
           "report", "run_probe", "sampling", "training", "vae_model"]
