"""Part 6's self-check: the preprocessed x_train and x_test have the budget's shape, float32 and [0, 1].

The probe sends a sample of each array's own images, not facts about them: the first ``HEAD`` images, ``SPREAD``
images spread evenly over the whole array (the last one included), exactly as the array holds them (its dtype and the
shape of one image included), and the number of images. The verdict reads the dtype, the shape of an image and
the pixel range from those images itself. The number of images is the one fact the kernel states: it can only
fail the check (a wrong count), never pass it, since the images must be there and be MNIST's own, at
the rows sent, scaled to [0, 1] (compared with MNIST read where the verdict runs). The hidden test
compares the images with MNIST read by the grader (``vae_grader.judge.hidden.training.verdict_data``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from course import probing
from course.checks import Check, expect, expect_shape
from course.selfcheck.probe import Probe

HEAD = 16
SPREAD = 48
"""Images sampled from each array: the first ``HEAD`` and ``SPREAD`` spread evenly from the first to the last."""


def sample_rows(length: int) -> np.ndarray:
    """Which images of an array of ``length`` images the probe sends, in order."""
    if length <= 0:
        return np.zeros(0, dtype=int)
    spread = np.linspace(0, length - 1, SPREAD).round().astype(int)
    return np.unique(np.concatenate([np.arange(min(HEAD, length)), spread]))


def probe_data(x_train: Any, x_test: Any) -> dict[str, Any]:
    rec = probing.Recorder()
    for name, value in (("x_train", x_train), ("x_test", x_test)):
        array = np.asarray(value)
        rec[f"{name}.length.json"] = int(array.shape[0]) if array.ndim else None
        if array.ndim and array.dtype.kind in "fiub":
            rec[f"{name}.sample"] = array[sample_rows(len(array))]
    return rec.data


def _sample(data: dict[str, Any], name: str) -> tuple[np.ndarray, int]:
    """The images received for ``name`` and the number of images the kernel says the array holds."""
    sample = data.get(f"{name}.sample")
    expect(
        isinstance(sample, np.ndarray) and sample.dtype.kind in "fiub" and sample.ndim >= 1,
        f"{name} should be a NumPy array of numbers (preprocess's output)",
    )
    length = data.get(f"{name}.length.json")
    expect(
        isinstance(length, int) and not isinstance(length, bool) and length > 0,
        f"{name} holds no images",
    )
    # The sample is what the probe takes from an array of that many images; anything else is not that array.
    expect(
        len(sample) == len(sample_rows(length)),
        f"{name}: the images received do not come from an array of {length} images",
    )
    return sample, length


def divisor_found(images: np.ndarray, raw: np.ndarray) -> float | None:
    """The number ``d`` such that ``images`` are the uint8 images ``raw`` divided by ``d``, pixel for pixel and in
    the same order, or None when no single divisor explains them (other images, another order, another shape).

    It tells a scale slip from an order slip: both make the images differ from MNIST / 255, but only an order
    slip changes which digit is where."""
    expected = np.asarray(raw, dtype=np.float64).reshape(len(raw), -1)
    got = np.asarray(images, dtype=np.float64)
    if got.size != expected.size or not np.isfinite(got).all():
        return None
    got = got.reshape(expected.shape)
    # Least-squares scale of got against raw, then the same 1e-6-per-255 tolerance as the checks themselves.
    norm = float(np.sum(expected * expected))
    scale = float(np.sum(got * expected)) / norm if norm else 0.0
    if scale <= 0 or not np.allclose(got, scale * expected, atol=1e-6 * 255 * scale, rtol=1e-5):
        return None
    return 1.0 / scale


def scale_hint(divisor: float) -> str:
    """How pixels divided by ``divisor`` instead of 255 read to a student (255 -> 1.0 is what [0, 1] asks for),
    after "the pixels are"."""
    if abs(divisor - 1.0) <= 1e-5:
        return "left in 0..255 (not divided), so a white pixel stays 255, not 1.0: divide by 255"
    return (
        f"divided by {divisor:.6g} instead of 255, so a white pixel (255) becomes {255 / divisor:.4g}, not 1.0: "
        "divide by 255"
    )


def verdict_data(data: dict[str, Any]) -> list[Check]:
    from course import training_budget

    budget = training_budget()

    def check() -> None:
        train, train_length = _sample(data, "x_train")
        # The hint names what differs: the shape of one image (the channel axis) or the number of images.
        channel_hint = "images need a channel axis: (N, 28, 28, 1)"
        expect_shape(
            "x_train",
            (train_length, *train.shape[1:]),
            (budget.train_images, 28, 28, 1),
            channel_hint
            if train.shape[1:] != (28, 28, 1)
            else f"the budget trains on {budget.train_images} images: preprocess(x_train_raw)[: budget.train_images]",
        )
        test, test_length = _sample(data, "x_test")
        expect_shape(
            "x_test",
            (test_length, *test.shape[1:]),
            (10000, 28, 28, 1),
            channel_hint
            if test.shape[1:] != (28, 28, 1)
            else "x_test is all 10,000 MNIST test images",
        )
        for name, images in (("x_train", train), ("x_test", test)):
            expect(images.dtype == np.float32, f"{name} has dtype {images.dtype}; expected float32")
            pixels = images.astype(np.float64)
            low, high = float(np.min(pixels)), float(np.max(pixels))
            expect(
                bool(np.isfinite(pixels).all()) and 0.0 <= low and high <= 1.0,
                f"{name} ranges from {low:g} to {high:g}; expected [0, 1]: divide by 255",
            )
            expect(
                high > low,
                f"every pixel of {name}'s images is {low:g}: they should be the MNIST digits, scaled to [0, 1]",
            )
        # Format alone could be any array of that shape: the images must be MNIST's own, compared at
        # the rows the probe sent (the notebook keeps both arrays in MNIST's order).
        import course

        (mnist_train, _), (mnist_test, _) = course.load_mnist()
        for name, images, length, reference in (
            ("x_train", train, train_length, mnist_train),
            ("x_test", test, test_length, mnist_test),
        ):
            raw = reference[sample_rows(length)]
            expected = (raw / 255.0)[..., None]
            if images.shape == expected.shape and bool(
                np.allclose(images.astype(np.float64), expected, atol=1e-6)
            ):
                continue
            divisor = divisor_found(images, raw)
            expect(
                divisor is None,
                f"{name} holds the MNIST {'training' if name == 'x_train' else 'test'} images in MNIST's order, "
                f"but its pixels are {scale_hint(divisor or 255.0)}",
            )
            expect(
                False,
                f"{name}'s images are not the MNIST {'training' if name == 'x_train' else 'test'} "
                "images scaled by 1/255, in MNIST's order",
            )

    return [(1, "x_train and x_test", check)]


CHECK = Probe(6, ("x_train", "x_test"), probe_data, verdict_data, reads_mnist=True)
"""The test cell ``test_data``: what the probe reads, the probe and its verdict."""
