"""Part 6's self-check: the preprocessed x_train and x_test have the budget's shape, float32 and [0, 1].

The probe sends only shapes, dtype, range and a few rows, not the whole arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from course import probing
from course.checks import Check, expect, expect_shape


def probe_data(x_train: Any, x_test: Any) -> dict[str, Any]:
    rec = probing.Recorder()
    for name, value in (("x_train", x_train), ("x_test", x_test)):
        array = np.asarray(value)
        rec[f"{name}.shape.json"] = list(array.shape)
        rec[f"{name}.dtype"] = str(array.dtype)
        if array.size and array.dtype.kind in "fiub":
            rec[f"{name}.range"] = np.array([array.min(), array.max()], dtype=np.float64)
        rec[f"{name}.head"] = array[:100]
    return rec.data


def verdict_data(data: dict[str, Any]) -> list[Check]:
    from course import training_budget

    budget = training_budget()

    def check() -> None:
        expect_shape(
            "x_train",
            data["x_train.shape.json"],
            (budget.train_images, 28, 28, 1),
            "images need a channel axis: (N, 28, 28, 1)",
        )
        expect_shape("x_test", data["x_test.shape.json"], (10000, 28, 28, 1))
        expect(
            str(data["x_train.dtype"]) == "float32",
            f"x_train has dtype {data['x_train.dtype']}; expected float32",
        )
        low, high = (float(v) for v in data.get("x_train.range", (np.nan, np.nan)))
        expect(
            0.0 <= low and high <= 1.0,
            f"x_train ranges from {low:g} to {high:g}; expected [0, 1]: divide by 255",
        )

    return [(1, "x_train and x_test", check)]
