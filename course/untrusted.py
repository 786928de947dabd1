"""Reading bytes nobody vouches for: JSON and zip archives, each size checked before anything is allocated.

What the grader reads from a student's kernel (the probe archive, ``course.probing``; a model file,
``course.model_file``) must not choose how much memory or time the reading takes. The readers here
check every declared size against a cap the caller names before they allocate anything for it, and
count the bytes they really read. Data past a cap raises :class:`TooLarge` ("checking your answer
needed more than ..."), anything else refused a plain ``ValueError``, both with one line a student
can act on.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from typing import Any

import numpy as np


class TooLarge(ValueError):
    """Data refused because reading or running it would take more than one of the caps below allows.

    Its message reads "checking your answer needed more than <the cap>: <what the data declares>", one line a
    student can act on; every other refusal here is a plain ``ValueError`` (a file Keras would not write, a
    layer the grader cannot size)."""


def too_large(limit: str, found: str) -> TooLarge:
    return TooLarge(f"checking your answer needed more than {limit}: {found}")


# --- bounded JSON -----------------------------------------------------------------------------------

MAX_JSON_DEPTH = 64
"""Deepest nesting of JSON arrays and objects read (counted by :func:`json_nesting_depth`). Measured: the
deepest real JSON the grader reads is the master VAE's ``config.json``, 13 levels (the encoder's and decoder's
10, the correct variants' with nested ``Sequential`` blocks 10; the probes' ``*.json`` values at most 3);
about 5x margin. Python's ``json`` recurses once per
level: a config nested 200,000 levels deep raises ``RecursionError`` (not ``ValueError``) and code that walks
a deep result can overflow the C stack."""
MAX_JSON_VALUE_BYTES = 4 * 2**20
"""Largest ``*.json`` value of a probe archive. Measured: the largest real one is part 2's hidden probe's
``restored.json`` (174,997 bytes: the draws of a restored sampler); 4 MiB is ~24x that."""

_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_BRACKET_STEP = np.zeros(256, dtype=np.int8)
_BRACKET_STEP[[ord("["), ord("{")]] = 1
_BRACKET_STEP[[ord("]"), ord("}")]] = -1
_SCAN_CHUNK = 1 << 20


def json_nesting_depth(data: bytes | str) -> int:
    """How deeply the arrays and objects of JSON text nest, found without parsing it (no recursion).

    A vectorised scan of the bytes in 1 MiB chunks (time linear in the size, memory bounded by the chunk):
    a quote preceded by an even number of backslashes opens or closes a string, and only brackets outside
    strings count. On text that is not JSON the result is still an upper bound of what ``json.loads``
    reaches before it fails: both read strings the same way up to the first error.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    deepest = level = 0
    inside = False
    slashes = 0  # backslashes that ended the previous chunk
    for start in range(0, len(data), _SCAN_CHUNK):
        chunk = np.frombuffer(
            data, dtype=np.uint8, count=min(_SCAN_CHUNK, len(data) - start), offset=start
        )
        quotes = np.flatnonzero(chunk == _QUOTE)
        if quotes.size:
            # The backslashes right before each quote: the distance to the last other byte before it.
            index = np.arange(chunk.size)
            last_other = np.maximum.accumulate(np.where(chunk != _BACKSLASH, index, -1))
            before = np.where(quotes > 0, last_other[np.maximum(quotes - 1, 0)], -1)
            run = quotes - 1 - before
            run = np.where(before < 0, run + slashes, run)
            quotes = quotes[run % 2 == 0]
        others = np.flatnonzero(chunk != _BACKSLASH)
        slashes = chunk.size - 1 - int(others[-1]) if others.size else slashes + chunk.size
        brackets = np.flatnonzero(_BRACKET_STEP[chunk])
        if brackets.size:
            parity = (np.searchsorted(quotes, brackets) + inside) % 2 == 0
            steps = _BRACKET_STEP[chunk[brackets[parity]]]
            if steps.size:
                running = np.cumsum(steps, dtype=np.int64) + level
                deepest = max(deepest, int(running.max()))
                level = int(running[-1])
        inside = bool((quotes.size + inside) % 2)
    return deepest


def parse_json(
    data: bytes | str, what: str, max_bytes: int, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """``json.loads`` of text nobody vouches for: its size and nesting are checked before it is parsed.

    ``what`` names the text in the one-line ``ValueError`` raised for anything refused or unreadable.
    """
    if isinstance(
        data, str
    ):  # a character is at least one byte: no copy of text that is too long anyway
        size = len(data) if len(data) > max_bytes else len(data.encode("utf-8", "surrogatepass"))
    else:
        size = len(data)
    if size > max_bytes:
        raise too_large(f"{max_bytes:,} bytes of {what}", f"it is {size:,} bytes")
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{what} is not UTF-8 text") from None
    depth = json_nesting_depth(data)
    if depth > max_depth:
        raise too_large(
            f"{max_depth} levels of nesting in {what}", f"it is nested {depth:,} levels deep"
        )
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{what} is not JSON ({first_line(exc)})") from None


# --- zip archives -----------------------------------------------------------------------------------

_END_OF_DIRECTORY = struct.Struct("<4s4H2LH")
_END_SIGNATURE = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
DIRECTORY_ENTRY_BYTES = 512
"""Largest central-directory entry allowed on average: 46 fixed bytes, the name (at most ``MAX_KEY_CHARS``
+ 4 for an archive, 16 for a model file) and an extra field. Measured: 58 to 66 bytes per entry in the real
probe archives (NumPy adds a 20-byte zip64 field), 59 in a real ``.keras`` file."""
READ_CHUNK_BYTES = 1 << 20
"""Bytes read from an archive member at a time, so a member that lies about its size is caught after at
most one chunk beyond its cap."""


def _check_zip_directory(blob: bytes, max_members: int, what: str) -> None:
    """Refuse an archive whose central directory is larger than ``max_members`` entries, before
    ``zipfile`` builds one Python object per entry (it trusts the directory size the archive declares).

    The end record is found the way ``zipfile`` finds it (the last 22 bytes, else the last signature in
    the final 64 kB), so both read the same directory; zip64 records are refused (nothing here writes them).
    """
    size = _END_OF_DIRECTORY.size
    at = len(blob) - size
    if not (at >= 0 and blob[at : at + 4] == _END_SIGNATURE and blob[-2:] == b"\0\0"):
        start = max(0, len(blob) - size - 0xFFFF)
        found = blob.rfind(_END_SIGNATURE, start)
        if found < 0 or found + size > len(blob):
            raise ValueError(f"{what} is not a zip archive")
        at = found
    _, _, _, here, total, directory_bytes, _, _ = _END_OF_DIRECTORY.unpack_from(blob, at)
    if at >= 20 and blob[at - 20 : at - 16] == _ZIP64_LOCATOR:
        raise ValueError(f"{what} uses zip64 records, which no file the course writes has")
    if total > max_members or here > max_members:
        raise too_large(f"{max_members:,} members in {what}", f"it declares {total:,}")
    if directory_bytes > max_members * DIRECTORY_ENTRY_BYTES:
        raise too_large(
            f"a directory of {max_members * DIRECTORY_ENTRY_BYTES:,} bytes in {what}",
            f"it declares a directory of {directory_bytes:,} bytes",
        )


def open_zip(blob: bytes, max_members: int, what: str) -> zipfile.ZipFile:
    _check_zip_directory(blob, max_members, what)
    try:
        archive = zipfile.ZipFile(io.BytesIO(blob))
    except (
        Exception
    ) as exc:  # zipfile raises BadZipFile, struct.error, ValueError... on a broken directory
        raise ValueError(f"{what} is not a readable zip archive ({first_line(exc)})") from None
    infos = archive.infolist()
    names = [info.filename for info in infos]
    if len(infos) > max_members:
        archive.close()
        raise too_large(f"{max_members:,} members in {what}", f"it has {len(infos):,}")
    if len(set(names)) != len(names):
        archive.close()
        raise ValueError(f"{what} holds the same name twice")
    for info in infos:
        if info.flag_bits & 0x1:
            archive.close()
            raise ValueError(f"{what} holds an encrypted member")
    return archive


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int, what: str) -> bytes:
    """A member's bytes, read in chunks and refused as soon as more than ``cap`` bytes come out.

    The real bytes are counted, whatever the member declares; a member whose data does not match its
    declared size or checksum is refused too (``zipfile`` checks both at the end).
    """
    pieces: list[bytes] = []
    count = 0
    try:
        with archive.open(info) as member:
            while True:
                piece = member.read(READ_CHUNK_BYTES)
                if not piece:
                    break
                count += len(piece)
                if count > cap:
                    raise too_large(f"{cap:,} bytes of {what}", "it holds more")
                pieces.append(piece)
    except ValueError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        raise ValueError(f"{what} is damaged ({first_line(exc)})") from None
    data = b"".join(pieces)
    if len(data) != info.file_size:
        raise ValueError(f"{what} declares {info.file_size:,} bytes but holds {len(data):,}")
    return data


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else "(no message)"
