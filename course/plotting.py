"""Figures for the notebook. Display only: none of this is graded or solves a graded part."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _plt():
    import matplotlib.pyplot as plt

    return plt


def show_image(image: np.ndarray, title: str = "", size: float = 7.0) -> None:
    """Show one greyscale image (e.g. the 420x420 manifold) without axes."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(np.asarray(image).squeeze(), cmap="Greys_r", vmin=0.0, vmax=1.0)
    ax.set_title(title)
    ax.axis("off")
    plt.show()


def show_manifold(image: np.ndarray, grid: np.ndarray, title: str = "") -> None:
    """The latent manifold with z0 along the columns and z1 down the rows, as the notebook defines it."""
    plt = _plt()
    n = len(grid)
    tile = image.shape[0] // n
    fig, ax = plt.subplots(figsize=(7.5, 7.5))
    ax.imshow(image, cmap="Greys_r", vmin=0.0, vmax=1.0)
    centres = np.arange(n) * tile + tile / 2
    ticks = list(range(0, n, max(1, n // 5))) + [n - 1]
    ax.set_xticks(centres[ticks], [f"{grid[i]:.2f}" for i in ticks])
    ax.set_yticks(centres[ticks], [f"{grid[i]:.2f}" for i in ticks])
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title(title)
    plt.show()


def show_rows(rows: Sequence[np.ndarray], row_titles: Sequence[str], title: str = "") -> None:
    """Several rows of 28x28 digits, e.g. originals above their reconstructions."""
    plt = _plt()
    n_rows, n_cols = len(rows), len(rows[0])
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * 0.9, n_rows * 1.0), squeeze=False)
    for r, (row, label) in enumerate(zip(rows, row_titles)):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.imshow(np.asarray(row[c]).squeeze(), cmap="Greys_r", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center")
    fig.suptitle(title)
    plt.show()


def scatter_latent(z: np.ndarray, labels: np.ndarray, title: str = "") -> None:
    """Codes in the 2-D latent plane, one colour per digit."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 6))
    points = ax.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", s=2, alpha=0.6)
    fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title(title)
    plt.show()
