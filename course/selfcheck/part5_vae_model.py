"""Part 5's self-check: build_vae wires the encoder and decoder it is given into a compiled VAE.

The probe hands ``build_vae`` the course's stand-in encoder and decoder (``course.stand_ins``) with weights
chosen here (``given_stand_ins``), so this part is judged on its own, whatever parts 1-4 do, and saves the
model it returns (``.keras``). The verdict judges only what it computes itself from that file:

* it **rebuilds the graph**: the saved functional graph is loaded with ``course.model_file.load_model``
  (``safe_mode``, standard layers only), the student's ``Sampling`` and ``CustomVariationalLayer`` replaced
  by the checker's own stand-ins for them (``_rebuild_archive``): a fixed function of [z_mean, z_log_var]
  (``SAMPLER_MIX``) and a layer that passes its first input through. No student code runs where the
  verdict runs, and those two layers are judged in parts 2 and 4;
* it checks that the rebuilt VAE holds the given weights, trainable, and **runs it** on images it chose:
  what the encoder, the sampler, the decoder and the loss layer receive, and what the VAE outputs, must
  equal what the checker computes from the stand-ins it built itself (``vae_problem``).

What the kernel states (its errors, a type name, the compile settings written in the model file) can
only fail the check, never pass it: the points need the wiring the checker recomputed.
"""

from __future__ import annotations

import functools
import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

from course import model_file, probing, untrusted
from course.checks import Check, expect, expect_ran
from course.selfcheck.probe import Probe, model_step, to_numpy

VISIBLE_SEED = 5
"""Seed of the given stand-ins' weights in the visible self-check (the hidden test uses its own)."""
SAMPLER_MIX = (0.7, -1.3)
"""The checker's stand-in sampler computes z = z_mean + SAMPLER_MIX * z_log_var: not the sampler the notebook asks
for (part 2 judges that), only a fixed function of both inputs, so that the checker can recompute every tensor of
the graph. Not zero and different in each dimension, so that a decoder fed z_mean, or a sampler fed
[z_log_var, z_mean], gives other values."""
WIRING_TOLERANCE = 1e-4
"""float32 through the same Dense layers in two processes: measured differences below 1e-6."""
MAX_CONFIG_BYTES = 4 * 2**20
"""Largest ``config.json`` the checker reads from the VAE's file (the master's VAE with the stand-ins: 9 kB)."""
ROLES = {"Sampling": "sampler", "CustomVariationalLayer": "loss"}
"""The notebook's two layer classes, by the class name the model file gives them, and the checker's stand-in
that replaces each when the graph is rebuilt."""


def given_stand_ins(seed: int = VISIBLE_SEED) -> tuple[Any, Any]:
    """The stand-in encoder and decoder with weights drawn from ``seed`` (NumPy, so every process draws the same).

    The probe gives these to ``build_vae``; the verdict builds them again to know what the VAE must compute.
    """
    from course.stand_ins import stand_in_decoder, stand_in_encoder

    rng = np.random.default_rng([seed, 5])
    encoder, decoder = stand_in_encoder(), stand_in_decoder()
    # Scales that keep z_mean and z_log_var near +-1 and the decoded pixels between 0.1 and 0.9.
    for model, scale in ((encoder, 0.05), (decoder, 0.5)):
        model.set_weights(
            [rng.normal(0, scale, w.shape).astype("float32") for w in model.get_weights()]
        )
    return encoder, decoder


def probe_images(seed: int = VISIBLE_SEED) -> np.ndarray:
    """The images the verdict runs the rebuilt VAE on (the probe never uses them: they stay on the checker's side)."""
    return (np.random.default_rng([seed, 6]).uniform(0, 1, (4, 28, 28, 1)) > 0.6).astype("float32")


def probe_vae_model(build_vae: Callable[..., Any]) -> dict[str, Any]:
    rec = probing.Recorder()
    encoder, decoder = given_stand_ins(VISIBLE_SEED)
    # Saved before anything runs it, so the file holds the given weights.
    model = model_step(
        rec, "vae", "build_vae(encoder, decoder)", lambda: build_vae(encoder, decoder, seed=0)
    )
    if model is None:
        return rec.data
    images = np.random.default_rng(1).uniform(0, 1, (4, 28, 28, 1)).astype("float32")
    # Only whether it raised is used (a model that cannot be evaluated fails); its value is never read. It runs
    # on the checker's layers, so a loss layer that adds no loss costs part 4, not this part.
    rec.attempt(
        "vae.evaluate(images)",
        lambda: with_checker_layers(rec.data.get("vae.keras")).evaluate(images, verbose=0),
    )
    return rec.data


# --- the graph, rebuilt by the checker ------------------------------------------------------------------


@functools.cache
def _stand_in_layers() -> dict[str, type]:
    """The checker's own layers that take the place of the student's Sampling and CustomVariationalLayer."""
    import keras

    class _Replacement(keras.layers.Layer):
        @classmethod
        def from_config(cls, config: Any) -> Any:
            name = config.get("name") if isinstance(config, dict) else None
            return cls(name=name if isinstance(name, str) else None)

        def load_own_variables(self, store: Any) -> None:
            """Whatever state the student's layer saved (a seed generator, a weight) is not the checker's."""

        def build(self, *args: Any, **kwargs: Any) -> None:
            self.built = True

    class CheckerSampling(_Replacement):
        def call(self, *inputs: Any, **kwargs: Any) -> Any:
            z_mean, z_log_var = keras.tree.flatten(inputs)
            # keras.ops, not NumPy's *: on PyTorch a NumPy array times a tensor is refused.
            return z_mean + keras.ops.multiply(np.array(SAMPLER_MIX, "float32"), z_log_var)

    class CheckerLossLayer(_Replacement):
        def call(self, *inputs: Any, **kwargs: Any) -> Any:
            tensors = keras.tree.flatten(inputs)
            # Some loss of every input, valid whatever their shapes, so that the compiled VAE can be evaluated and
            # trained with the student's compile settings; not the course's loss (part 4 judges that).
            self.add_loss(sum(keras.ops.mean(keras.ops.square(t)) for t in tensors))
            return tensors[0]

    return {"sampler": CheckerSampling, "loss": CheckerLossLayer}


def _registered(role: str) -> str:
    return f"course_checker>{role}"


def _rebuild_archive(blob: Any) -> tuple[bytes, dict[str, Any]]:
    """The model file with the notebook's two layers swapped for the checker's, and its config.

    Only a file as Keras writes it is read, with the bounds of ``model_file.model_file_members`` and a
    config of at most ``MAX_CONFIG_BYTES``, parsed with ``untrusted.parse_json``.
    """
    expect(isinstance(blob, bytes), "build_vae's model was not handed over as a .keras file")
    try:
        members = model_file.model_file_members(blob)
        config = untrusted.parse_json(
            members["config.json"], "the VAE's config.json", MAX_CONFIG_BYTES
        )
    except ValueError as exc:
        raise AssertionError(f"build_vae's model file cannot be read: {exc}") from None
    expect("metadata.json" in members, "build_vae's model file is not one Keras wrote")
    expect(
        isinstance(config, dict) and isinstance(config.get("config"), dict),
        "build_vae should return a functional keras.Model (keras.Model(image, output))",
    )
    layers = config["config"].get("layers")
    expect(
        isinstance(layers, list) and all(isinstance(layer, dict) for layer in layers),
        "build_vae should return a functional keras.Model (keras.Model(image, output))",
    )
    for layer in layers:
        role = ROLES.get(str(layer.get("class_name")))
        if role is not None:
            inner = layer.get("config") if isinstance(layer.get("config"), dict) else {}
            layer.update(
                module=None,
                class_name=_registered(role),
                registered_name=_registered(role),
                config={"name": inner.get("name", layer.get("name"))},
            )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("metadata.json", members["metadata.json"])
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", members["model.weights.h5"])
    return out.getvalue(), config


def load_vae(data: dict[str, Any], key: str, what: str) -> tuple[Any, dict[str, Any]]:
    """The VAE the probe saved under ``key``, rebuilt by the checker, and the model file's config."""
    expect_ran(data, what)
    if key + ".keras" not in data:
        expect(
            bool(data.get(f"{key}.is_model")),
            f"build_vae should return a keras.Model, not {data.get(f'{key}.type', 'nothing')}",
        )
        error = (data.get(probing.ERRORS) or {}).get(f"saving {what}")
        raise AssertionError(
            "build_vae returned a model that Keras cannot save"
            + (f" ({error})" if error else "")
            + ": build it with the functional API, keras.Model(image, output), not a subclass of keras.Model"
        )
    try:
        blob, config = _rebuild_archive(data[key + ".keras"])
    except AssertionError:
        raise
    except Exception as exc:
        raise AssertionError(
            f"build_vae's model file could not be read ({type(exc).__name__})"
        ) from None
    try:
        vae = _load_rebuilt(blob)
    except Exception as exc:
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise AssertionError(
            f"the grader cannot rebuild the model build_vae returned ({text}): build it with the functional "
            "API from the given encoder and decoder, one Sampling and one CustomVariationalLayer, and "
            "standard Keras layers only"
        ) from None
    return vae, config


def with_checker_layers(blob: Any) -> Any:
    """The VAE of ``blob`` rebuilt with the checker's sampler and loss layer, compiled with its own compile
    settings: what the probe evaluates or trains in the kernel, so that only build_vae's wiring and compile
    settings decide whether that step runs (the notebook's two layers are judged in parts 2 and 4)."""
    archive, config = _rebuild_archive(blob)
    vae = _load_rebuilt(archive)
    settings = compile_config(config)
    if settings is not None:
        vae.compile_from_config(settings)
    return vae


def _load_rebuilt(archive: bytes) -> Any:
    """A file from ``_rebuild_archive`` loaded with the checker's layers in place of the notebook's."""
    import keras

    layers = _stand_in_layers()
    with keras.saving.CustomObjectScope({_registered(role): layers[role] for role in layers}):
        return model_file.load_model(archive)


def _close(a: Any, b: Any) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.allclose(a, b, atol=WIRING_TOLERANCE, rtol=0))


def _received(vae: Any, layer: Any, images: np.ndarray) -> list[list[np.ndarray]]:
    """What ``layer`` receives inside the rebuilt VAE for ``images``, once per call of it in the graph."""
    import keras

    out = []
    for node in getattr(layer, "_inbound_nodes", []):
        # The node's own tensors: a nested model's ``.input`` is its inner Input, not what the VAE feeds it.
        tensors = list(node.input_tensors)
        out.append(
            [to_numpy(t) for t in keras.tree.flatten(keras.Model(vae.inputs, tensors)([images]))]
        )
    return out


def _receives(vae: Any, layer: Any, images: np.ndarray, expected: list[np.ndarray]) -> bool:
    """Whether ``layer`` is called exactly once in the VAE, on tensors equal to ``expected``."""
    seen = _received(vae, layer, images)
    return (
        len(seen) == 1
        and len(seen[0]) == len(expected)
        and all(_close(a, b) for a, b in zip(seen[0], expected))
    )


def _holding(vae: Any, given: Any) -> Any:
    """The layer of the VAE that is the given model (it holds the given weights), or None."""
    wanted = [np.asarray(w) for w in given.get_weights()]
    for layer in vae.layers:
        values = [to_numpy(w) for w in layer.weights]
        if len(values) == len(wanted) and all(_close(v, w) for v, w in zip(values, wanted)):
            return layer
    return None


def vae_problem(vae: Any, seed: int) -> str | None:
    """What is wrong with the rebuilt VAE's wiring, recomputed on the checker's images, or None."""
    import keras

    encoder, decoder = given_stand_ins(seed)
    if len(vae.inputs) != 1:
        return f"the VAE should have one input, the image; it has {len(vae.inputs)}"
    shape = tuple(None if d is None else int(d) for d in vae.inputs[0].shape)
    if shape != (None, 28, 28, 1):
        return f"the VAE's input has shape {shape}; expected (None, 28, 28, 1): keras.Input(shape=(28, 28, 1))"
    # The given weights, as the checker drew them, must be in the VAE and trainable.
    given = [np.asarray(w) for w in encoder.get_weights() + decoder.get_weights()]
    trainable = [to_numpy(w) for w in vae.trainable_weights]
    every = [to_numpy(w) for w in vae.weights]
    if not all(any(_close(v, w) for v in every) for w in given):
        return "build_vae should use the encoder and decoder it is given (call them on the input), not build new ones"
    if not all(any(_close(v, w) for v in trainable) for w in given):
        return "the given encoder and decoder must stay trainable inside the VAE (do not set trainable=False)"
    # Every tensor the checker can name, computed by the checker from the stand-ins it built itself.
    images = probe_images(seed)
    z_mean, z_log_var = (to_numpy(t) for t in encoder(images))
    z = z_mean + np.array(SAMPLER_MIX, "float32") * z_log_var
    z_decoded = to_numpy(decoder(z))
    outer_encoder, outer_decoder = _holding(vae, encoder), _holding(vae, decoder)
    if outer_encoder is not None and not all(
        len(seen) == 1 and _close(seen[0], images) for seen in _received(vae, outer_encoder, images)
    ):
        return "the encoder should be called on the VAE's image input"
    layers = _stand_in_layers()
    found = {role: [l for l in vae.layers if isinstance(l, cls)] for role, cls in layers.items()}
    if len(found["sampler"]) == 1 and not _receives(
        vae, found["sampler"][0], images, [z_mean, z_log_var]
    ):
        return "the Sampling layer should receive [z_mean, z_log_var], the encoder's two outputs, in that order"
    if outer_decoder is not None and not all(
        len(seen) == 1 and _close(seen[0], z) for seen in _received(vae, outer_decoder, images)
    ):
        return "the decoder should be called on the sampled z, the Sampling layer's output"
    for name, role in ROLES.items():
        if len(found[role]) != 1:
            return (
                f"the VAE should contain one {name} layer on the way from its input to its output; "
                f"it contains {len(found[role])}"
            )
    loss = found["loss"][0]
    if not _receives(vae, loss, images, [images, z_decoded, z_mean, z_log_var]):
        return "CustomVariationalLayer should receive [image, z_decoded, z_mean, z_log_var], in that order"
    outputs = keras.tree.flatten(vae.outputs)
    if len(outputs) != 1 or outputs[0] is not loss.output:
        return "the VAE's output should be the loss layer's output (one output, nothing else)"
    out = keras.tree.flatten(keras.Model(vae.inputs, outputs)([images]))
    if not _close(to_numpy(out[0]), images):
        return "the VAE's output should be the loss layer's output (one output, nothing else)"
    return None


def compile_config(config: dict[str, Any]) -> dict[str, Any] | None:
    """The compile settings written in the model file (a statement of the kernel: it can only fail a check)."""
    value = config.get("compile_config")
    return value if isinstance(value, dict) and "optimizer" in value else None


def verdict_vae_model(data: dict[str, Any]) -> list[Check]:
    def check() -> None:
        vae, config = load_vae(data, "vae", "build_vae(encoder, decoder)")
        problem = vae_problem(vae, VISIBLE_SEED)
        expect(problem is None, problem or "")
        expect(
            compile_config(config) is not None,
            "the VAE is not compiled: call vae.compile(optimizer=..., loss=None) inside build_vae",
        )
        expect_ran(data, "vae.evaluate(images)")

    return [(1, "the VAE builds, compiles and has a loss", check)]


__all__ = [
    "SAMPLER_MIX",
    "VISIBLE_SEED",
    "compile_config",
    "given_stand_ins",
    "load_vae",
    "probe_images",
    "probe_vae_model",
    "vae_problem",
    "verdict_vae_model",
    "with_checker_layers",
]


CHECK = Probe(5, ("build_vae",), probe_vae_model, verdict_vae_model)
"""The test cell ``test_vae_model``: what the probe reads, the probe and its verdict."""
