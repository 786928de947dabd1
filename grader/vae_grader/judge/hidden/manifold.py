"""Verdict of part 8, ``build_manifold``: the grid of codes, the layout of the tiles, one batched decoder call.

The probe (``probe_manifold_hidden``, below) hands the student's function stand-in decoders
(``course.stand_ins``): one whose tiles reveal the code they decoded and that counts its calls, one
whose images change smoothly with the code. So the layout is checked tile by tile without a trained model.

Every tile is checked against the stand-in decoder's own output, recomputed here for the code the tile
shows (``course.selfcheck.part8_manifold.read_probe_tiles``, ``read_smooth_tiles``): an image that was not drawn by the decoder earns nothing.
The one fact only the kernel knows, how often its decoder was called (``probe_calls.json``), counts only
beside an image made of the 25 decoded tiles.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from course.checks import Check, expect, expect_close, expect_ran, expect_shape
from course.selfcheck.part8_manifold import (
    DIGIT,
    arrangement,
    decoded_tiles_problem,
    grid_problem,
    nonfinite_problem,
    read_probe_tiles,
    readable_block,
    tiles_of,
)
from vae_grader.judge.hidden.inputs import probing
from vae_grader.judge.hidden.part import HiddenPart

SMOOTH_TOLERANCE = 1e-4
"""A tile of the smooth decoder against its output for the code fitted to it: measured below 2e-6 (float32)."""


def read_smooth_tiles(image: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The code behind each tile of ``image`` (n, n, 2), each tile's orientation (n, n: 1 transposed inside
    itself, 0 as drawn, -1 either), and why the tiles are not whole outputs of the smooth stand-in decoder ("" when
    they are).

    ``course.stand_ins.smooth_decoder`` computes sigmoid(z W) with weights drawn by NumPy, so the code behind a
    tile is the least-squares fit of its logits; the decoder is then run here on that code, and its output must
    be the tile (as drawn or transposed inside itself). Pixels scrambled across tiles fit no code.
    """
    from course.stand_ins import smooth_decoder

    model = smooth_decoder()
    kernel, bias = (np.asarray(w, dtype=np.float64) for w in model.get_weights())
    tiles = tiles_of(image, n).reshape(n * n, DIGIT, DIGIT)
    # Tiles with NaN or infinity, or saturated to 0 and 1 (an infinite code, as a grid through norm.ppf(0) or
    # norm.ppf(1) decodes), show no code that can be fitted: they are left out, as read_probe_tiles leaves
    # them out, and the layout check refuses such a grid with its own message. A finite code of the course's
    # grid leaves a tile almost wholly unsaturated (measured: 783-784 of 784 pixels over the 225 codes of n = 15).
    readable = np.isfinite(tiles).all(axis=(1, 2)) & (
        ((tiles > 1e-4) & (tiles < 1 - 1e-4)).sum(axis=(1, 2)) >= 10
    )
    tiles = np.where(readable[:, None, None], tiles, 0.5)
    whole, codes = [], []
    for view in (tiles, tiles.transpose(0, 2, 1)):
        flat = view.reshape(n * n, -1)
        fitted = np.zeros((n * n, kernel.shape[0]))
        for index, pixels in enumerate(flat):
            usable = (pixels > 1e-4) & (pixels < 1 - 1e-4)
            if usable.sum() < 10:
                continue
            logits = np.log(pixels[usable] / (1 - pixels[usable])) - bias[usable]
            fitted[index] = np.linalg.lstsq(kernel[:, usable].T, logits, rcond=None)[0]
        redrawn = np.asarray(model.predict(fitted.astype("float32"), verbose=0), dtype=np.float64)
        whole.append(np.all(np.abs(redrawn.reshape(n * n, -1) - flat) <= SMOOTH_TOLERANCE, axis=1))
        codes.append(fitted)
    problem = ""
    if not (whole[0] | whole[1] | ~readable).all():
        problem = (
            f"{int((~(whole[0] | whole[1] | ~readable)).sum())} of the {n * n} tiles are not one decoded digit, "
            "whole: the tiles are scrambled; check the reshape/transpose"
        )
    chosen = np.where(whole[0][:, None], codes[0], codes[1])
    chosen = np.where(readable[:, None], chosen, np.nan)
    orientation = np.where(whole[0] & whole[1], -1, np.where(whole[0], 0, 1))
    orientation = np.where(readable, orientation, -1)
    return chosen.reshape(n, n, -1), orientation.reshape(n, n), problem


# --- the probes, sent into the kernel one at a time (after ``inputs``) ------------------------------


def probe_manifold_hidden(build_manifold: Any) -> dict[str, Any]:
    from course.stand_ins import ProbeDecoder, smooth_decoder

    rec = probing.Recorder()
    probe = ProbeDecoder()
    image = rec.attempt(
        "build_manifold(decoder, n=5)", lambda: np.asarray(build_manifold(probe, n=5))
    )
    if image is not None and image.dtype != object:
        rec["probe_image"] = image.astype(np.float64)
    rec["probe_calls.json"] = list(probe.calls)
    smooth = rec.attempt(
        "build_manifold(decoder, n=15)", lambda: np.asarray(build_manifold(smooth_decoder(), n=15))
    )
    if smooth is not None and smooth.dtype != object:
        rec["smooth_image"] = smooth.astype(np.float32)
    return rec.data


# --- part 8 -----------------------------------------------------------------------------------------


def verdict_manifold(data: dict[str, Any]) -> list[Check]:
    from scipy.stats import norm

    grid = norm.ppf(np.linspace(0.05, 0.95, 5))

    def image() -> np.ndarray:
        expect_ran(data, "build_manifold(decoder, n=5)")
        out = np.asarray(data.get("probe_image", np.zeros(0)))
        expect_shape(
            "build_manifold(decoder, n=5)",
            out.shape,
            (140, 140),
            "use n and digit_size, not fixed 15 and 28",
        )
        return out

    def layout() -> None:
        out = image()
        problem = nonfinite_problem(out, 5, "build_manifold(decoder, n=5)")
        expect(not problem, problem)
        z0, z1 = (
            out[0::28, 0::28],
            out[0::28, 1::28],
        )  # pixels (0, 0) and (0, 1) of every tile hold its code
        codes = np.stack(np.meshgrid(grid, grid))
        if np.allclose(np.stack([z0, out[1::28, 0::28]]), codes, atol=1e-4) and not np.allclose(
            z1, codes[1], atol=1e-4
        ):
            raise AssertionError(
                "every tile is transposed inside itself (pixel (r, c) of a digit lands at (c, r), so the "
                "digits lie on their side); the tiles are in the right places: reorder the axes of the "
                "(n, n, 28, 28) digits to (row of tiles, pixel row, column of tiles, pixel column), "
                "e.g. transpose(0, 2, 1, 3), before the reshape"
            )
        if np.allclose(np.stack([z1, z0]), codes, atol=1e-4):
            raise AssertionError(
                "z[0] and z[1] are swapped: z[0] must change along a row (column j uses grid[j]) and "
                "z[1] down a column (row i uses grid[i])"
            )
        if np.allclose(z0, z0[:1, :], atol=1e-4) and np.allclose(z1, z1[:, :1], atol=1e-4):
            problem = grid_problem(z0[0], z1[:, 0])
            expect(not problem, problem)
        expect_close(
            "z[0] along the first row of tiles",
            z0[0],
            grid,
            atol=1e-4,
            hint="z[0] must change along a row (column j uses grid[j]); the grid is norm.ppf(np.linspace(0.05, 0.95, n))",
        )
        expect_close(
            "z[1] down the first column of tiles",
            z1[:, 0],
            grid,
            atol=1e-4,
            hint="z[1] must change down a column (row i uses grid[i])",
        )
        expect_close(
            "every tile's code",
            np.stack([z0, z1]),
            np.stack(np.meshgrid(grid, grid)),
            atol=1e-4,
            hint="tile (i, j) decodes z = (grid[j], grid[i])",
        )
        problem = decoded_tiles_problem(np.asarray(out, dtype=np.float64), 5)
        expect(not problem, problem)

    def batched() -> None:
        # The call list is the kernel's word: it counts only beside an image made of the 25 tiles the probe
        # decoder drew, each recomputed here, so a call list with any other picture earns nothing.
        codes, orientation, problem = read_probe_tiles(np.asarray(image(), dtype=np.float64), 5)
        expect(
            not problem,
            "one batched call is judged on the image it drew, and build_manifold(decoder, n=5)'s image is not "
            "made of the decoder's digits: " + problem,
        )
        # Digits of any 25 codes are not yet a manifold: the tiles must follow a regular n x n layout
        # (one code component along the rows, the other down the columns), whatever the grid's values.
        expect(
            arrangement(codes, orientation) is not None,
            "one batched call is judged on the image it drew, and build_manifold(decoder, n=5)'s tiles "
            "follow no n x n grid of codes (z[0] along one axis, z[1] along the other)",
        )
        calls = data.get("probe_calls.json")
        expect(
            isinstance(calls, list) and calls == [25] and type(calls[0]) is int,
            f"the decoder was called {len(calls) if isinstance(calls, list) else 0} time(s) with batch sizes "
            f"{calls[:6] if isinstance(calls, list) else []}; decode all n*n codes in one batched call",
        )

    def not_scrambled() -> None:
        expect_ran(data, "build_manifold(decoder, n=15)")
        smooth = np.asarray(data.get("smooth_image", np.zeros(0)), dtype=np.float64)
        expect_shape("build_manifold(decoder, n=15)", smooth.shape, (420, 420))
        # A grid with infinite ends (the layout check's business) leaves tiles that show no code: this check
        # judges the block of tiles that do, so that one mistake costs one check.
        codes, orientation, problem = read_smooth_tiles(smooth, 15)
        block = readable_block(codes)
        expect(
            block is not None,
            "too few tiles of build_manifold(decoder, n=15) hold a readable digit (finite, not saturated) to "
            "judge their arrangement",
        )
        tiles = tiles_of(smooth, 15)[block]
        m = tiles.shape[0]
        tiles = tiles.reshape(m, m, -1)
        near = np.mean(
            [np.linalg.norm(tiles[i, j] - tiles[i, j + 1]) for i in range(m) for j in range(m - 1)]
        )
        far = np.mean(
            [
                np.linalg.norm(tiles[i, j] - tiles[i, j + m // 2])
                for i in range(m)
                for j in range(m - m // 2)
            ]
        )
        expect(
            near < 0.5 * far,
            f"neighbouring tiles differ as much as distant ones ({near:.2f} vs {far:.2f}): the tiles are "
            "scrambled; check the reshape/transpose",
        )
        expect(not problem, problem)
        # Whole tiles are not yet tiles in their places: the smooth picture must be laid out the way the same
        # build_manifold laid out the probe decoder's picture (read from it here, tile by tile).
        probe_codes, probe_orientation, probe_problem = read_probe_tiles(
            np.asarray(image(), dtype=np.float64), 5
        )
        expected = None if probe_problem else arrangement(probe_codes, probe_orientation)
        expect(
            expected is not None and arrangement(codes, orientation) == expected,
            "build_manifold(decoder, n=15) does not lay out its tiles the way build_manifold(decoder, n=5) "
            "does (each tile's code is read back from the decoder's own output): the tiles are scrambled; "
            "check the reshape/transpose",
        )

    return [
        (2, "the grid and the layout", layout),
        (0.5, "one batched decoder call", batched),
        (0.5, "tiles in one piece", not_scrambled),
    ]


PARTS = (HiddenPart(8, ("build_manifold",), probe_manifold_hidden, verdict_manifold),)
"""The hidden test cells judged here."""
