"""``make benchmark``: how fast grading, training and the manifold are on this machine, in one run.

    python -m measure.benchmark [--submissions 3] [--train-images 2048]

Prints three measurements (a few minutes in all; not a test, since timings depend on the machine
and on what else runs on it, which is why the load average is printed too):

1. autograding: wall seconds of ``nbgrader autograde vae --student <id>`` for each of a few copies
   of the complete demo submission, in a scratch copy of the course (nbgrader start, kernel start,
   the whole notebook with its grading-mode training and every test); median and max. Goal: median
   <= 30 s.
2. training: the master model's throughput in images/s with the student budget's batch size and
   steps per execution (course.budget.STUDENT and any VAE_* override, e.g.
   VAE_STEPS_PER_EXECUTION=1 for the settings before the speed study; build_vae compiles with them),
   measured on a slice of MNIST after a warm-up epoch, plus evaluation throughput, extrapolated
   to the students' full run (epochs x training images, plus validation).
3. the manifold: the master's batched ``build_manifold`` against the original per-point loop
   (225 ``decoder.predict`` calls of one code each), as a speed-up ratio. Goal: >= 100x.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from vae_grader.paths import MASTER, samples

AUTOGRADE_GOAL_S = 30.0
MANIFOLD_GOAL = 100.0
_MODEL_CELLS = ("setup", "encoder", "sampling", "decoder", "loss_layer", "vae_model")


def load_average() -> str:
    """Printed beside every timing: on a shared machine the load explains most of the spread."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPU(s)"


def bench_autograde(count: int) -> list[float]:
    """Autograde ``count`` copies of the complete submission in a scratch course; seconds each."""
    SUBMISSIONS = samples("demo").SUBMISSIONS  # test data, in tests/vae_samples
    from vae_grader.pipeline.grade_class import copy_course, run_pipeline

    complete = next(s for s in SUBMISSIONS if s.student == "complete")
    copies = [dataclasses.replace(complete, student=f"bench_{i}") for i in range(1, count + 1)]
    with tempfile.TemporaryDirectory(prefix="vae-benchmark-") as scratch:
        root = copy_course(Path(scratch))
        run = run_pipeline(
            root, copies, progress=lambda message: print("   ", message, flush=True), workers=1
        )
        failed = {s: r.total for s, r in run.results.items() if r.total != run.max_total}
        if failed:
            print(f"    note: the complete submission did not score full marks here: {failed}")
        for submission in copies:  # where the time goes, when the executor reports it
            log = root / "exports" / "logs" / f"autograde-{submission.student}.log"
            lines = [
                line
                for line in log.read_text(errors="replace").splitlines()
                if "Executed" in line and "cells in" in line
            ]
            if lines:
                print(f"    {submission.student}: {lines[-1].split('] ', 1)[-1]}")
        return [run.results[s.student].autograde_seconds for s in copies]


def student_budget():
    """The budget the master's cells train with below: student mode, with any VAE_* override."""
    from course.budget import training_budget

    return training_budget({**os.environ, "VAE_MODE": "student"})


def master_namespace() -> dict:
    """Run the master's setup and model cells (student budget) and add its build_manifold."""
    import ast

    from vae_grader.cells import require_cell

    master = nbformat.read(MASTER, as_version=4)
    namespace: dict = {"__name__": "vae_master"}
    env_mode = os.environ.pop("VAE_MODE", None)  # the student budget: the run students do at home
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            for grade_id in _MODEL_CELLS:
                exec(
                    compile(require_cell(master, grade_id).source, f"<master:{grade_id}>", "exec"),
                    namespace,
                )
    finally:
        if env_mode is not None:
            os.environ["VAE_MODE"] = env_mode
    # Only the function definition of the manifold cell (the cell also plots).
    tree = ast.parse(require_cell(master, "manifold").source)
    tree.body = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    exec(compile(tree, "<master:manifold>", "exec"), namespace)
    return namespace


def bench_training(namespace: dict, images: int) -> tuple[float, float]:
    """(training images/s, evaluation images/s) of the master VAE at the student batch size."""
    from course import load_mnist

    student = student_budget()

    (x_train, _), (x_test, _) = load_mnist()
    x = (x_train[: images + 4 * student.batch_size].astype("float32") / 255.0)[..., None]
    x_val = (x_test[:images].astype("float32") / 255.0)[..., None]
    vae = namespace["vae"]
    warm = x[: 4 * student.batch_size]
    vae.fit(
        warm, None, epochs=1, batch_size=student.batch_size, verbose=0
    )  # tracing, first allocations
    vae.evaluate(warm, verbose=0, batch_size=student.batch_size)
    start = time.perf_counter()
    vae.fit(
        x[4 * student.batch_size :],
        None,
        epochs=1,
        batch_size=student.batch_size,
        shuffle=True,
        verbose=0,
    )
    train_rate = images / (time.perf_counter() - start)
    start = time.perf_counter()
    vae.evaluate(x_val, verbose=0, batch_size=student.batch_size)
    eval_rate = images / (time.perf_counter() - start)
    return train_rate, eval_rate


def bench_manifold(namespace: dict, repeats: int = 5) -> tuple[float, float]:
    """(batched seconds, per-point loop seconds) for the 15x15 manifold of the master decoder."""
    import numpy as np
    from scipy.stats import norm

    decoder, build_manifold = namespace["decoder"], namespace["build_manifold"]
    build_manifold(decoder)  # warm-up
    decoder.predict(np.zeros((1, 2), "float32"), verbose=0)
    batched = []
    for _ in range(repeats):
        start = time.perf_counter()
        build_manifold(decoder)
        batched.append(time.perf_counter() - start)
    # The original: one predict call per tile.
    n, size = 15, 28
    grid = norm.ppf(np.linspace(0.05, 0.95, n))
    figure = np.zeros((n * size, n * size))
    start = time.perf_counter()
    for i, yi in enumerate(grid):
        for j, xi in enumerate(grid):
            digit = decoder.predict(np.array([[xi, yi]], "float32"), verbose=0)
            figure[i * size : (i + 1) * size, j * size : (j + 1) * size] = digit[0, :, :, 0]
    loop = time.perf_counter() - start
    return statistics.median(batched), loop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--submissions",
        type=int,
        default=3,
        help="copies of the complete submission to autograde (default 3)",
    )
    parser.add_argument(
        "--train-images",
        type=int,
        default=2048,
        help="MNIST images to time training on (default 2048)",
    )
    args = parser.parse_args(argv)
    if args.submissions < 1 or not 64 <= args.train_images <= 50000:
        parser.error("--submissions must be >= 1 and --train-images between 64 and 50000")

    student = student_budget()

    print(
        f"Benchmark on {platform.node()}: {platform.machine()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}"
    )
    print(f"At the start: {load_average()}\n", flush=True)

    print(
        f"1. Autograding {args.submissions} copies of the complete submission (nbgrader autograde, one student per call):",
        flush=True,
    )
    seconds = bench_autograde(args.submissions)
    median = statistics.median(seconds)
    verdict = "meets" if median <= AUTOGRADE_GOAL_S else "MISSES"
    print(
        f"   per submission: {', '.join(f'{s:.1f}' for s in seconds)} s -> median {median:.1f} s, max {max(seconds):.1f} s "
        f"({verdict} the goal: median <= {AUTOGRADE_GOAL_S:.0f} s, kernel start included)\n",
        flush=True,
    )

    print(
        f"2. Training the master model with the student budget (batch size {student.batch_size}, "
        f"{student.steps_per_execution} step(s) per execution) on {args.train_images:,} images:",
        flush=True,
    )
    import keras

    namespace = master_namespace()
    train_rate, eval_rate = bench_training(namespace, args.train_images)
    full = student.epochs * (student.train_images / train_rate + student.val_images / eval_rate)
    print(
        f"   training {train_rate:,.0f} images/s, evaluation {eval_rate:,.0f} images/s (Keras {keras.__version__}, "
        f"{keras.backend.backend()} backend)"
    )
    print(
        f"   extrapolated student run ({student.epochs} epochs x {student.train_images:,} images, validating on "
        f"{student.val_images:,} each epoch): {full / 60:.1f} min\n",
        flush=True,
    )

    print(
        "3. The 15x15 manifold: batched build_manifold vs the original 225 decoder.predict calls:",
        flush=True,
    )
    batched, loop = bench_manifold(namespace)
    ratio = loop / batched
    verdict = "meets" if ratio >= MANIFOLD_GOAL else "MISSES"
    print(
        f"   batched {batched * 1000:.1f} ms (median of 5), per-point loop {loop:.2f} s -> {ratio:,.0f}x faster "
        f"({verdict} the goal: >= {MANIFOLD_GOAL:.0f}x)\n"
    )
    print(f"At the end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
