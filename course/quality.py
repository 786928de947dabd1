"""How well reconstructions match their own inputs, robust to short training.

After a few seconds of training a VAE's loss sits only a little below that of a model that
predicts the average digit for every input (measured: 0.24 vs 0.263), so a threshold on the loss
alone separates a working model from a collapsed one by a thin, seed-dependent margin. Asking
instead whether each reconstruction fits *its own* input better than it fits other inputs is
immune to that: the mean-image predictor and an untrained model score exactly chance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ReconstructionReport:
    ratio: float
    """Mean cross-entropy of reconstructions against their own inputs / against other inputs (1.0 = chance)."""
    top5: float
    """Fraction of reconstructions whose own input is among the 5 inputs they fit best (5/N = chance)."""
    own_bce: float
    """Mean per-pixel cross-entropy of each reconstruction against its own input."""


def reconstruction_report(
    inputs: np.ndarray, reconstructions: np.ndarray, eps: float = 1e-7
) -> ReconstructionReport:
    """Compare every reconstruction with every input of the same batch (N x N cross-entropies)."""
    x = np.asarray(inputs, dtype=np.float64).reshape(len(inputs), -1)
    r = np.asarray(reconstructions, dtype=np.float64).reshape(len(reconstructions), -1)
    if x.shape != r.shape:
        raise AssertionError(
            f"the reconstructions have shape {r.shape[0]}x{r.shape[1]} values; expected {x.shape}"
        )
    if not np.all(np.isfinite(r)):
        raise AssertionError("the reconstructions contain NaN or infinity: training diverged")
    r = np.clip(r, eps, 1 - eps)
    # err[i, j] = cross-entropy of reconstruction i against input j, as one matrix product
    err = -(np.log(r) @ x.T + np.log1p(-r) @ (1 - x).T) / x.shape[1]
    own = np.diag(err)
    n = len(x)
    others = (err.sum(axis=1) - own) / (n - 1)
    better_fits = (err < own[:, None]).sum(
        axis=1
    )  # inputs that reconstruction i fits better than its own
    return ReconstructionReport(
        ratio=float(own.mean() / others.mean()),
        top5=float(np.mean(better_fits < 5)),
        own_bce=float(own.mean()),
    )
