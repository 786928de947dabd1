"""Part 8's self-check: the manifold is one 420x420 image, and build_manifold puts every code of the grid in its tile.

The layout is read through a probe decoder (``course.stand_ins.ProbeDecoder``) whose tiles show their own
code, so a decoder that trained poorly cannot hide or fake a layout mistake (``_layout_problem``) or a grid other
than the text's (``grid_problem``, the hidden test's own message). NaN or infinity is refused first, with its
likely cause (``nonfinite_problem``). Every tile
of that picture must also be the probe decoder's own output for the code it shows, recomputed by the checker
(``decoded_tiles_problem``): a picture that no decoder drew earns nothing. ``manifold`` itself, drawn by the
student's trained decoder, is judged on its shape and, last, on its pixels (finite, in [0, 1]): by then build_manifold
is known to be right, so the message blames the decoder that drew them (parts 3 and 7).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from course import probing
from course.checks import Check, expect, expect_ran, expect_shape
from course.selfcheck.probe import Probe


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
    # A tile holding NaN or infinity shows no code that can be read back (a grid through norm.ppf(0) = -inf draws
    # such tiles at its ends): it is left out here, and the checks that judge values refuse it with their own message.
    readable = np.isfinite(tiles).all(axis=(1, 2))
    tiles = np.where(readable[:, None, None], tiles, 0.0)
    as_drawn = np.stack([tiles[:, 0, 0], tiles[:, 0, 1]], axis=1)
    transposed = np.stack([tiles[:, 0, 0], tiles[:, 1, 0]], axis=1)
    decoder = ProbeDecoder()
    outputs = [
        np.asarray(decoder.predict(codes.astype("float32")), dtype=np.float64).reshape(
            -1, DIGIT, DIGIT
        )
        for codes in (as_drawn, transposed)
    ]
    drawn = readable & np.all(np.abs(tiles - outputs[0]) <= TILE_TOLERANCE, axis=(1, 2))
    flipped = readable & np.all(
        np.abs(tiles - outputs[1].transpose(0, 2, 1)) <= TILE_TOLERANCE, axis=(1, 2)
    )
    codes = np.where(drawn[:, None], as_drawn, transposed)
    problem = ""
    if not (drawn | flipped | ~readable).all():
        problem = (
            f"{int((~(drawn | flipped | ~readable)).sum())} of the {n * n} tiles are not a digit the decoder drew "
            "(each 28 x 28 tile must be one decoded image, whole): check the reshape/transpose that tiles the digits"
        )
    elif len(np.unique(codes[readable].round(5), axis=0)) != int(readable.sum()):
        problem = f"the {n * n} tiles do not show {n * n} different codes: decode every code of the grid once"
    # 1: transposed inside itself, 0: as drawn, -1: either (a tile whose z[1] is 0 reads the same both ways);
    # an unreadable tile has no code (NaN) and orientation -1.
    orientation = np.where(drawn & flipped, -1, np.where(drawn, 0, 1))
    orientation = np.where(readable, orientation, -1)
    codes = np.where(readable[:, None], codes, np.nan)
    return codes.reshape(n, n, 2), orientation.reshape(n, n), problem


def decoded_tiles_problem(image: np.ndarray, n: int) -> str:
    """Why the tiles of ``image`` are not n * n different outputs of the probe decoder, or "" (``read_probe_tiles``)."""
    return nonfinite_problem(image, n, "the picture") or read_probe_tiles(image, n)[2]


def nonfinite_problem(image: np.ndarray, n: int, what: str) -> str:
    """Why ``image`` (n x n tiles) holds NaN or infinity, with the likely cause, or "" when every pixel is finite.

    Refused before any check that compares values, with its own message: NaN compares unequal to everything, so
    it would otherwise read as a wrong layout, scrambled tiles or a pixel range of the finite pixels alone. The
    probe decoder turns a code with an infinite component into a tile of NaN and infinity, so a grid through
    norm.ppf(0) or norm.ppf(1) shows as whole rows and columns of such tiles at the picture's edges."""
    pixels = np.asarray(image, dtype=np.float64)
    bad_pixels = int((~np.isfinite(pixels)).sum())
    if not bad_pixels:
        return ""
    counted = f"{what} holds {bad_pixels:,} NaN or infinite pixel{'s' if bad_pixels != 1 else ''}"
    if pixels.shape != (n * DIGIT, n * DIGIT):
        return counted
    bad = ~np.isfinite(tiles_of(pixels, n)).all(axis=(2, 3))
    rows, cols = bad.all(axis=1), bad.all(axis=0)
    ends = {0, n - 1}
    at_ends = (
        bool(np.array_equal(bad, rows[:, None] | cols[None, :]))
        and set(np.flatnonzero(rows)) <= ends
        and set(np.flatnonzero(cols)) <= ends
    )
    where = f", in {int(bad.sum())} of its {n * n} tiles"
    if at_ends:
        return counted + where + ", all in its first or last row or column: " + ENDS_CAUSE
    return (
        counted
        + where
        + ": a code of the grid is NaN or infinite, or the decoder's output is; the grid is "
        f"norm.ppf(np.linspace({GRID_ENDS[0]}, {GRID_ENDS[1]}, n)), finite at both ends"
    )


GRID_ENDS = (0.05, 0.95)
"""The probabilities at the grid's ends, as the notebook's text gives them."""
ENDS_CAUSE = (
    "the grid's ends are infinite (norm.ppf(0) = -inf, norm.ppf(1) = inf): use "
    f"norm.ppf(np.linspace({GRID_ENDS[0]}, {GRID_ENDS[1]}, n))"
)
GRID_TOLERANCE = 1e-4
"""A code read from a tile against the grid computed here: the master's tiles are float32 copies of float64 codes
(measured differences below 1e-7)."""


def course_grid(n: int) -> np.ndarray:
    """norm.ppf(np.linspace(0.05, 0.95, n)), the grid the text asks for (the standard library's inverse normal CDF,
    equal to SciPy's to 1e-15)."""
    from statistics import NormalDist

    inverse = NormalDist().inv_cdf
    return np.array([inverse(p) for p in np.linspace(*GRID_ENDS, n)])


def grid_problem(along_row: np.ndarray, down_column: np.ndarray) -> str:
    """Why the codes along the first row (z[0]) and down the first column (z[1]) of tiles are not the course's grid,
    in words, or "" when they are. The layout is judged before this (``_layout_problem``): here only the values."""
    n = len(along_row)
    grid = course_grid(n)
    if np.allclose(along_row, grid, atol=GRID_TOLERANCE) and np.allclose(
        down_column, grid, atol=GRID_TOLERANCE
    ):
        return ""
    values = along_row if not np.allclose(along_row, grid, atol=GRID_TOLERANCE) else down_column
    steps = np.diff(values)
    shown = ", ".join(f"{v:.3g}" for v in np.round(values[:3], 6) + 0.0) + "…"
    if n > 2 and np.allclose(steps, steps[0], atol=GRID_TOLERANCE):
        kind = f" to {values[-1]:.3g}, evenly spaced in z (np.linspace)"
    else:
        kind = f" to {values[-1]:.3g}"
    expected = ", ".join(f"{v:.3g}" for v in np.round(grid[:3], 6) + 0.0)
    return (
        f"the grid is not norm.ppf(np.linspace({GRID_ENDS[0]}, {GRID_ENDS[1]}, n)): the tiles show z = {shown}{kind}; "
        f"expected {expected}… to {grid[-1]:.3g}, evenly spaced in probability"
    )


MIN_BLOCK = 3
"""Tiles a side the readable part of a picture needs before its layout is judged: with fewer, which way a code
grows cannot be told from a reordering. A grid through norm.ppf(0) and norm.ppf(1) leaves n - 2 (3 of 5)."""


def readable_block(codes: np.ndarray) -> tuple[slice, slice] | None:
    """The rows and columns of tiles whose codes could be read (no NaN), when they form one square block of at
    least ``MIN_BLOCK`` tiles a side and every tile outside it is unreadable; None otherwise. The whole picture
    when every tile is readable."""
    readable = np.isfinite(codes).all(axis=-1)
    rows, cols = np.flatnonzero(readable.any(axis=1)), np.flatnonzero(readable.any(axis=0))
    if len(rows) < MIN_BLOCK or len(rows) != len(cols):
        return None
    block = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    if rows[-1] - rows[0] + 1 != len(rows) or cols[-1] - cols[0] + 1 != len(cols):
        return None
    return block if readable[block].all() and readable.sum() == len(rows) ** 2 else None


def arrangement(codes: np.ndarray, orientation: np.ndarray) -> tuple[str, str, bool] | None:
    """How a picture's n x n tiles are laid out, whatever the grid's values: along which axis of the picture and
    in which direction z[0] and z[1] grow, and whether every tile is transposed inside itself; None when the
    tiles follow no such regular layout.

    Two pictures drawn by the same ``build_manifold`` share it; the checks compare it, never the values.
    """
    block = readable_block(codes)
    if block is None:
        return None
    codes, orientation = codes[block], orientation[block]
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
        problem = nonfinite_problem(image, 15, "build_manifold(decoder) for a probe decoder")
        expect(not problem, problem)
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
        # The grid's values, as the hidden test judges them (the same message): the layout above is right here.
        problem = grid_problem(image[0, 0::28], image[0::28, 1])
        expect(not problem, "with the probe decoder: " + problem)
        # The codes in place are not enough: every tile must be the probe decoder's own output for its code.
        problem = decoded_tiles_problem(image, 15)
        expect(
            not problem,
            "build_manifold(decoder) for a probe decoder: " + problem,
        )
        # Judged last: build_manifold is right by now, so NaN or values outside [0, 1] in `manifold` come from the
        # trained decoder that drew it (parts 3 and 7), and the message says so. A NaN grid failed above, with its
        # cause, on the probe decoder's picture.
        bad = int((~np.isfinite(manifold)).sum())
        expect(
            not bad,
            f"the manifold image holds {bad:,} NaN or infinite pixels, yet build_manifold draws the probe decoder's "
            "codes right: they come from the trained decoder (did training diverge? part 7's self-check says)",
        )
        expect(
            manifold.min() >= 0 and manifold.max() <= 1,
            f"the manifold's pixels range from {manifold.min():.3f} to {manifold.max():.3f}; expected values in "
            "[0, 1]: build_manifold is right, so the trained decoder draws them (part 3: end with a sigmoid)",
        )

    return [(2, "the manifold image and its layout", check)]


CHECK = Probe(8, ("manifold", "build_manifold"), probe_manifold, verdict_manifold)
"""The test cell ``test_manifold``: what the probe reads, the probe and its verdict."""
