"""Part 8's self-check: the manifold is one 420x420 image in [0, 1] with every code in its tile.

The layout is read through a probe decoder (``course.stand_ins.ProbeDecoder``) whose tiles show their own
code, so a decoder that trained poorly cannot hide or fake a layout mistake (``_layout_problem``). Every tile
of that picture must also be the probe decoder's own output for the code it shows, recomputed by the checker
(``decoded_tiles_problem``): a picture that no decoder drew earns nothing. ``manifold`` itself, drawn by the
student's trained decoder, is judged on its own pixels (shape and range), which the checker reads itself.
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

    def first(values: np.ndarray) -> str:
        return ", ".join(f"{v:.3g}" for v in values[:3]) + "…"

    found = f"found z[0] = {first(z0[0])} along row 0, z[1] = {first(z1[:, 0])} down column 0"
    if float(np.ptp(z0)) <= 1e-3 and float(np.ptp(z1)) <= 1e-3:
        return f"every tile shows the same code ({z0[0, 0]:.3g}, {z1[0, 0]:.3g}): each tile must decode its own code"
    if down_columns(z0) and along_rows(z1):
        return (
            "the tiles are transposed: z[0] changes down a column and z[1] along a row; expected z[0] to change "
            "along a row (column j shows grid[j]) and z[1] down a column (row i shows grid[i])"
        )
    if not (along_rows(z0) and down_columns(z1)):
        return (
            "the tiles are not where the text puts them: tile (i, j) must show z = (grid[j], grid[i]); "
            + found
            + "; check the reshape/transpose that tiles the digits"
        )
    if np.any(np.diff(z0[0]) < 0) or np.any(np.diff(z1[:, 0]) < 0):
        return (
            "the grid runs backwards: z[0] must increase along a row and z[1] down a column "
            "(grid ascending, tile (i, j) shows (grid[j], grid[i])); " + found
        )
    return ""


DIGIT = 28
TILE_TOLERANCE = 1e-5
"""A tile against the probe decoder's output for its code, recomputed by the checker: float32 in both, measured 0."""


def tiles_of(image: np.ndarray, n: int) -> np.ndarray:
    """The (n, n, 28, 28) tiles of an (n * 28, n * 28) image, tile (i, j) in row i, column j."""
    return image.reshape(n, DIGIT, n, DIGIT).transpose(0, 2, 1, 3)


def read_probe_tiles(image: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The code each tile of ``image`` shows (n, n, 2), each tile's orientation (n, n: 1 transposed inside itself,
    0 as drawn, -1 either), and why the tiles are not n * n different outputs of the probe decoder ("" when
    they are).

    The probe decoder (``course.stand_ins.ProbeDecoder``) writes z[0] to pixel (0, 0) and z[1] to pixel
    (0, 1) and nothing else; each tile is compared with its output for the code the tile shows, recomputed
    here, as drawn or transposed inside itself (a layout slip the layout check names).
    """
    from course.stand_ins import ProbeDecoder

    tiles = tiles_of(image, n).reshape(n * n, DIGIT, DIGIT)
    as_drawn = np.stack([tiles[:, 0, 0], tiles[:, 0, 1]], axis=1)
    transposed = np.stack([tiles[:, 0, 0], tiles[:, 1, 0]], axis=1)
    decoder = ProbeDecoder()
    outputs = [
        np.asarray(decoder.predict(codes.astype("float32")), dtype=np.float64).reshape(
            -1, DIGIT, DIGIT
        )
        for codes in (as_drawn, transposed)
    ]
    drawn = np.all(np.abs(tiles - outputs[0]) <= TILE_TOLERANCE, axis=(1, 2))
    flipped = np.all(np.abs(tiles - outputs[1].transpose(0, 2, 1)) <= TILE_TOLERANCE, axis=(1, 2))
    codes = np.where(drawn[:, None], as_drawn, transposed)
    problem = ""
    if not (drawn | flipped).all():
        problem = (
            f"{int((~(drawn | flipped)).sum())} of the {n * n} tiles are not a digit the decoder drew (each "
            "28 x 28 tile must be one decoded image, whole): check the reshape/transpose that tiles the digits"
        )
    elif len(np.unique(codes.round(5), axis=0)) != n * n:
        problem = f"the {n * n} tiles do not show {n * n} different codes: decode every code of the grid once"
    # 1: transposed inside itself, 0: as drawn, -1: either (a tile whose z[1] is 0 reads the same both ways).
    orientation = np.where(drawn & flipped, -1, np.where(drawn, 0, 1))
    return codes.reshape(n, n, 2), orientation.reshape(n, n), problem


def decoded_tiles_problem(image: np.ndarray, n: int) -> str:
    """Why the tiles of ``image`` are not n * n different outputs of the probe decoder, or "" (``read_probe_tiles``)."""
    return read_probe_tiles(image, n)[2]


def arrangement(codes: np.ndarray, orientation: np.ndarray) -> tuple[str, str, bool] | None:
    """How a picture's n x n tiles are laid out, whatever the grid's values: along which axis of the picture and
    in which direction z[0] and z[1] grow, and whether every tile is transposed inside itself; None when the
    tiles follow no such regular layout.

    Two pictures drawn by the same ``build_manifold`` share it; the checks compare it, never the values.
    """
    n = codes.shape[0]
    rows, cols = np.indices((n, n))
    ways = {"down": rows, "up": n - 1 - rows, "right": cols, "left": n - 1 - cols}
    found = []
    for component in (codes[..., 0], codes[..., 1]):
        values = np.unique(component.round(3))
        if len(values) != n:
            return None
        ranks = np.searchsorted(values, component.round(3))
        found.append(
            next((way for way, index in ways.items() if np.array_equal(ranks, index)), None)
        )
    axis = {"down": "rows", "up": "rows", "right": "columns", "left": "columns"}
    if None in found or axis[found[0]] == axis[found[1]]:
        return None
    sides = set(np.unique(orientation[orientation >= 0]).tolist())
    return (found[0], found[1], sides == {1}) if len(sides) <= 1 else None


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
            "with the probe decoder: " + problem,
        )
        # The codes in place are not enough: every tile must be the probe decoder's own output for its code.
        problem = decoded_tiles_problem(image, 15)
        expect(
            not problem,
            "build_manifold(decoder) for a probe decoder: " + problem,
        )

    return [(2, "the manifold image and its layout", check)]
