"""Verdict of part 8, ``build_manifold``: the grid of codes, the layout of the tiles, one batched decoder call.

The probe (``hidden_probes.probe_manifold_hidden``) hands the student's function stand-in decoders
(``course.stand_ins``): one whose tiles reveal the code they decoded and that counts its calls, one
whose images change smoothly with the code. So the layout is checked tile by tile without a trained model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from course.checks import Check, expect, expect_close, expect_ran, expect_shape


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

    def batched() -> None:
        image()
        calls = data.get("probe_calls.json") or []
        expect(
            calls == [25],
            f"the decoder was called {len(calls)} time(s) with batch sizes {calls[:6]}; "
            "decode all n*n codes in one batched call",
        )

    def not_scrambled() -> None:
        expect_ran(data, "build_manifold(decoder, n=15)")
        smooth = np.asarray(data.get("smooth_image", np.zeros(0)), dtype=np.float64)
        expect_shape("build_manifold(decoder, n=15)", smooth.shape, (420, 420))
        tiles = smooth.reshape(15, 28, 15, 28).transpose(0, 2, 1, 3).reshape(15, 15, -1)
        near = np.mean(
            [np.linalg.norm(tiles[i, j] - tiles[i, j + 1]) for i in range(15) for j in range(14)]
        )
        far = np.mean(
            [np.linalg.norm(tiles[i, j] - tiles[i, j + 7]) for i in range(15) for j in range(8)]
        )
        expect(
            near < 0.5 * far,
            f"neighbouring tiles differ as much as distant ones ({near:.2f} vs {far:.2f}): the tiles are "
            "scrambled; check the reshape/transpose",
        )

    return [
        (2, "the grid and the layout", layout),
        (0.5, "one batched decoder call", batched),
        (0.5, "tiles in one piece", not_scrambled),
    ]
