"""Turning what a student's code computes into plain data, and back.

The course's checks never ask the student's code whether it is right. They ask it to *compute*
things (a model built by ``build_encoder``, draws of the sampling layer for chosen inputs, the
loss for a chosen batch) and judge the numbers. In the notebook both halves run in the student's
kernel. When the notebook is graded, only the first half does: the grader sends a probe into the
sandboxed kernel, receives the data this module packs, and judges it in its own process, where no
student code runs (see the grader's ``judge`` module). Whatever the kernel does to itself, it can
only hand over data, and data is checked against what the grader computes on its own.

The format is an ``.npz`` archive read with ``allow_pickle=False``: NumPy arrays, plus two kinds of
value by key suffix: ``*.keras`` holds a model saved in Keras's own format (the grader loads it with
``safe_mode``, so only standard layers load), ``*.json`` holds JSON. Nothing in it can execute code
when it is read.
"""

from __future__ import annotations

import base64
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

MIME = "application/vnd.vae-course.probe+base64"
"""The display type a probe's data travels in from the kernel to the grader."""
ERRORS = "errors.json"
"""Key of the probe data that records, per step, what the student's code raised."""


def pack(data: Mapping[str, Any]) -> bytes:
    """Data (arrays, numbers, strings, ``bytes`` under ``*.keras``, JSON-able values under ``*.json``) -> bytes."""
    arrays: dict[str, np.ndarray] = {}
    for key, value in data.items():
        if key.endswith(".keras"):
            arrays[key] = np.frombuffer(bytes(value), dtype=np.uint8)
        elif key.endswith(".json"):
            arrays[key] = np.array(json.dumps(value, default=_jsonable))
        else:
            arrays[key] = np.asarray(value)
            if arrays[key].dtype == object:
                raise TypeError(f"probe value {key!r} is not numeric data")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


MAX_UNPACKED_BYTES = 256 * 2**20
"""Largest total size the archive may declare once unpacked; the real answers need at most ~20 MB (the sampler's
20,000 draws and the trained models). A compressed archive of zeros could otherwise fill the reader's memory."""


def unpack(blob: bytes) -> dict[str, Any]:
    """The inverse of :func:`pack`; never unpickles, never runs code, never inflates past ``MAX_UNPACKED_BYTES``."""
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        declared = sum(info.file_size for info in archive.infolist())
        if declared > MAX_UNPACKED_BYTES or any(
            info.compress_type != zipfile.ZIP_STORED for info in archive.infolist()
        ):
            raise ValueError(
                f"the archive declares {declared} bytes or is compressed; pack() writes neither"
            )
    out: dict[str, Any] = {}
    with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
        for key in archive.files:
            value = archive[key]
            if key.endswith(".keras"):
                out[key] = value.astype(np.uint8).tobytes()
            elif key.endswith(".json"):
                out[key] = json.loads(str(value))
            else:
                out[key] = value
    return out


def emit(data: Mapping[str, Any]) -> None:
    """Hand probe data to whoever runs the kernel (a display output of type :data:`MIME`)."""
    from IPython.display import display

    display({MIME: base64.b64encode(pack(data)).decode("ascii")}, raw=True)


def model_bytes(model: Any) -> bytes:
    """A Keras model as the bytes of a ``.keras`` file (raises what saving raises)."""
    import keras

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        keras.saving.save_model(model, path)
        with open(path, "rb") as handle:
            return handle.read()


MAX_MODEL_PARAMETERS = 20_000_000
"""The course's models have 494,244 (encoder) and 56,385 (decoder) parameters; a stride mistake gives ~1.7 M."""
MAX_ACTIVATION_VALUES = 2_000_000
"""Values one layer may output per image (the largest in the course: 28 x 28 x 64 = 50,176): a model that
upsamples to huge feature maps could otherwise exhaust the memory of whoever runs it."""


def load_model(blob: bytes) -> Any:
    """A model from :func:`model_bytes`, loaded with ``safe_mode`` and no custom objects (standard layers only),
    refused before it is ever run when it is far larger than anything the course builds."""
    import keras

    from course.architecture import flat_layers

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        with open(path, "wb") as handle:
            handle.write(blob)
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    if model.count_params() > MAX_MODEL_PARAMETERS:
        raise ValueError(
            f"the model has {model.count_params():,} parameters, far more than the course's models"
        )
    for layer in flat_layers(model):
        try:
            shapes = [tuple(t.shape) for t in keras.tree.flatten(layer.output)]
        except (AttributeError, ValueError):
            continue
        for shape in shapes:
            values = int(np.prod([d for d in shape[1:] if d is not None] or [1]))
            if values > MAX_ACTIVATION_VALUES:
                raise ValueError(
                    f"layer {layer.name} outputs {values:,} values per image, far more than the course's models"
                )
    return model


class Recorder:
    """Collects a probe's data; :meth:`attempt` runs one step of student code and records what it raised."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {ERRORS: {}}

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value

    def attempt(self, what: str, fn: Callable[[], Any]) -> Any:
        """``fn()``, or None after recording "what raised Error: message" for the verdict."""
        try:
            return fn()
        except NotImplementedError:
            self.data[ERRORS][what] = "NotImplementedError"
        except Exception as exc:  # the student's code may raise anything
            self.data[ERRORS][what] = f"{type(exc).__name__}: {_first_line(exc)}"
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else "(no message)"


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return repr(value)[:200]
