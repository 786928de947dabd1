"""Re-measure what the reconstruction threshold rests on: the master in grading mode, many seeds.

``python -m measure.calibrate --seeds 0-9`` executes the master notebook's setup and
solution cells (no tests, no extras) once per seed with ``VAE_MODE=grading`` and ``VAE_SEED=s``,
then scores reconstructions of the same 200 test images the hidden test uses. It also scores the
two models every threshold must reject: the untrained model and the mean-image predictor.
A correct student builds layers in a different order from the master, so their initialisation
differs: varying the seed covers that. ``--backend jax`` (or ``torch``) runs the kernel on another
Keras backend (docs/backends.md: the same table per backend).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import nbformat
from nbclient import NotebookClient

from vae_grader.sandbox.environment import BACKENDS
from vae_grader.paths import MASTER, tool_env
from vae_grader.cells import require_cell
from vae_grader.submissions import PARTS

_SCORE = """
import json, time
from course.quality import reconstruction_report
(_, _), (q_raw, _) = course.load_mnist()
q = (q_raw[:200] / 255.0).astype("float32")[..., None]
def _recon(model_decoder, images):
    z_mean_q, _ = encoder(images)
    return ops.convert_to_numpy(model_decoder(z_mean_q))
trained = reconstruction_report(q, _recon(decoder, q))
mean_digit = np.broadcast_to(x_train.mean(axis=0), q.shape)
print("CALIBRATION " + json.dumps({
    "seed": budget.seed, "val_loss": float(history.history["val_loss"][-1]),
    "ratio": trained.ratio, "top5": trained.top5, "own_bce": trained.own_bce,
    "mean_image_ratio": reconstruction_report(q, mean_digit).ratio,
}))
"""

_UNTRAINED = """
from course.quality import reconstruction_report
(_, _), (q_raw, _) = course.load_mnist()
q = (q_raw[:200] / 255.0).astype("float32")[..., None]
z_mean_q, _ = encoder(q)
print("CALIBRATION " + json.dumps({"seed": budget.seed, "untrained_ratio": reconstruction_report(q, ops.convert_to_numpy(decoder(z_mean_q))).ratio}))
"""


def run_seed(seed: int, backend: str = "tensorflow") -> dict[str, float]:
    master = nbformat.read(MASTER, as_version=4)
    cells = [require_cell(master, "setup")] + [
        require_cell(master, part) for part in PARTS if part not in ("training", "manifold")
    ]
    untrained = [nbformat.v4.new_code_cell("import json\n" + _UNTRAINED)]
    cells = [nbformat.v4.new_code_cell(c.source) for c in cells] + untrained
    cells += [
        nbformat.v4.new_code_cell(require_cell(master, "training").source),
        nbformat.v4.new_code_cell(_SCORE),
    ]
    nb = nbformat.v4.new_notebook(cells=cells, metadata=master.metadata)
    NotebookClient(  # the kernel's environment only: start_kernel(env=...) via execute(**kwargs)
        nb,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(MASTER.parent)}},
    ).execute(
        env=tool_env(
            {
                "VAE_MODE": "grading",
                "VAE_SEED": str(seed),
                "MPLBACKEND": "agg",
                "KERAS_BACKEND": backend,
            }
        )
    )
    result: dict[str, float] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for line in output.get("text", "").splitlines():
                if line.startswith("CALIBRATION "):
                    result.update(json.loads(line[len("CALIBRATION ") :]))
    return result


def _seeds(text: str) -> list[int]:
    if "-" in text:
        low, high = text.split("-")
        return list(range(int(low), int(high) + 1))
    return [int(s) for s in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 0,3,7 (default 0-9)")
    parser.add_argument(
        "--backend", default="tensorflow", choices=BACKENDS, help="the kernel's Keras backend"
    )
    args = parser.parse_args(argv)
    rows = []
    for seed in _seeds(args.seeds):
        start = time.time()
        row = run_seed(seed, args.backend)
        row["seconds"] = round(time.time() - start, 1)
        row["backend"] = args.backend
        rows.append(row)
        print(
            json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}),
            flush=True,
        )
    ratios = [r["ratio"] for r in rows]
    print(
        f"{args.backend}: master error ratio over {len(rows)} seeds: min {min(ratios):.3f}, max {max(ratios):.3f}; "
        f"untrained max {max(r['untrained_ratio'] for r in rows):.3f}, mean-image {rows[0]['mean_image_ratio']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
