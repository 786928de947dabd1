"""Part 5's self-check: build_vae wires stand-in parts into a compiled model that has a loss.

The probe builds the VAE from the course's stand-in encoder and decoder (``course.stand_ins``), so this
part is judged on its own, whatever parts 1-4 do; the wiring is read from the model's config
(``course.architecture.wiring_problem``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from course import probing
from course.architecture import wiring_problem
from course.checks import Check, expect, expect_ran, expect_shape


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
