"""A model handed over as a ``.keras`` file: written in the kernel, read by the grader only within bounds.

:func:`model_bytes` saves a model in the kernel; :func:`load_model` loads it where the verdict runs, with
``safe_mode`` and no custom objects (standard layers only). Before Keras sees anything it opens the file
itself (members, declared and real sizes, compression ratio), parses ``config.json`` with the bounded
reader of ``course.untrusted``, sizes the model from its config alone (parameters, the largest layer
output, floating-point operations per image: :func:`model_cost`) and checks the HDF5 weights file's
metadata (datasets, declared sizes, chunk grids, links) before Keras reads a byte of it. Each cap below
says what the course's real models measure and what margin it leaves.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from course.model_size import (
    MAX_ACTIVATION_VALUES,
    MAX_MODEL_PARAMETERS,
    MAX_TENSOR_RANK,
    model_cost,
)
from course.untrusted import first_line, open_zip, parse_json, read_member, too_large


def model_bytes(model: Any) -> bytes:
    """A Keras model as the bytes of a ``.keras`` file (raises what saving raises)."""
    import keras

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        keras.saving.save_model(model, path)
        with open(path, "rb") as handle:
            return handle.read()


# --- the model file: members ------------------------------------------------------------------------
#
# Measured on the master's models (Keras 3.15.1, as ``model_bytes`` writes them: three members, stored):
#   encoder  2,016,111 bytes: config.json  8,669, metadata.json 64, model.weights.h5 2,007,048
#   decoder    249,094 bytes: config.json  4,328, metadata.json 64, model.weights.h5   244,372
#   vae      2,275,150 bytes: config.json 16,356, metadata.json 64, model.weights.h5 2,258,400
# The correct variants of tests/vae_samples/demo.py: config.json of 4,346 to 11,361 bytes (the encoder written
# with activation layers), weights files within 10 kB of the master's; the VAE after fit: 6,694,918 bytes.

MAX_MODEL_FILE_BYTES = 128 * 2**20
"""Largest ``.keras`` file read. Measured: the master's VAE, 2.3 MB, 6.7 MB after ``fit`` (Adam's moments
saved with it); a model at ``MAX_MODEL_PARAMETERS`` in float32 holds 80 MB of weights. The probe archive
that carries it is smaller still (the judge reads at most 64 MiB of base64)."""
MAX_MODEL_FILE_MEMBERS = 8
"""Members a ``.keras`` file may have. Measured: 3 in every real one (config.json, metadata.json,
model.weights.h5); Keras adds an ``assets/`` folder only for layers with files (text lookups), which no
course model has, and only the three names are accepted."""
MAX_CONFIG_BYTES = 4 * 2**20
"""Largest ``config.json``. Measured: 4,328 bytes (the master's decoder) to 16,356 (the master's VAE);
4 MiB is ~250x the largest."""
MAX_METADATA_BYTES = 64 * 2**10
"""Largest ``metadata.json``. Measured: 64 bytes in every real file (Keras's version and the date)."""
MAX_WEIGHTS_BYTES = MAX_MODEL_FILE_BYTES
"""Largest ``model.weights.h5``. Measured: 244,372 bytes (decoder) to 2,258,400 (VAE), 6,678,168 for the
VAE after ``fit``; its datasets are bounded on their own below (``MAX_H5_*``)."""
MAX_COMPRESSION_RATIO = 20
"""Most a compressed member may inflate (declared size over stored size) once it is larger than
``COMPRESSION_RATIO_FLOOR``. Measured: Keras stores every member uncompressed (ratio 1); DEFLATE brings a real
config.json down 11x (the master's VAE: 16,356 to 1,440 bytes) and real weights 1.14x, while a bomb of
zeros or spaces reaches ~1,000x."""
COMPRESSION_RATIO_FLOOR = 1 * 2**20
"""Below this declared size a member's compression ratio is not checked (tiny files of zeros deflate far
beyond any ratio, harmlessly)."""
_MODEL_MEMBERS = {
    "config.json": MAX_CONFIG_BYTES,
    "metadata.json": MAX_METADATA_BYTES,
    "model.weights.h5": MAX_WEIGHTS_BYTES,
}


def model_file_members(blob: bytes) -> dict[str, bytes]:
    """The members of a ``.keras`` file, each checked against its cap before and while it is read.

    Only ``config.json``, ``metadata.json`` and ``model.weights.h5`` are accepted (the first and last
    required), stored or DEFLATE'd, each declared size within its cap, compressed members within
    ``MAX_COMPRESSION_RATIO``; then every member is read in chunks, counting real bytes (see
    :func:`read_member`). Raises ``ValueError`` with one line.
    """
    if not isinstance(blob, (bytes, bytearray)):
        raise ValueError("the model was not handed over as the bytes of a .keras file")
    if len(blob) > MAX_MODEL_FILE_BYTES:
        raise too_large(
            f"{MAX_MODEL_FILE_BYTES:,} bytes of model file",
            f"the model file is {len(blob):,} bytes",
        )
    out: dict[str, bytes] = {}
    with open_zip(bytes(blob), MAX_MODEL_FILE_MEMBERS, "the model file") as archive:
        infos = archive.infolist()
        for info in infos:
            name = info.filename
            cap = _MODEL_MEMBERS.get(name)
            if cap is None:
                raise too_large(
                    "the three files a saved course model has (config.json, metadata.json, "
                    "model.weights.h5)",
                    f"the model file also holds {name[:60]!r}",
                )
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ValueError(
                    f"the model file's {name} is compressed in a way Keras never writes"
                )
            if info.file_size > cap:
                raise too_large(
                    f"{cap:,} bytes of the model file's {name}",
                    f"it declares {info.file_size:,} bytes",
                )
            if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
                raise ValueError(
                    f"the model file's {name} declares {info.file_size:,} bytes but stores {info.compress_size:,}"
                )
            if (
                info.file_size > COMPRESSION_RATIO_FLOOR
                and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1)
            ):
                raise too_large(
                    f"{MAX_COMPRESSION_RATIO} times the compressed size of the model file's {name}",
                    f"it inflates {info.file_size // max(info.compress_size, 1):,} times",
                )
        missing = {"config.json", "model.weights.h5"} - {info.filename for info in infos}
        if missing:
            raise ValueError(f"the model file has no {' and no '.join(sorted(missing))}")
        for info in infos:
            out[info.filename] = read_member(
                archive, info, _MODEL_MEMBERS[info.filename], f"the model file's {info.filename}"
            )
    return out


# --- the model file: its weights, from the HDF5 metadata alone --------------------------------------
#
# Measured on the master's models: model.weights.h5 holds 6 datasets (decoder), 14 (encoder), 22 (VAE: its
# encoder's and decoder's, 2 optimizer scalars), 62 (VAE after fit: Adam's moments), all contiguous float32
# (int64 for the optimizer's step; no chunks, no filters), 18 to 106 objects (groups and datasets); each
# group carries one attribute (its layer's name, a short string).

MAX_H5_OBJECTS = 10_000
"""Groups and datasets in ``model.weights.h5``. Measured: 66 in the master's VAE, 106 after ``fit`` (about 5
per weighted layer); at ``MAX_LAYER_CALLS`` layers with Adam's moments a model needs ~3,000."""
MAX_H5_DATASET_BYTES = 8 * MAX_MODEL_PARAMETERS
"""Declared size of one dataset: every parameter of the largest model allowed, in float64 (160 MB). Measured:
the largest real one, the encoder's Dense kernel (12,544 x 32 float32), is 1,605,632 bytes."""
MAX_H5_TOTAL_BYTES = 3 * MAX_H5_DATASET_BYTES
"""Declared size of all datasets: the model's weights and, in a trained VAE, Adam's two moments (3x).
Measured: 2,202,528 bytes (the master's VAE), 6,607,560 after ``fit``."""
MAX_H5_VALUES_PER_PARAMETER = 3
"""Values the datasets may declare per parameter the config declares (weights plus Adam's two moments); a
file of a few kB that declares far more than its model could hold is a bomb. Measured: 1.0 (the master's
models as the probes save them), 3.0 for the VAE saved after ``fit`` (1,651,889 values, 550,629 parameters)."""
H5_VALUES_SLACK = 4_096
"""Values allowed beyond ``MAX_H5_VALUES_PER_PARAMETER`` (optimizer counters, seed generator states: 2 values
each). Measured: 2 in the master's VAE."""
MAX_H5_CHUNKS = 4_096
"""Chunks one dataset may be cut into, counted from its shape and chunk shape (its declared chunk grid),
and allocated chunks (``get_num_chunks``). Measured: 0, Keras stores every dataset contiguous. A 12 kB file
that declared 6,000,000 one-value chunks drove the grader to 21.7 GB when Keras read it."""
MAX_H5_ATTRIBUTES = 64
"""Attributes of one group or dataset. Measured: at most 1 (a layer's name; a bfloat16 marker when used)."""
MAX_H5_ATTRIBUTE_BYTES = 64 * 2**10
"""Declared size of one attribute. Measured: each group's one attribute is a variable-length string (its
layer's name, 8 bytes declared, the characters stored apart)."""
MAX_H5_RANK = MAX_TENSOR_RANK
_H5_FILTERS = {1, 2, 3}
"""DEFLATE, shuffle and fletcher32, the filters h5py offers without plugins; Keras uses none."""


def _check_weights_file(data: bytes, parameters: int) -> None:
    """Refuse a weights file whose metadata declares more than the model can hold, before Keras reads it.

    Opened from memory with h5py's file-object driver; every link is looked at without being followed
    (soft and external links are refused), every dataset's declared size, type, layout (virtual datasets
    and external storage are refused), chunk grid and filters, every attribute's declared size, and the
    totals. Reading metadata allocates nothing of the declared sizes.
    """
    import h5py

    budget = MAX_H5_VALUES_PER_PARAMETER * parameters + H5_VALUES_SLACK
    try:
        handle = h5py.File(io.BytesIO(data), "r")
    except Exception as exc:
        raise ValueError(f"the model's weights file is not HDF5 ({first_line(exc)})") from None
    with handle:
        objects = 0
        total_bytes = total_values = 0
        stack: list[tuple[Any, str]] = [(handle, "/")]
        try:
            while stack:
                group, path = stack.pop()
                _check_attributes(group, path)
                members = group.id.get_num_objs()
                if objects + members > MAX_H5_OBJECTS:
                    raise too_large(
                        f"{MAX_H5_OBJECTS:,} groups and datasets in the model's weights file",
                        "it holds more",
                    )
                for name in group:
                    objects += 1
                    where = f"{path.rstrip('/')}/{name}"[:120]
                    link = group.get(name, getlink=True)
                    if not isinstance(link, h5py.HardLink):
                        raise ValueError(
                            f"the model's weights file links {where} elsewhere ({type(link).__name__}); "
                            "Keras writes no links"
                        )
                    item = group.get(name)
                    if isinstance(item, h5py.Group):
                        stack.append((item, where))
                    elif isinstance(item, h5py.Dataset):
                        values, size = _check_dataset(item, where)
                        total_values += values
                        total_bytes += size
                    else:
                        raise ValueError(
                            f"the model's weights file holds {where}, which is no dataset"
                        )
        except ValueError:
            raise
        except Exception as exc:  # h5py raises KeyError, OSError, RuntimeError... on a damaged file
            raise ValueError(f"the model's weights file is damaged ({first_line(exc)})") from None
    if total_bytes > MAX_H5_TOTAL_BYTES:
        raise too_large(
            f"{MAX_H5_TOTAL_BYTES:,} bytes of weights",
            f"the model's weights file declares {total_bytes:,}",
        )
    if total_values > budget:
        raise too_large(
            f"{budget:,} stored values for a model of {parameters:,} parameters",
            f"the model's weights file declares {total_values:,}",
        )


def _check_attributes(item: Any, where: str) -> None:
    import h5py

    count = h5py.h5a.get_num_attrs(item.id)
    if count > MAX_H5_ATTRIBUTES:
        raise too_large(
            f"{MAX_H5_ATTRIBUTES} attributes on one object of the model's weights file",
            f"it gives {where} {count:,}",
        )
    for index in range(count):
        attribute = h5py.h5a.open(item.id, index=index)
        dtype = attribute.dtype
        size = math.prod(attribute.shape or ()) * max(dtype.itemsize, 1)
        if size > MAX_H5_ATTRIBUTE_BYTES:
            raise too_large(
                f"{MAX_H5_ATTRIBUTE_BYTES:,} bytes for one attribute of the model's weights file",
                f"it gives {where} an attribute of {size:,} bytes",
            )


def _check_dataset(dataset: Any, where: str) -> tuple[int, int]:
    """(values, bytes) a dataset declares, after its type, layout, storage and chunks are checked."""
    import h5py

    _check_attributes(dataset, where)
    if dataset.is_virtual:
        raise ValueError(
            f"the model's weights file's {where} is a virtual dataset; Keras writes none"
        )
    if dataset.external:
        raise ValueError(
            f"the model's weights file's {where} is stored in another file; Keras never does that"
        )
    dtype = dataset.dtype
    if (
        dtype.kind not in "biuf"
        or dtype.subdtype is not None
        or dtype.names is not None
        or dtype.itemsize > 16
    ):
        raise ValueError(f"the model's weights file's {where} holds {dtype}, not numbers")
    shape = dataset.shape or ()
    if len(shape) > MAX_H5_RANK:
        raise ValueError(f"the model's weights file's {where} has {len(shape)} axes")
    values = math.prod(shape)
    size = values * dtype.itemsize
    if size > MAX_H5_DATASET_BYTES:
        raise too_large(
            f"{MAX_H5_DATASET_BYTES:,} bytes for one weight",
            f"the model's weights file's {where} declares {size:,} bytes",
        )
    plist = dataset.id.get_create_plist()
    layout = plist.get_layout()
    if layout == h5py.h5d.CHUNKED:
        chunks = dataset.chunks or ()
        if len(chunks) != len(shape) or any(c <= 0 for c in chunks):
            raise ValueError(f"the model's weights file's {where} has no readable chunk shape")
        grid = math.prod(-(-n // c) for n, c in zip(shape, chunks))
        chunk_bytes = math.prod(chunks) * dtype.itemsize
        if grid > MAX_H5_CHUNKS:
            raise too_large(
                f"{MAX_H5_CHUNKS:,} chunks for one weight",
                f"the model's weights file's {where} is cut into {grid:,} chunks",
            )
        if chunk_bytes > MAX_H5_DATASET_BYTES:
            raise too_large(
                f"{MAX_H5_DATASET_BYTES:,} bytes for one chunk",
                f"the model's weights file's {where} declares chunks of {chunk_bytes:,} bytes",
            )
        allocated = dataset.id.get_num_chunks()
        if allocated > MAX_H5_CHUNKS:
            raise too_large(
                f"{MAX_H5_CHUNKS:,} chunks for one weight",
                f"the model's weights file's {where} stores {allocated:,} chunks",
            )
        for index in range(plist.get_nfilters()):
            code = plist.get_filter(index)[0]
            if code not in _H5_FILTERS:
                raise ValueError(f"the model's weights file's {where} needs HDF5 filter {code}")
    elif layout not in (h5py.h5d.CONTIGUOUS, h5py.h5d.COMPACT):
        raise ValueError(
            f"the model's weights file's {where} has a storage layout Keras never writes"
        )
    return values, size


# --- loading -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _no_registered_objects() -> Iterator[None]:
    """Keras's global registry of custom objects emptied for the duration (the caller's own layers travel as
    ``custom_objects`` or a ``CustomObjectScope``, which stay)."""
    try:
        from keras.src.saving import object_registration as registry
    except ImportError:  # another Keras layout: nothing known to hide
        yield
        return
    saved = dict(registry.GLOBAL_CUSTOM_OBJECTS), dict(registry.GLOBAL_CUSTOM_NAMES)
    registry.GLOBAL_CUSTOM_OBJECTS.clear()
    registry.GLOBAL_CUSTOM_NAMES.clear()
    try:
        yield
    finally:
        registry.GLOBAL_CUSTOM_OBJECTS.update(saved[0])
        registry.GLOBAL_CUSTOM_NAMES.update(saved[1])


def load_model(blob: bytes, custom_objects: Mapping[str, Any] | None = None) -> Any:
    """A model from :func:`model_bytes`, loaded with ``safe_mode`` and no custom objects (standard layers only),
    refused before it is ever built or run when it is far larger than anything the course builds.

    Before Keras sees the file: its members are read within their caps (:func:`model_file_members`), its
    config parsed within ``MAX_CONFIG_BYTES`` and ``MAX_JSON_DEPTH`` and sized (:func:`model_cost`: parameters,
    largest layer output, operations per image), its weights file's metadata checked (datasets, declared
    sizes, chunks, links). Keras then loads a file rebuilt from exactly the bytes checked (the config as
    parsed), and the loaded model is checked once more. ``custom_objects`` (or an active
    ``keras.saving.CustomObjectScope``) are the caller's own weightless layers; see :func:`model_cost`.
    Raises ``ValueError`` with one line a student can act on.
    """
    import keras

    from course.architecture import flat_layers

    members = model_file_members(blob)
    config = parse_json(members["config.json"], "the model's config.json", MAX_CONFIG_BYTES)
    if "metadata.json" in members:
        parse_json(members["metadata.json"], "the model's metadata.json", MAX_METADATA_BYTES)
    # The student's kernel has classes and functions registered with Keras (the notebook's own layers, perhaps a
    # student's custom activation) that the grader's process has not: hidden while loading, a model loads in the
    # kernel exactly when it loads in the grader, so a self-check fails at home as the grading would.
    with _no_registered_objects():
        cost = model_cost(config, custom_objects)
        _check_weights_file(members["model.weights.h5"], cost.parameters)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.keras")
            with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
                archive.writestr("config.json", json.dumps(config))
                if "metadata.json" in members:
                    archive.writestr("metadata.json", members["metadata.json"])
                archive.writestr("model.weights.h5", members["model.weights.h5"])
            model = keras.saving.load_model(
                path,
                custom_objects=dict(custom_objects or {}) or None,
                compile=False,
                safe_mode=True,
            )
    if model.count_params() > min(cost.parameters, MAX_MODEL_PARAMETERS):
        raise ValueError(
            f"the model has {model.count_params():,} parameters, more than its config declares "
            f"({cost.parameters:,}) or than the course's models"
        )
    for layer in flat_layers(model):
        try:
            shapes = [tuple(t.shape) for t in keras.tree.flatten(layer.output)]
        except (AttributeError, ValueError):
            continue
        for shape in shapes:
            values = int(np.prod([d for d in shape[1:] if d is not None] or [1]))
            if values > MAX_ACTIVATION_VALUES:
                raise too_large(
                    f"{MAX_ACTIVATION_VALUES:,} values per image from one layer",
                    f"layer {layer.name} outputs {values:,}",
                )
    return model
