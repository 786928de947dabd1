"""What every self-check shares: the ``Probe`` record, and the steps that carry a model from the kernel to the verdict.

A probe runs in the student's kernel and its verdict in the grader's process; a model crosses that gap
only as ``.keras`` bytes (``course.probing``). Saving (``model_step``) and loading (``load_saved``) live
together so that both ends of the round trip change together; the hidden probes and verdicts
(``vae_grader.judge.hidden``) use the same steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from course import model_file, probing, untrusted
from course.checks import Check, expect, expect_ran


@dataclass(frozen=True)
class Probe:
    """One graded test cell: the notebook names its probe reads, what to run on them, how to judge the data."""

    part: int
    names: tuple[str, ...]
    probe: Callable[..., dict[str, Any]]
    verdict: Callable[[dict[str, Any]], list[Check]]
    diagnosis: Callable[[Mapping[str, Any]], dict[str, str]] | None = None
    """When a name is missing: a cause code read from the notebook's other names (``cause.json``)."""
    causes: Mapping[str, str] = field(default_factory=dict)
    """The message for each cause code, kept here: the kernel only names a code, never the text shown."""
    reads_mnist: bool = False
    """The verdict compares with MNIST (the grader reads it first, so a missing file flags the cell)."""


def load_saved(data: dict[str, Any], key: str, what: str) -> Any:
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
        return model_file.load_model(data[key + ".keras"])
    except untrusted.TooLarge as exc:  # its message already says what was too large, and the cap
        raise AssertionError(f"{what}: {exc}") from None
    except Exception as exc:
        raise AssertionError(
            f"{what} {'is' if what.startswith('the ') else 'returned'} a model the grader cannot load "
            f"({_cause(exc)}): use Keras's built-in layers and "
            "activations only (keras.layers: Conv2D, Dense, ...), no Lambda or custom layers"
        ) from None


def _cause(exc: Exception) -> str:
    """The first clause of a loading error, short enough for the 3 lines a self-check's message has."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = text.split(";")[0]
    cut = text.find(" (", 20)
    return (text[:cut] if len(text) > 100 and cut > 0 else text)[:120]


def model_step(rec: probing.Recorder, key: str, what: str, build: Callable[[], Any]) -> Any:
    model = rec.attempt(what, build)
    if model is not None:
        import keras

        rec[f"{key}.type"] = type(model).__name__
        rec[f"{key}.is_model"] = isinstance(model, keras.Model)
        blob = rec.attempt(f"saving {what}", lambda: model_file.model_bytes(model))
        if blob is not None:
            rec[f"{key}.keras"] = blob
    return model


def to_numpy(value: Any) -> np.ndarray:
    from keras import ops

    return np.asarray(ops.convert_to_numpy(value))
