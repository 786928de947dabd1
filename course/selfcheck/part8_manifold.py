"""Part 8's self-check: the manifold is one 420x420 image in [0, 1] with every code in its tile.

The layout is read through a probe decoder (``course.stand_ins.ProbeDecoder``) whose tiles show their own
code, so a decoder that trained poorly cannot hide or fake a layout mistake (``_layout_problem``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from course import probing
from course.checks import Check, expect, expect_ran, expect_shape


def probe_manifold(manifold: Any, build_manifold: Callable[..., Any]) -> dict[str, Any]:
    from course.stand_ins import ProbeDecoder

    rec = probing.Recorder()
    rec["type"] = type(manifold).__name__
    array = np.asarray(manifold) if isinstance(manifold, np.ndarray) else None
    if array is not None and array.dtype.kind in "fiub":
        rec["manifold"] = array.astype(np.float32)
    # The layout, read through a decoder that needs no training: pixels (0, 0) and (0, 1) of each tile show its code.
    image = rec.attempt(
        "build_manifold(probe_decoder)", lambda: np.asarray(build_manifold(ProbeDecoder()))
    )
    if image is not None and image.dtype.kind in "fiub":
        rec["probe_image"] = image.astype(np.float32)
    return rec.data


def _layout_problem(z0: np.ndarray, z1: np.ndarray) -> str:
    """What is wrong with the codes read from the tiles (tile (i, j) should show z = (grid[j], grid[i])), or ""."""

    def along_rows(a: np.ndarray) -> bool:  # the same in every row, changing along a row
        return bool(np.allclose(a, a[:1, :], atol=1e-5)) and float(np.ptp(a)) > 1e-3

    def down_columns(a: np.ndarray) -> bool:  # the same in every column, changing down a column
        return along_rows(a.T)

    found = (
        f"found z[0] = {np.array2string(z0[0, :4], precision=2)}... along the first row and "
        f"z[1] = {np.array2string(z1[:4, 0], precision=2)}... down the first column"
    )
    if float(np.ptp(z0)) <= 1e-3 and float(np.ptp(z1)) <= 1e-3:
        return f"every tile shows the same code ({z0[0, 0]:.3g}, {z1[0, 0]:.3g}): each tile must decode its own code"
    if down_columns(z0) and along_rows(z1):
        return (
            "the tiles are transposed: z[0] changes down a column and z[1] along a row; expected z[0] to change "
            "along a row (column j shows grid[j]) and z[1] down a column (row i shows grid[i])"
        )
    if not (along_rows(z0) and down_columns(z1)):
        return (
            "the tiles are not where the text puts them: the tile in row i, column j must show z = (grid[j], grid[i]); "
            + found
            + "; check the reshape/transpose that tiles the digits"
        )
    if np.any(np.diff(z0[0]) < 0) or np.any(np.diff(z1[:, 0]) < 0):
        return (
            "the grid runs backwards: z[0] must increase along a row and z[1] down a column "
            "(grid ascending, tile (i, j) shows (grid[j], grid[i])); " + found
        )
    return ""


def verdict_manifold(data: dict[str, Any]) -> list[Check]:
    def check() -> None:
        expect(
            str(data.get("type")) == "ndarray",
            f"build_manifold should return a NumPy array, not {data.get('type')}",
        )
        expect("manifold" in data, "build_manifold should return an array of numbers")
        manifold = np.asarray(data["manifold"], dtype=np.float64)
        expect_shape(
            "the manifold image",
            manifold.shape,
            (420, 420),
            "15 x 15 tiles of 28 x 28 pixels in one 2-D array",
        )
        expect(
            bool(np.isfinite(manifold).all()) and manifold.min() >= 0 and manifold.max() <= 1,
            f"the manifold's pixels range from {np.nanmin(manifold):.3f} to {np.nanmax(manifold):.3f}; expected values in [0, 1]",
        )
        # The layout is judged on the probe decoder's picture, not on `manifold`: an undertrained decoder may
        # draw (almost) the same blur everywhere, and that is no fault of build_manifold.
        expect_ran(data, "build_manifold(probe_decoder)")
        image = np.asarray(data.get("probe_image", np.zeros(0)), dtype=np.float64)
        expect_shape(
            "build_manifold(decoder) for a probe decoder",
            image.shape,
            (420, 420),
            "15 x 15 tiles of 28 x 28 pixels in one 2-D array",
        )
        expect(
            bool(np.isfinite(image).all()),
            "build_manifold(decoder) for a probe decoder contains NaN or infinity",
        )
        problem = _layout_problem(image[0::28, 0::28], image[0::28, 1::28])
        if problem and not _layout_problem(image.T[0::28, 0::28], image.T[0::28, 1::28]):
            problem = (
                "the whole image is transposed (tiles and the digits in them): tile (i, j) must show "
                "z = (grid[j], grid[i]), z[0] changing along a row"
            )
        expect(
            not problem,
            "with a probe decoder whose tiles show their code in pixels (0, 0) and (0, 1): "
            + problem,
        )

    return [(2, "the manifold image and its layout", check)]
