"""The offline MNIST loader: the shared file, the fallbacks, and every kind of bad file."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from course import data
from course.data import MnistDataError, load_mnist

SHARED = Path(
    os.environ.get(
        "MNIST_NPZ", Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist.npz"
    )
)
# Per-array SHA-256 published in ../shared/data/README.md
ARRAY_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}


@pytest.fixture(scope="module")
def real() -> dict[str, np.ndarray]:
    if not SHARED.is_file():
        pytest.fail(
            f"the shared MNIST copy is missing at {SHARED}; tests need it (see README, 'Offline data')"
        )
    (x_train, y_train), (x_test, y_test) = load_mnist(SHARED)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """No MNIST_NPZ and an empty Keras home, so only the fallbacks remain."""
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    return tmp_path


def test_shared_file_is_the_real_mnist(real):
    for key, digest in ARRAY_SHA256.items():
        assert hashlib.sha256(np.ascontiguousarray(real[key]).tobytes()).hexdigest() == digest, key
    assert real["x_train"].shape == (60000, 28, 28) and real["x_train"].dtype == np.uint8
    assert list(real["y_train"][:10]) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert (
        abs(real["x_train"].mean() - 33.3184) < 1e-3
    )  # ../shared/data/README.md: train pixel mean 33.3184


def test_environment_variable_is_used(monkeypatch, real, tmp_path):
    copy = tmp_path / "elsewhere.npz"
    copy.write_bytes(SHARED.read_bytes())
    monkeypatch.setenv(data.ENV_VAR, str(copy))
    (x_train, _), (_, y_test) = load_mnist()
    assert np.array_equal(x_train, real["x_train"]) and np.array_equal(y_test, real["y_test"])


def test_environment_variable_pointing_nowhere_is_an_error_not_a_download(monkeypatch, tmp_path):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "missing.npz"))
    monkeypatch.setattr(
        data,
        "_download_through_keras",
        lambda: pytest.fail("must not download when MNIST_NPZ is set"),
    )
    with pytest.raises(
        MnistDataError,
        match=r"No MNIST file at .*missing\.npz \(from \$MNIST_NPZ\)\. Set MNIST_NPZ=",
    ):
        load_mnist()


def test_explicit_missing_path_names_the_fix(tmp_path):
    with pytest.raises(MnistDataError) as info:
        load_mnist(tmp_path / "nope.npz")
    message = str(info.value)
    assert "nope.npz" in message and "Set MNIST_NPZ=/path/to/mnist.npz" in message
    assert "\n" not in message


def test_everything_missing_says_what_to_set(no_env, monkeypatch):
    import keras

    def offline(*args, **kwargs):
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(
        MnistDataError,
        match=r"not available offline and the download failed \(OSError\)\. Set MNIST_NPZ=",
    ):
        load_mnist()


def test_keras_cache_is_used_before_downloading(no_env, monkeypatch, real):
    cache = Path(os.environ["KERAS_HOME"]) / "datasets" / "mnist.npz"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(SHARED.read_bytes())
    monkeypatch.setattr(
        data,
        "_download_through_keras",
        lambda: pytest.fail("the cached file should have been used"),
    )
    (_, y_train), _ = load_mnist()
    assert np.array_equal(y_train, real["y_train"])


def test_keras_own_layout_loads(real, tmp_path):
    """Keras's file: entries in the order x_test, x_train, y_train, y_test, plain deflate, no zip64."""
    path = tmp_path / "keras-layout.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=False) as zf:
        for key in ("x_test", "x_train", "y_train", "y_test"):
            with zf.open(f"{key}.npy", "w") as f:
                np.lib.format.write_array(f, real[key], allow_pickle=False)
    (x_train, _), (x_test, _) = load_mnist(path)
    assert np.array_equal(x_train, real["x_train"]) and np.array_equal(x_test, real["x_test"])


def test_truncated_file_is_refused_clearly(tmp_path):
    broken = tmp_path / "mnist.npz"
    broken.write_bytes(SHARED.read_bytes()[:3_000_000])
    with pytest.raises(MnistDataError, match=r"is damaged or not an \.npz file \(BadZipFile"):
        load_mnist(broken)


def test_not_an_npz_is_refused_clearly(tmp_path):
    junk = tmp_path / "mnist.npz"
    junk.write_text("<html>404 Not Found</html>")
    with pytest.raises(MnistDataError, match="is damaged or not an .npz file"):
        load_mnist(junk)


def test_subset_with_right_keys_is_refused(real, tmp_path):
    subset = tmp_path / "mnist.npz"
    np.savez(
        subset,
        x_train=real["x_train"][:1000],
        y_train=real["y_train"][:1000],
        x_test=real["x_test"],
        y_test=real["y_test"],
    )
    with pytest.raises(
        MnistDataError,
        match=r"x_train is uint8 with shape \(1000, 28, 28\); expected uint8 with shape \(60000, 28, 28\)",
    ):
        load_mnist(subset)


def test_wrong_keys_are_named(tmp_path):
    other = tmp_path / "mnist.npz"
    np.savez(other, images=np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(
        MnistDataError, match=r"lacks x_test, x_train, y_test, y_train \(it has images\)"
    ):
        load_mnist(other)


def test_relabelled_copy_is_refused(real, tmp_path):
    shuffled = tmp_path / "mnist.npz"
    y_bad = real["y_train"].copy()
    y_bad[:500] = 0
    np.savez(
        shuffled,
        x_train=real["x_train"],
        y_train=y_bad,
        x_test=real["x_test"],
        y_test=real["y_test"],
    )
    with pytest.raises(MnistDataError, match="digit counts in y_train"):
        load_mnist(shuffled)


def test_float_images_are_refused(real, tmp_path):
    scaled = tmp_path / "mnist.npz"
    np.savez(
        scaled,
        x_train=real["x_train"] / 255.0,
        y_train=real["y_train"],
        x_test=real["x_test"],
        y_test=real["y_test"],
    )
    with pytest.raises(MnistDataError, match="x_train is float64"):
        load_mnist(scaled)
