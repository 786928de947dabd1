"""Offline-capable MNIST loading with Keras's return shape.

Course servers are often offline, and ``keras.datasets.mnist.load_data()`` insists on
downloading whenever its cached file's hash differs from the one it expects, so a local copy
cannot simply be dropped into Keras's cache. This loader looks, in order, at an explicit path,
the ``MNIST_NPZ`` environment variable, Keras's cache file, and only then downloads through
Keras. Whatever it loads is verified, because a truncated copy otherwise surfaces much later
as a baffling shape error or a model that trains on garbage.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

ENV_VAR = "MNIST_NPZ"
"""Environment variable naming a local ``mnist.npz`` in Keras's layout."""

MnistSplits = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

_EXPECTED_SHAPES = {
    "x_train": (60000, 28, 28),
    "y_train": (60000,),
    "x_test": (10000, 28, 28),
    "y_test": (10000,),
}
# Per-digit counts of the original MNIST: a cheap fingerprint that catches a reshuffled,
# relabelled or partially overwritten copy which still has the right shapes.
_TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
_TEST_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)

_HOW_TO_FIX = (
    f"Set {ENV_VAR}=/path/to/mnist.npz (a copy in Keras's layout: x_train, y_train, x_test, y_test) "
    "or pass load_mnist(path=...)."
)


class MnistDataError(RuntimeError):
    """MNIST could not be found, or what was found is not the real, complete MNIST."""


def load_mnist(path: str | os.PathLike[str] | None = None) -> MnistSplits:
    """Return ``((x_train, y_train), (x_test, y_test))`` exactly like ``keras.datasets.mnist``.

    An explicit ``path`` or a set ``MNIST_NPZ`` is final: if it is wrong we say so rather than
    silently downloading something else, since an instructor who set it expects it to be used.
    """
    if path is not None:
        return _load_verified(Path(path), origin="the path passed to load_mnist()")
    env_value = os.environ.get(ENV_VAR, "").strip()
    if env_value:
        return _load_verified(Path(env_value).expanduser(), origin=f"${ENV_VAR}")
    cached = keras_cache_path()
    if cached.is_file():
        return _load_verified(cached, origin="Keras's dataset cache")
    return _download_through_keras()


def keras_cache_path() -> Path:
    """Where Keras keeps its downloaded ``mnist.npz`` (honours ``KERAS_HOME``)."""
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(keras_home) / "datasets" / "mnist.npz"


def _download_through_keras() -> MnistSplits:
    try:
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as exc:  # network errors come in many types (URLError, socket, SSL, ...)
        raise MnistDataError(
            f"MNIST is not available offline and the download failed ({type(exc).__name__}). {_HOW_TO_FIX}"
        ) from exc
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    _verify(arrays, source="the Keras download")
    return (x_train, y_train), (x_test, y_test)


def _load_verified(path: Path, origin: str) -> MnistSplits:
    if not path.is_file():
        raise MnistDataError(f"No MNIST file at {path} (from {origin}). {_HOW_TO_FIX}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = sorted(set(_EXPECTED_SHAPES) - set(npz.files))
            if missing:
                raise MnistDataError(
                    f"{path} is not MNIST in Keras's layout: it lacks {', '.join(missing)} "
                    f"(it has {', '.join(sorted(npz.files)) or 'nothing'})."
                )
            arrays = {key: npz[key] for key in _EXPECTED_SHAPES}
    except MnistDataError:
        raise
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        raise MnistDataError(
            f"{path} is damaged or not an .npz file ({type(exc).__name__}: {exc}); copy it again. {_HOW_TO_FIX}"
        ) from exc
    _verify(arrays, source=str(path))
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _verify(arrays: dict[str, np.ndarray], source: str) -> None:
    for key, shape in _EXPECTED_SHAPES.items():
        array = arrays[key]
        if array.shape != shape or array.dtype != np.uint8:
            raise MnistDataError(
                f"{source}: {key} is {array.dtype} with shape {array.shape}; expected uint8 with shape {shape}. "
                "The file is truncated or is not the full MNIST."
            )
    for key, expected in (("y_train", _TRAIN_COUNTS), ("y_test", _TEST_COUNTS)):
        counts = tuple(int(n) for n in np.bincount(arrays[key], minlength=10)[:10])
        if counts != expected or arrays[key].max() > 9:
            raise MnistDataError(
                f"{source}: the digit counts in {key} are {counts}, not MNIST's {expected}; "
                "the labels are altered or the file is another data set."
            )
