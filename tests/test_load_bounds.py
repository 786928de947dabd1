"""Bounds before allocation in the loaders of ``course.probing``.

What a hostile kernel hands over (a probe archive, a ``.keras`` model file inside it) must not choose how
much memory or time reading it takes in the grader. Each attack below is a file built here, small on disk,
that made (or would make) the old loader allocate gigabytes or run for minutes: a weights file declaring
6,000,000 one-value chunks (21.7 GB measured in the grader), a config declaring 200 M parameters (5.3 GB),
a DEFLATE'd 1.5 GiB ``config.json`` (3.7 GB), a config nested 200,000 levels deep, links and virtual
datasets in the HDF5 file, a model of legal size whose convolutions cost minutes per verdict.

All of them are read in **one child process** whose address space is capped (``RLIMIT_AS``, set in
``preexec_fn`` and tightened again by the child once Keras is imported), so a regression fails the test
with a ``MemoryError`` instead of taking the machine down. The child resets its peak-RSS mark
(``/proc/self/clear_refs``) before each file and reports, per file, the outcome, the seconds and the peak
memory above what it held before; the tests assert each attack is refused with its one-line reason, fast,
within ``ATTACK_PEAK_BYTES``, and that the master's real models and the correct variants of the demo set
still load. In-process tests check the parts: the size estimate from the config equals what Keras builds,
for every layer class the estimate accepts; the JSON nesting scan; the probe archive's member checks.
"""

from __future__ import annotations

import ast
import functools
import io
import json
import os
import resource
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from course import model_file, model_size, probing, untrusted

ROOT = Path(__file__).resolve().parents[1]
ADDRESS_SPACE_LIMIT = 4 * 2**30
"""The child's address-space cap before it imports anything (``preexec_fn``). Measured: importing Keras with
the TensorFlow backend and loading the master's encoder takes 1.44 GB of address space (600 MB resident)."""
CHILD_HEADROOM = 3 * 2**29
"""What the child may map beyond its size once warm (1.5 GiB): it lowers its own cap to that."""
ATTACK_PEAK_BYTES = 256 * 2**20
"""Peak resident memory an attack may add while it is refused. Measured: 0 to 15 MB (the most for
``huge_flops``, a 12 MB file read into memory); the old loader, capped at 1.5 GiB here, ran out of memory on
the deflate bombs and the lying array header and used 1.2 GB on ``build_config_lie`` (the red team measured
3.7 to 21.7 GB on their files, uncapped)."""
LEGIT_PEAK_BYTES = 512 * 2**20
"""Peak resident memory loading a real course model may add. Measured: 0 to 16 MB (the most for the VAE
saved after ``fit``, a 6.7 MB file)."""
TOO_LARGE = "TooLarge"
REFUSED = "ValueError"
"""The two kinds of refusal: past a cap (``untrusted.TooLarge``, "checking your answer needed more than ..."),
or a file Keras would not write / a model the grader cannot size (a plain ``ValueError``)."""
ATTACK_SECONDS = 10.0
"""Wall time an attack may take to be refused on this shared 2-core machine. Measured: under 20 ms each, but
0.6 s for ``hard_link_cycle`` (10,000 links walked); the old loader took 11 s on the parameter bombs."""


# --- building files ---------------------------------------------------------------------------------


def _raw_zip(members: list[tuple[str, int, bytes, int, int]]) -> bytes:
    """A zip archive written byte by byte: (name, method, stored bytes, crc, declared size) per member, so a
    member can declare any size and compression, as a hostile kernel's archive can."""
    out = bytearray()
    directory = bytearray()
    for name, method, data, crc, size in members:
        offset = len(out)
        raw = name.encode()
        out += struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(data), size, len(raw), 0
        )
        out += raw + data
        directory += struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            20,
            20,
            0,
            method,
            0,
            0,
            crc,
            len(data),
            size,
            len(raw),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        directory += raw
    start = len(out)
    out += directory
    out += struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), start, 0
    )
    return bytes(out)


def _stored(name: str, data: bytes) -> tuple[str, int, bytes, int, int]:
    return (name, zipfile.ZIP_STORED, data, zlib.crc32(data), len(data))


def _model_file(members: dict[str, bytes]) -> bytes:
    return _raw_zip([_stored(name, data) for name, data in members.items()])


def _tiny_model() -> dict[str, bytes]:
    """A real two-input Dense(3) model's members: config, metadata, weights (layers/dense/vars/0 and 1)."""
    import keras

    x = keras.Input(shape=(2,), name="x")
    model = keras.Model(x, keras.layers.Dense(3, name="dense")(x))
    return model_file.model_file_members(model_file.model_bytes(model))


def _h5(fill: Callable[..., None], **options) -> bytes:
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w", **options) as handle:
        fill(handle)
    return buffer.getvalue()


def _with_weights(fill: Callable[..., None], **options) -> bytes:
    """The tiny model's file with a weights file written by ``fill``."""
    members = _tiny_model()
    members["model.weights.h5"] = _h5(fill, **options)
    return _model_file(members)


def _with_config(edit: Callable[[dict], None], members: dict[str, bytes] | None = None) -> bytes:
    members = dict(members or _tiny_model())
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    return _model_file(members)


def _layer(config: dict, name: str) -> dict:
    return next(layer for layer in config["config"]["layers"] if layer["name"] == name)


def chunk_bomb() -> bytes:
    """The red team's file: the Dense kernel declared as 6,000,000 one-value chunks, none written (12 kB)."""

    def fill(h5):
        h5.create_dataset("layers/dense/vars/0", shape=(6_000_000,), chunks=(1,), dtype="f4")
        h5.create_dataset("layers/dense/vars/1", data=np.zeros(3, "f4"))

    return _with_weights(fill)


def declared_size_bomb() -> bytes:
    """A contiguous dataset declaring 4 GB, never written: reading it allocates the whole fill value."""

    def fill(h5):
        h5.create_dataset("layers/dense/vars/0", shape=(1_000_000_000,), dtype="f4")

    return _with_weights(fill)


def value_budget_bomb() -> bytes:
    """Twenty datasets of 1,000,000 values each, legal one by one, for a model of 9 parameters."""

    def fill(h5):
        for index in range(20):
            h5.create_dataset(f"layers/dense/vars/{index}", shape=(1_000_000,), dtype="f4")

    return _with_weights(fill)


def external_link() -> bytes:
    import h5py

    def fill(h5):
        h5["layers/dense/vars/0"] = h5py.ExternalLink("/etc/passwd", "/kernel")

    return _with_weights(fill)


def soft_link() -> bytes:
    import h5py

    def fill(h5):
        h5.create_dataset("elsewhere", data=np.zeros((2, 3), "f4"))
        h5["layers/dense/vars/0"] = h5py.SoftLink("/elsewhere")

    return _with_weights(fill)


def virtual_dataset() -> bytes:
    import h5py

    def fill(h5):
        h5.create_dataset("source", data=np.zeros(6, "f4"))
        layout = h5py.VirtualLayout(shape=(6,), dtype="f4")
        layout[:] = h5py.VirtualSource(".", "source", shape=(6,))
        h5.create_virtual_dataset("layers/dense/vars/0", layout)

    return _with_weights(fill)


def hard_link_cycle() -> bytes:
    """A group that holds itself: a walk that follows it never ends."""

    def fill(h5):
        group = h5.create_group("layers/dense")
        group["again"] = group

    return _with_weights(fill)


def huge_attribute() -> bytes:
    """An attribute declaring 800 kB (Keras reads a dataset's attributes before its values)."""

    def fill(h5):
        data = h5.create_dataset("layers/dense/vars/0", data=np.zeros((2, 3), "f4"))
        data.attrs["dtype"] = np.zeros(100_000, "f8")

    return _with_weights(fill, libver="latest")


def huge_parameters() -> bytes:
    """The tiny model's config edited to Dense(100,000,000) on 2 inputs: 300 M parameters declared, weights
    of 9 (the old loader built the layer, 1.2 GB, before anything was checked)."""

    def edit(config):
        _layer(config, "dense")["config"]["units"] = 100_000_000

    return _with_config(edit)


def build_config_lie() -> bytes:
    """A Dense(3) whose build_config claims an input of 100 M values: Keras builds a layer from its
    build_config as soon as it is made, before the graph calls it (300 M parameters)."""

    def edit(config):
        _layer(config, "dense")["build_config"] = {"input_shape": [None, 100_000_000]}

    return _with_config(edit)


def huge_activations() -> bytes:
    """UpSampling2D(200) on a 28 x 28 image: 31,360,000 values per image from a model with no weights."""
    import keras

    x = keras.Input(shape=(28, 28, 1))
    model = keras.Model(x, keras.layers.UpSampling2D(200)(x))
    return model_file.model_bytes(model)


def huge_flops() -> bytes:
    """A legal-size model (2.99 M parameters) of 27 x 27 convolutions: 4.7 G operations per image, the
    kind of model that kept one verdict busy for 370 s."""
    import keras

    x = keras.Input(shape=(28, 28, 1))
    y = keras.layers.Conv2D(64, 27, padding="same")(keras.layers.Conv2D(64, 3, padding="same")(x))
    return model_file.model_bytes(keras.Model(x, y))


def slow_decoder() -> bytes:
    """The red team's legal decoder (12,553 parameters, activations under the cap): a 1-channel 101 x 101
    convolution on a 280 x 280 map, 1.6 G operations that run at 1.2 GFLOP/s (1.35 s an image here)."""
    import keras

    code = keras.Input((2,))
    x = keras.layers.Reshape((28, 28, 1))(keras.layers.Dense(784)(code))
    x = keras.layers.UpSampling2D(10)(x)
    x = keras.layers.Conv2D(1, 101, padding="same", use_bias=False)(x)
    x = keras.layers.AveragePooling2D(10)(x)
    return model_file.model_bytes(keras.Model(code, keras.layers.Activation("sigmoid")(x)))


def narrow_convolution() -> bytes:
    """A 1-channel 15 x 15 convolution on a 280 x 280 map: 35 M operations, under the cap as counted, but
    running at 13 GFLOP/s instead of the course's 80 to 130 (weighted, 1.1 G)."""
    import keras

    x = keras.Input((28, 28, 1))
    y = keras.layers.Conv2D(1, 15, padding="same")(keras.layers.UpSampling2D(10)(x))
    return model_file.model_bytes(keras.Model(x, y))


def unknown_layer() -> bytes:
    import keras

    x = keras.Input(shape=(28, 28))
    return model_file.model_bytes(keras.Model(x, keras.layers.LSTM(8)(x)))


def nested_shape_lie() -> bytes:
    """A sub-model declared for 2 values per input but fed 5: the graph the grader sizes is not the one
    Keras would build."""
    import keras

    inner_in = keras.Input(shape=(2,))
    inner = keras.Model(inner_in, keras.layers.Dense(3)(inner_in), name="inner")
    x = keras.Input(shape=(2,))
    members = model_file.model_file_members(model_file.model_bytes(keras.Model(x, inner(x))))

    def edit(config):
        next(layer for layer in config["config"]["layers"] if layer["class_name"] == "InputLayer")[
            "config"
        ]["batch_shape"] = [None, 5]

    return _with_config(edit, members)


def deep_config() -> bytes:
    """config.json nested 200,000 levels deep (400 kB): json.loads raises RecursionError."""
    members = _tiny_model()
    members["config.json"] = b"[" * 200_000 + b"]" * 200_000
    return _model_file(members)


_SPACES = b" " * 2**20
_BOMB_MIB = 1536


@functools.cache
def _deflate_bomb_stream() -> tuple[bytes, int]:
    """DEFLATE of 1.5 GiB of spaces (1.6 MB) and its CRC, built from one fully flushed 1 MiB block."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(_SPACES) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(_BOMB_MIB):
        crc = zlib.crc32(_SPACES, crc)
    return block * _BOMB_MIB + compressor.flush(), crc


def deflate_bomb(declared: int | None = None) -> bytes:
    """config.json as 1.5 GiB of DEFLATE'd spaces (the old loader inflated it: 3.7 GB). ``declared``: the
    size the archive claims for it (default: the truth)."""
    stream, crc = _deflate_bomb_stream()
    members = _tiny_model()
    size = _BOMB_MIB * 2**20 if declared is None else declared
    return _raw_zip(
        [
            ("config.json", zipfile.ZIP_DEFLATED, stream, crc, size),
            _stored("model.weights.h5", members["model.weights.h5"]),
        ]
    )


def ratio_bomb() -> bytes:
    """A config.json of 3 MiB (under its cap) that deflates 1,000 times: refused by the ratio."""
    data = b" " * (3 * 2**20)
    members = _tiny_model()
    stream = zlib.compress(data, 9)[2:-4]
    return _raw_zip(
        [
            ("config.json", zipfile.ZIP_DEFLATED, stream, zlib.crc32(data), len(data)),
            _stored("model.weights.h5", members["model.weights.h5"]),
        ]
    )


def extra_member() -> bytes:
    members = _tiny_model()
    members["assets/anything.bin"] = b"x"
    return _model_file(members)


def many_model_members() -> bytes:
    return _raw_zip([_stored(f"m{index}", b"") for index in range(60_000)])


# --- probe archives ---------------------------------------------------------------------------------


def archive_member_bomb() -> bytes:
    """A probe archive of 60,000 empty members (4 MB; 65,535 is the most a zip without zip64 records holds):
    zipfile would build 60,000 objects before anything could be checked."""
    return _raw_zip([_stored(f"k{index}.npy", b"") for index in range(60_000)])


def archive_directory_lie() -> bytes:
    """An archive whose end record claims 1 member but whose directory spans 60,000 entries."""
    blob = bytearray(archive_member_bomb())
    struct.pack_into("<2H", blob, len(blob) - 22 + 8, 1, 1)
    return bytes(blob)


def archive_header_lie() -> bytes:
    """An array member whose header declares 10^9 float64 values (8 GB) and stores 8 bytes."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f8", "fortran_order": False, "shape": (1_000_000_000,)}
    )
    buffer.write(b"\0" * 8)
    return _raw_zip([_stored("x.npy", buffer.getvalue())])


def archive_long_key() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(1))
    return _raw_zip([_stored("k" * 5_000 + ".npy", buffer.getvalue())])


def archive_deep_json() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{"config.json": np.array("[" * 100_000 + "]" * 100_000)})
    return buffer.getvalue()


ATTACKS: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "chunk_bomb": (chunk_bomb, TOO_LARGE, "is cut into 6,000,000 chunks"),
    "declared_size_bomb": (declared_size_bomb, TOO_LARGE, "declares 4,000,000,000 bytes"),
    "value_budget_bomb": (
        value_budget_bomb,
        TOO_LARGE,
        "4,123 stored values for a model of 9 parameters: the model's weights file declares 20,000,000",
    ),
    "external_link": (external_link, REFUSED, "(ExternalLink)"),
    "soft_link": (soft_link, REFUSED, "(SoftLink)"),
    "virtual_dataset": (virtual_dataset, REFUSED, "is a virtual dataset"),
    "hard_link_cycle": (hard_link_cycle, TOO_LARGE, "10,000 groups and datasets"),
    "huge_attribute": (huge_attribute, TOO_LARGE, "an attribute of 800,000 bytes"),
    "huge_parameters": (
        huge_parameters,
        TOO_LARGE,
        "20,000,000 parameters: the model you built declares at least 300,000,000",
    ),
    "build_config_lie": (build_config_lie, TOO_LARGE, "declares at least 300,000,003"),
    "huge_activations": (huge_activations, TOO_LARGE, "layer up_sampling2d outputs 31,360,000"),
    "huge_flops": (huge_flops, TOO_LARGE, "1,000,000,000 operations per image"),
    "slow_decoder": (slow_decoder, TOO_LARGE, "1,000,000,000 operations per image"),
    "narrow_convolution": (narrow_convolution, TOO_LARGE, "1,000,000,000 operations per image"),
    "unknown_layer": (unknown_layer, REFUSED, "is a LSTM, which the grader cannot size"),
    "nested_shape_lie": (
        nested_shape_lie,
        REFUSED,
        "is declared for inputs (None, 2) but receives (None, 5)",
    ),
    "deep_config": (deep_config, TOO_LARGE, "it is nested 200,000 levels deep"),
    "deflate_bomb": (deflate_bomb, TOO_LARGE, "config.json: it declares 1,610,612,736 bytes"),
    "deflate_bomb_lying_size": (
        lambda: deflate_bomb(declared=10_000),
        REFUSED,
        "config.json is damaged",
    ),
    "deflate_bomb_lying_big": (
        lambda: deflate_bomb(declared=4 * 2**20),
        REFUSED,
        "config.json is damaged",
    ),
    "ratio_bomb": (
        ratio_bomb,
        TOO_LARGE,
        "20 times the compressed size of the model file's config.json",
    ),
    "extra_member": (extra_member, TOO_LARGE, "the model file also holds 'assets/anything.bin'"),
    "many_model_members": (
        many_model_members,
        TOO_LARGE,
        "members in the model file: it declares 60,000",
    ),
    "archive_member_bomb": (
        archive_member_bomb,
        TOO_LARGE,
        "members in the archive: it declares 60,000",
    ),
    "archive_directory_lie": (archive_directory_lie, TOO_LARGE, "it declares a directory of"),
    "archive_header_lie": (
        archive_header_lie,
        REFUSED,
        "declares 8,000,000,000 bytes of data but 8 are stored",
    ),
    "archive_long_key": (
        archive_long_key,
        REFUSED,
        "is not printable ASCII of at most 128 characters",
    ),
    "archive_deep_json": (archive_deep_json, TOO_LARGE, "it is nested 100,000 levels deep"),
}
"""Attack -> (builder, the refusal's class, a phrase its message must contain). Names starting with
``archive_`` are probe archives (read with ``unpack``), the others model files (``load_model``)."""


# --- the course's real models -----------------------------------------------------------------------


def _namespace(sources: list[str]) -> dict:
    """The master's set-up imports and the definitions (functions, classes, constants) of ``sources``."""
    from vae_grader.cells import require_cell
    from vae_samples.kit import load_master_and_release

    master, _ = load_master_and_release()
    namespace: dict = {}
    exec(
        require_cell(master, "setup").source.split("budget = course.training_budget()")[0],
        namespace,
    )  # noqa: S102
    namespace["LATENT_DIM"] = 2
    for source in sources:
        tree = ast.parse(source)
        tree.body = [
            node
            for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))
            or (
                isinstance(node, ast.Assign)
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id.isupper()
            )
        ]
        exec(compile(tree, "<solution>", "exec"), namespace)  # noqa: S102
    return namespace


def real_models() -> dict[str, bytes]:
    """The master's encoder (latent 2 and 3), decoder (and the hidden test's small one), VAE (untrained and
    after one step of fit, with Adam's moments in its file), every correct variant's encoder and decoder of
    the demo set, and the stand-ins, as ``.keras`` bytes."""
    import keras

    from course.architecture import shape_before_flattening
    from course.stand_ins import smooth_decoder, stand_in_decoder, stand_in_encoder
    from vae_grader.cells import require_cell
    from vae_samples import demo
    from vae_samples.kit import load_master_and_release, solution_source

    master, release = load_master_and_release()
    cells = ("encoder", "sampling", "decoder", "loss_layer", "vae_model")
    namespace = _namespace([solution_source(master, cell) for cell in cells])
    encoder = namespace["build_encoder"](2)
    decoder = namespace["build_decoder"](2, shape_before_flattening(encoder))
    vae = namespace["build_vae"](encoder, decoder, seed=1)
    out = {
        "master_encoder": model_file.model_bytes(encoder),
        "master_encoder_3": model_file.model_bytes(namespace["build_encoder"](3)),
        "master_decoder": model_file.model_bytes(decoder),
        "master_decoder_small": model_file.model_bytes(namespace["build_decoder"](3, (7, 7, 8))),
        "master_vae": model_file.model_bytes(vae),
    }
    images = (np.random.default_rng(0).uniform(0, 1, (8, 28, 28, 1)) > 0.5).astype("float32")
    vae.fit(images, None, epochs=1, batch_size=8, verbose=0)
    out["master_vae_trained"] = model_file.model_bytes(vae)
    for sub in demo.CORRECT_VARIANTS:
        nb = sub.build(master, release)
        sources = [require_cell(nb, cell).source for cell in ("encoder", "decoder")]
        variant = _namespace(sources)
        enc = variant["build_encoder"](2)
        out[f"{sub.student}_encoder"] = model_file.model_bytes(enc)
        out[f"{sub.student}_decoder"] = model_file.model_bytes(
            variant["build_decoder"](2, shape_before_flattening(enc))
        )
    out["stand_in_encoder"] = model_file.model_bytes(stand_in_encoder())
    out["stand_in_decoder"] = model_file.model_bytes(stand_in_decoder())
    out["smooth_decoder"] = model_file.model_bytes(smooth_decoder())
    keras.utils.clear_session()
    return out


# --- the child that reads everything under a memory cap ---------------------------------------------

CHILD = r"""
import json, os, resource, sys, time
import keras
from course import model_file, probing

class Weightless(keras.layers.Layer):
    # The grader's stand-in for the notebook's Sampling and loss layer: first input, no weights.
    def __init__(self, seed=None, **kwargs):
        super().__init__(**{k: v for k, v in kwargs.items() if k in ("name", "trainable", "dtype")})
    def call(self, inputs):
        return keras.tree.flatten(inputs)[0]

TRUSTED = {"vae_course>Sampling": Weightless, "vae_course>CustomVariationalLayer": Weightless}

def status(key):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

folder, warm, headroom = sys.argv[1], sys.argv[2], int(sys.argv[3])
model_file.load_model(open(os.path.join(folder, warm), "rb").read())  # Keras's one-off costs
limit = status("VmSize") + headroom
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
results = {}
for name in sorted(os.listdir(folder)):
    blob = open(os.path.join(folder, name), "rb").read()
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    before = status("VmHWM")
    start = time.perf_counter()
    try:
        if name.startswith("archive_"):
            probing.unpack(blob)
        else:
            model_file.load_model(blob, custom_objects=TRUSTED if "vae" in name else None)
        outcome, message = "loaded", ""
    except MemoryError:
        outcome, message = "MemoryError", ""
    except Exception as exc:
        outcome, message = "refused", f"{type(exc).__name__}: " + (str(exc).splitlines() or [""])[0]
    results[name] = {
        "outcome": outcome,
        "message": message,
        "seconds": round(time.perf_counter() - start, 3),
        "peak_bytes": status("VmHWM") - before,
        "file_bytes": len(blob),
    }
    print(name, results[name], file=sys.stderr, flush=True)
print(json.dumps(results))
"""


def _cap_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))


@pytest.fixture(scope="module")
def bounds_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every attack and every real model read by one capped child: name -> outcome, message, seconds, peak."""
    folder = tmp_path_factory.mktemp("load_bounds")
    for name, (build, _, _) in ATTACKS.items():
        (folder / name).write_bytes(build())
    for name, blob in real_models().items():
        (folder / name).write_bytes(blob)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), "master_encoder", str(CHILD_HEADROOM)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_cap_address_space,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_each_attack_is_refused_fast_with_bounded_memory(bounds_run, name: str) -> None:
    result = bounds_run[name]
    _, kind, phrase = ATTACKS[name]
    assert result["outcome"] == "refused" and phrase in result["message"], result
    assert result["message"].startswith(f"{kind}: "), result
    if kind == TOO_LARGE:
        assert result["message"].startswith("TooLarge: checking your answer needed more than "), (
            result
        )
    assert result["seconds"] < ATTACK_SECONDS, result
    assert result["peak_bytes"] < ATTACK_PEAK_BYTES, result


@pytest.mark.parametrize(
    "name",
    [
        "master_encoder",
        "master_encoder_3",
        "master_decoder",
        "master_decoder_small",
        "master_vae",
        "master_vae_trained",
        "stand_in_encoder",
        "stand_in_decoder",
        "smooth_decoder",
    ],
)
def test_the_course_models_still_load(bounds_run, name: str) -> None:
    result = bounds_run[name]
    assert result["outcome"] == "loaded", result
    assert result["peak_bytes"] < LEGIT_PEAK_BYTES, result


def test_every_correct_variant_of_the_demo_set_still_loads(bounds_run) -> None:
    from vae_samples import demo

    for sub in demo.CORRECT_VARIANTS:
        for part in ("encoder", "decoder"):
            result = bounds_run[f"{sub.student}_{part}"]
            assert result["outcome"] == "loaded", (sub.student, part, result)
            assert result["peak_bytes"] < LEGIT_PEAK_BYTES, (sub.student, part, result)


# --- the parts, in process ---------------------------------------------------------------------------


def _layer_cases():
    from keras import layers as L  # noqa: N812

    image = (12, 12, 6)
    return {
        "Dense": (lambda x: L.Dense(7)(L.Flatten()(x)), image),
        "Dense on a feature map, no bias": (lambda x: L.Dense(7, use_bias=False)(x), image),
        "Conv1D": (lambda x: L.Conv1D(5, 3, strides=2, padding="same")(x), (20, 4)),
        "Conv2D dilated": (lambda x: L.Conv2D(6, (3, 2), dilation_rate=2)(x), image),
        "Conv3D": (lambda x: L.Conv3D(4, 2)(x), (5, 5, 5, 2)),
        "Conv1DTranspose": (lambda x: L.Conv1DTranspose(5, 3, strides=2)(x), (20, 4)),
        "Conv2DTranspose": (
            lambda x: L.Conv2DTranspose(5, 3, strides=2, padding="same")(x),
            image,
        ),
        "Conv2DTranspose output_padding": (
            lambda x: L.Conv2DTranspose(5, 3, strides=2, output_padding=1)(x),
            image,
        ),
        "Conv3DTranspose": (lambda x: L.Conv3DTranspose(3, 2)(x), (5, 5, 5, 2)),
        "DepthwiseConv2D": (lambda x: L.DepthwiseConv2D(3, depth_multiplier=2)(x), image),
        "SeparableConv2D": (lambda x: L.SeparableConv2D(4, 3, depth_multiplier=2)(x), image),
        "BatchNormalization": (lambda x: L.BatchNormalization()(x), image),
        "BatchNormalization axis 1": (
            lambda x: L.BatchNormalization(axis=1, center=False)(x),
            image,
        ),
        "BatchNormalization renorm": (lambda x: L.BatchNormalization(renorm=True)(x), image),
        "LayerNormalization": (lambda x: L.LayerNormalization()(x), image),
        "PReLU shared": (lambda x: L.PReLU(shared_axes=[1, 2])(x), image),
        "PReLU": (lambda x: L.PReLU()(x), image),
        "pooling, upsampling, padding": (
            lambda x: L.Cropping2D(1)(
                L.ZeroPadding2D(2)(L.UpSampling2D(2)(L.MaxPooling2D(2)(L.AveragePooling2D(1)(x))))
            ),
            image,
        ),
        "global pooling": (
            lambda x: L.GlobalAveragePooling2D()(L.GlobalMaxPooling2D(keepdims=True)(x)),
            image,
        ),
        "merging": (
            lambda x: L.Concatenate()(
                [
                    L.Add()([x, x]),
                    L.Multiply()([x, x]),
                    L.Subtract()([x, x]),
                    L.Average()([x, x]),
                    L.Maximum()([x, x]),
                    L.Minimum()([x, x]),
                ]
            ),
            image,
        ),
        "activations": (
            lambda x: L.Softmax()(L.ELU()(L.LeakyReLU(0.2)(L.ReLU()(L.Activation("tanh")(x))))),
            image,
        ),
        "dropout and noise": (
            lambda x: L.AlphaDropout(0.1)(
                L.GaussianDropout(0.1)(
                    L.GaussianNoise(0.1)(L.SpatialDropout2D(0.1)(L.Dropout(0.5)(x)))
                )
            ),
            image,
        ),
        "reshaping": (
            lambda x: L.RepeatVector(2)(
                L.Flatten()(L.Permute((2, 1, 3))(L.Reshape((6, 24, 6))(L.Rescaling(0.5)(x))))
            ),
            image,
        ),
    }


@pytest.mark.parametrize("case", sorted(_layer_cases()))
def test_the_size_from_the_config_is_what_keras_builds(case: str) -> None:
    """For every layer class the estimate accepts: parameters from the config alone == what Keras builds."""
    import keras

    build, shape = _layer_cases()[case]
    x = keras.Input(shape=shape)
    model = keras.Model(x, build(x))
    blob = model_file.model_bytes(model)
    config = json.loads(model_file.model_file_members(blob)["config.json"])
    cost = model_size.model_cost(config)
    assert cost.parameters == model.count_params() == model_file.load_model(blob).count_params()
    assert cost.flops_per_image > 0 and cost.widest_values > 0


def test_the_master_costs_what_the_caps_say() -> None:
    """The measurements the caps' docstrings quote: the master's encoder and decoder, from their configs."""
    from course.architecture import shape_before_flattening
    from vae_samples.kit import load_master_and_release, solution_source

    master, _ = load_master_and_release()
    namespace = _namespace([solution_source(master, cell) for cell in ("encoder", "decoder")])

    encoder = namespace["build_encoder"](2)
    decoder = namespace["build_decoder"](2, shape_before_flattening(encoder))
    costs = []
    for model in (encoder, decoder):
        members = model_file.model_file_members(model_file.model_bytes(model))
        config = untrusted.parse_json(members["config.json"], "config", model_file.MAX_CONFIG_BYTES)
        costs.append(model_size.model_cost(config))
        assert costs[-1].parameters == model.count_params()
        assert untrusted.json_nesting_depth(members["config.json"]) == 10
    assert [c.flops_per_image for c in costs] == [38_987_008, 9_332_736]
    assert [c.widest_values for c in costs] == [25_088, 25_088]
    assert sum(c.flops_per_image for c in costs) * 20 < model_size.MAX_FLOPS_PER_IMAGE


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"1", 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'["[[[[", "]]]", "\\"[[["]', 1),
        (b'["\\\\", [["\\\\\\"]]"]]]', 3),
        (b"[" * 5000 + b"]" * 5000, 5000),
        (b"]]][[", 0),  # json.loads fails at the first "]": nothing nests
    ],
)
def test_json_nesting_depth_ignores_strings_and_never_recurses(text: bytes, depth: int) -> None:
    assert untrusted.json_nesting_depth(text) == depth
    assert untrusted.json_nesting_depth(text.decode()) == depth


def _reference_depth(data: bytes) -> tuple[int, bool]:
    """What ``json.loads`` reaches, one character at a time: the deepest nesting before the text stops being
    JSON at a backslash outside a string (and whether it never did)."""
    depth = deepest = 0
    inside = escaped = False
    for char in data.decode("latin-1"):
        if inside:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                inside = False
        elif char == "\\":
            return deepest, False
        elif char == '"':
            inside = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest, True


def test_json_nesting_depth_agrees_with_a_character_scan_across_chunk_boundaries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Random text of brackets, quotes and backslashes, scanned in chunks as small as one byte: never below
    what json.loads reaches, and equal to it on text whose backslashes are all inside strings."""
    import random

    rng = random.Random(20)
    for _ in range(3_000):
        data = bytes(rng.choice(b'[]{}"\\ax,:') for _ in range(rng.randint(0, 40)))
        monkeypatch.setattr(untrusted, "_SCAN_CHUNK", rng.choice([1, 2, 3, 7, 2**20]))
        found = untrusted.json_nesting_depth(data)
        expected, clean = _reference_depth(data)
        assert found >= expected and (found == expected or not clean), (data, found, expected)


def test_parse_json_refuses_deep_and_large_text_before_parsing() -> None:
    with pytest.raises(untrusted.TooLarge, match="nested 100,000 levels deep"):
        untrusted.parse_json("[" * 100_000 + "]" * 100_000, "the text", 10**7)
    with pytest.raises(
        untrusted.TooLarge, match="more than 1,000 bytes of the text: it is 1,001 bytes"
    ):
        untrusted.parse_json(b" " * 1001, "the text", 1000)
    with pytest.raises(ValueError, match="is not JSON"):
        untrusted.parse_json(b"[1,", "the text", 1000)
    assert untrusted.parse_json(b'{"a": [1, 2]}', "the text", 1000) == {"a": [1, 2]}


def test_pack_refuses_keys_unpack_would_refuse() -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        probing.pack({"k" * 200: 1})
    with pytest.raises(ValueError, match="printable ASCII"):
        probing.pack({"caf\u00e9": 1})


def test_unpack_round_trips_what_pack_writes() -> None:
    data = {
        "a": np.arange(6.0).reshape(2, 3),
        "f": np.asfortranarray(np.arange(6).reshape(2, 3)),
        "s": np.array("text"),
        "m.keras": b"PK\x03\x04 bytes",
        "h.json": {"loss": [1.0, float("nan")], "nested": [[[]]]},
        "e": np.zeros((0, 4), "float32"),
    }
    out = probing.unpack(probing.pack(data))
    assert np.array_equal(out["a"], data["a"]) and np.array_equal(out["f"], data["f"])
    assert out["s"] == "text" and out["m.keras"] == data["m.keras"] and out["e"].shape == (0, 4)
    assert out["h.json"]["nested"] == [[[]]] and np.isnan(out["h.json"]["loss"][1])
    out["a"][0, 0] = 7.0  # writable, as np.load's arrays were


def test_unpack_refuses_two_members_of_one_name() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(1))
    member = _stored("x.npy", buffer.getvalue())
    with pytest.raises(ValueError, match="the same name twice"):
        probing.unpack(_raw_zip([member, member]))


def test_nested_functional_models_called_several_times_still_load() -> None:
    """Keras numbers a nested functional model's calls from 0 in arguments and from 1 in outputs;
    a model whose output is a sub-model's output (``keras.Model(x, decoder(z))``) must load."""
    import keras
    from keras import layers

    x, z = keras.Input((2,)), keras.Input((2,))
    inner = keras.Model(z, [layers.Dense(3)(z), layers.Dense(4)(z)])
    first = inner(x)
    block = keras.Sequential([layers.Dense(4), layers.Dense(2)])
    models = [
        keras.Model(x, inner(x)),
        keras.Model(x, [inner(x)[1], layers.Dense(5)(first[1])]),
        keras.Model(x, block(block(x))),
        keras.Model(x, inner(block(x))[0]),
    ]
    for model in models:
        loaded = model_file.load_model(model_file.model_bytes(model))
        assert loaded.count_params() == model.count_params()
