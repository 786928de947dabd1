"""Turning what a student's code computes into plain data, and back.

The course's checks never ask the student's code whether it is right. They ask it to *compute*
things (a model built by ``build_encoder``, draws of the sampling layer for chosen inputs, the
loss for a chosen batch) and judge the numbers. In the notebook both halves run in the student's
kernel. When the notebook is graded, only the first half does: the grader sends a probe into the
sandboxed kernel, receives the data this module packs, and judges it in its own process, where no
student code runs (see the grader's ``judge`` module). Whatever the kernel does to itself, it can
only hand over data, and data is checked against what the grader computes on its own.

The format is an ``.npz`` archive of NumPy arrays (read here member by member; arrays of Python objects,
which would need unpickling, are refused), plus two kinds of value by key suffix: ``*.keras`` holds a model saved in Keras's own format (the grader loads it with
``safe_mode``, so only standard layers load), ``*.json`` holds JSON. Nothing in it can execute code
when it is read.

The archive is read within bounds (``course.untrusted``: its directory, its members, each array's
header, JSON by size and depth) and a model file by ``course.model_file``.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from course.untrusted import MAX_JSON_VALUE_BYTES, first_line, open_zip, parse_json, too_large

MIME = "application/vnd.vae-course.probe+base64"
"""The display type a probe's data travels in from the kernel to the grader."""
ERRORS = "errors.json"
"""Key of the probe data that records, per step, what the student's code raised."""


# --- the probe archive ------------------------------------------------------------------------------

MAX_UNPACKED_BYTES = 256 * 2**20
"""Largest total size the archive may declare once unpacked. Measured: the largest real archive is 4.0 MB
(part 1's visible probe: two encoders); part 7's, the trained encoder and decoder, 2.3 MB. A compressed
archive of zeros could otherwise fill the reader's memory (compressed archives are refused outright)."""
MAX_ARCHIVE_MEMBERS = 256
"""Most values one probe archive may hold. Measured: at most 8 in the real probes (part 7's visible one and
part 2's hidden one); 32x margin. Each member costs ``zipfile`` a Python object before any size can be
checked, so the count is checked on the archive's directory first (``_check_zip_directory``)."""
MAX_KEY_CHARS = 128
"""Longest key of a probe value (the member's name without ``.npy``). Measured: the longest real key is 22
characters (``decoder_small.is_model``); keys are printable ASCII."""
_KEY = re.compile(r"[\x20-\x7e]{1,%d}" % MAX_KEY_CHARS)


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        shown = repr(key)[:60]
        raise ValueError(
            f"probe key {shown} is not printable ASCII of at most {MAX_KEY_CHARS} characters"
        )
    return key


def pack(data: Mapping[str, Any]) -> bytes:
    """Data (arrays, numbers, strings, ``bytes`` under ``*.keras``, JSON-able values under ``*.json``) -> bytes."""
    arrays: dict[str, np.ndarray] = {}
    for key, value in data.items():
        _check_key(key)
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


def unpack(blob: bytes) -> dict[str, Any]:
    """The inverse of :func:`pack`; never unpickles, never runs code, never inflates past ``MAX_UNPACKED_BYTES``.

    Checked before anything is allocated for a value: the directory's size (``MAX_ARCHIVE_MEMBERS``), every
    member's name (``MAX_KEY_CHARS``, no name twice), that it is stored uncompressed with equal declared
    and stored sizes, the total; then each array's header, whose shape and type must account for exactly
    the member's bytes, before the array is read into memory of that size.
    """
    out: dict[str, Any] = {}
    with open_zip(blob, MAX_ARCHIVE_MEMBERS, "the archive") as archive:
        infos = archive.infolist()
        declared = 0
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise ValueError(
                    f"the archive holds {info.filename[:60]!r}, which pack() never writes"
                )
            _check_key(info.filename[: -len(".npy")])
            if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                raise ValueError(
                    f"the archive's {info.filename[:60]!r} is compressed or declares a size it does not "
                    "store; pack() writes neither"
                )
            declared += info.file_size
        if declared > MAX_UNPACKED_BYTES:
            raise too_large(
                f"{MAX_UNPACKED_BYTES:,} bytes of probe data", f"the archive declares {declared:,}"
            )
        for info in infos:
            key = info.filename[: -len(".npy")]
            value = _read_array(archive, info, key)
            if key.endswith(".keras"):
                if value.dtype != np.uint8 or value.ndim != 1:
                    raise ValueError(f"probe value {key!r} is not the bytes of a model file")
                out[key] = value.tobytes()
            elif key.endswith(".json"):
                if value.ndim != 0 or value.dtype.kind != "U":
                    raise ValueError(f"probe value {key!r} is not JSON text")
                out[key] = parse_json(str(value), f"probe value {key!r}", MAX_JSON_VALUE_BYTES)
            else:
                out[key] = value
    return out


def _read_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str) -> np.ndarray:
    """One ``.npy`` member: its header first, then exactly the bytes the header declares."""
    fmt = np.lib.format
    try:
        with archive.open(info) as member:
            version = fmt.read_magic(member)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(member)
            else:
                raise ValueError(f"format version {version}")
            header = member.tell()
            if dtype.hasobject:
                raise ValueError("it holds Python objects (a pickle)")
            count = math.prod(shape)
            size = count * dtype.itemsize
            if header + size != info.file_size or count > MAX_UNPACKED_BYTES:
                raise ValueError(
                    f"its header declares {size:,} bytes of data but {info.file_size - header:,} are stored"
                )
            buffer = bytearray(size)
            if member.readinto(buffer) != size or member.read(1):
                raise ValueError("its data is not what its header declares")
    except ValueError as exc:
        raise ValueError(
            f"probe value {key!r} is not a readable array ({first_line(exc)})"
        ) from None
    except Exception as exc:  # zipfile and NumPy's header reader raise many kinds on damaged data
        raise ValueError(f"probe value {key!r} is damaged ({first_line(exc)})") from None
    array = np.frombuffer(buffer, dtype=dtype, count=count)
    if fortran:
        return array.reshape(shape[::-1]).transpose()
    return array.reshape(shape)


def emit(data: Mapping[str, Any]) -> None:
    """Hand probe data to whoever runs the kernel (a display output of type :data:`MIME`)."""
    from IPython.display import display

    display({MIME: base64.b64encode(pack(data)).decode("ascii")}, raw=True)


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
            self.data[ERRORS][what] = f"{type(exc).__name__}: {first_line(exc)}"
        return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return repr(value)[:200]
