"""What trains the course model to its quality fastest on this machine: a measured study.

    python -m measure.study throughput [--images 12288]
    python -m measure.study quality NAME [NAME ...]
    python -m measure.study side-by-side
    python -m measure.study backends [--images 4096] [--repeat 2]

``throughput`` times one epoch of the master model (after a warm-up) for each batch size,
``steps_per_execution``, input pipeline and thread setting in ``THROUGHPUT_GRID``. ``quality`` trains
the named configurations of ``CONFIGS`` to the end and reports wall time, images/s, val_loss on all
10,000 test images and the reconstruction error ratio of the hidden test (200 test images, own
input vs other inputs; 1.0 = chance). ``side-by-side`` trains the 2017 settings (the default before
this study) and the student default of ``course.budget.STUDENT`` one after the other in this one
command and prints the ratio of their wall times. ``backends`` times the grading and the student
batch size on every installed Keras backend, interleaved in one run (docs/backends.md). ``make
study`` runs ``throughput`` and ``side-by-side``.

Every configuration trains in a fresh Python process, so thread settings and graph caches of one
never help or hurt the next; the master notebook's own cells build the model, so the study measures
exactly what a student's notebook runs. Timings depend on what else runs on the machine: the load
average is printed beside each row, and only ratios taken in one run are compared. Not a test.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace

from course.budget import GRADING, STUDENT, TrainingBudget
from vae_grader.paths import tool_env

_RESULT = "STUDY-RESULT "


@dataclass(frozen=True)
class Config:
    """One way to train the course model."""

    name: str
    batch_size: int = 16
    steps_per_execution: int = 1
    learning_rate: float = 1e-3
    schedule: str = "constant"  # or "cosine": warm-up over warmup_epochs, then cosine decay to 0
    warmup_epochs: float = 0.0
    epochs: int = 10
    train_images: int = 60000
    pipeline: str = "numpy"  # or "tf.data": shuffled, batched, prefetched dataset
    threads: str = "default"  # or "intra,inter", e.g. "2,1"
    jit_compile: bool = False
    seed: int = 0
    backend: str = ""  # a Keras backend for this configuration's process; "" keeps KERAS_BACKEND

    def budget(self) -> TrainingBudget:
        """The course's own budget object for this configuration: the notebook builds the same schedule."""
        return TrainingBudget(
            mode="student",
            epochs=self.epochs,
            train_images=self.train_images,
            val_images=10000,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            seed=self.seed,
            schedule=self.schedule,
            warmup_epochs=self.warmup_epochs,
            steps_per_execution=self.steps_per_execution,
        )

    @classmethod
    def of(cls, name: str, budget: TrainingBudget) -> Config:
        return cls(
            name,
            batch_size=budget.batch_size,
            steps_per_execution=budget.steps_per_execution,
            learning_rate=budget.learning_rate,
            schedule=budget.schedule,
            warmup_epochs=budget.warmup_epochs,
            epochs=budget.epochs,
            train_images=budget.train_images,
            seed=budget.seed,
        )

    def describe(self, training: bool = True) -> str:
        """The settings that matter: the schedule and epochs only where quality is measured."""
        parts = [f"batch {self.batch_size}", f"steps/exec {self.steps_per_execution}"]
        if training:
            lr = f"Adam {self.learning_rate:g}"
            if self.schedule == "cosine":
                lr += f", warm-up {self.warmup_epochs:g} ep + cosine"
            parts += [lr, f"{self.epochs} epochs"]
        parts += [self.pipeline] if self.pipeline != "numpy" else []
        parts += [f"threads {self.threads}"] if self.threads != "default" else []
        parts += ["XLA"] if self.jit_compile else []
        parts = [self.backend, *parts] if self.backend else parts
        return ", ".join(parts)


ORIGINAL = Config("original")
"""The 2017 settings, the course's default before the study: 10 epochs, batch 16, Adam 1e-3."""
B32_COSINE = Config(
    "b32-cos-5ep",
    batch_size=32,
    steps_per_execution=16,
    learning_rate=2e-3,
    schedule="cosine",
    warmup_epochs=0.2,
    epochs=5,
)
"""Batch 32 with a warm-up and cosine decay: the family the student default (6 epochs, 4e-3) comes from."""
B16_COSINE = replace(B32_COSINE, name="b16-cos-5ep", batch_size=16, steps_per_execution=32)
"""Twice the updates of ``B32_COSINE`` on the same images, at the same peak rate."""
CONFIGS = {
    c.name: c
    for c in [
        ORIGINAL,
        B32_COSINE,
        replace(B32_COSINE, name="b32-cos-6ep", epochs=6),
        replace(B32_COSINE, name="b32-cos-5ep-lr4e-3", learning_rate=4e-3),
        replace(B32_COSINE, name="b32-cos-6ep-lr4e-3", learning_rate=4e-3, epochs=6),
        B16_COSINE,
        replace(B16_COSINE, name="b16-cos-5ep-lr1e-3", learning_rate=1e-3),
    ]
}
"""The configurations trained to the end (docs/measurements.md, "Speed of the student's run")."""

THROUGHPUT_GRID = [
    Config("b16", batch_size=16),
    Config("b64", batch_size=64),
    Config("b256", batch_size=256),
    Config("b16-spe32", batch_size=16, steps_per_execution=32),
    Config("b32-spe16", batch_size=32, steps_per_execution=16),
    Config("b64-spe8", batch_size=64, steps_per_execution=8),
    Config("b128-spe4", batch_size=128, steps_per_execution=4),
    Config("b64-spe8-xla", batch_size=64, steps_per_execution=8, jit_compile=True),
    Config("b64-spe8-tfdata", batch_size=64, steps_per_execution=8, pipeline="tf.data"),
    Config("b64-spe8-t2,1", batch_size=64, steps_per_execution=8, threads="2,1"),
    Config("b64-spe8-t2,2", batch_size=64, steps_per_execution=8, threads="2,2"),
]


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}"


# ---------------------------------------------------------------- inside the worker process
def _build(config: Config):
    """The master's model cells, then a fresh VAE compiled the way the configuration says."""
    from measure.benchmark import master_namespace

    ns = master_namespace()
    keras = ns["keras"]
    keras.utils.set_random_seed(config.seed)
    encoder = ns["build_encoder"]()
    decoder = ns["build_decoder"](ns["LATENT_DIM"], ns["shape_before_flattening"](encoder))
    budget = config.budget()
    vae = ns["build_vae"](
        encoder,
        decoder,
        seed=config.seed,
        learning_rate=budget.learning_rate_schedule(),
        steps_per_execution=budget.steps_per_execution,
    )
    if config.jit_compile:  # the one setting the notebook never passes: compile again with XLA
        vae.compile(
            optimizer=vae.optimizer,
            loss=None,
            steps_per_execution=config.steps_per_execution,
            jit_compile=True,
        )
    return vae, encoder, decoder


def _inputs(config: Config, x):
    if config.pipeline == "numpy":
        return {"x": x, "y": None, "batch_size": config.batch_size, "shuffle": True}
    import tensorflow as tf

    dataset = (
        tf.data.Dataset.from_tensor_slices(x)
        .shuffle(len(x), seed=config.seed)
        .batch(config.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    return {"x": dataset}


def _set_threads(config: Config) -> None:
    if config.threads == "default":
        return
    intra, inter = (int(n) for n in config.threads.split(","))
    import keras

    if keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(intra)
        torch.set_num_interop_threads(inter)
        return
    if keras.backend.backend() != "tensorflow":
        return  # JAX reads its thread setting from XLA_FLAGS when it starts (thread_env)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)


def thread_env(config: Config) -> dict[str, str]:
    """What a configuration's process needs in its environment before any backend loads: XLA:CPU
    (JAX) takes one thread only as a flag, OpenMP (PyTorch) reads its count when it starts."""
    if config.threads == "default":
        return {}
    intra = config.threads.split(",")[0]
    env = {"OMP_NUM_THREADS": intra}
    if config.backend == "jax" and intra == "1":
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    return env


def _mnist():
    from course import load_mnist

    (x_train, _), (x_test, _) = load_mnist()
    return (
        (x_train.astype("float32") / 255.0)[..., None],
        (x_test.astype("float32") / 255.0)[..., None],
    )


def worker_throughput(config: Config, images: int) -> dict:
    _set_threads(config)
    x_train, _ = _mnist()
    chunk = config.batch_size * config.steps_per_execution
    images = max(chunk, images // chunk * chunk)
    vae, _, _ = _build(config)
    vae.fit(**_inputs(config, x_train[: 2 * chunk]), epochs=1, verbose=0)  # tracing
    start = time.perf_counter()
    vae.fit(**_inputs(config, x_train[:images]), epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    return {"images": images, "seconds": seconds, "images_per_s": images / seconds}


def worker_quality(config: Config) -> dict:
    _set_threads(config)
    import keras

    from course.quality import reconstruction_report

    start = time.perf_counter()
    x_train, x_test = _mnist()
    x_train = x_train[: config.train_images]
    vae, encoder, decoder = _build(config)
    ready = time.perf_counter()
    history = vae.fit(
        **_inputs(config, x_train),
        epochs=config.epochs,
        validation_data=(x_test, None),
        verbose=2,
    )
    trained = time.perf_counter()
    q = x_test[:200]
    z_mean, _ = encoder(q)
    report = reconstruction_report(q, keras.ops.convert_to_numpy(decoder(z_mean)))
    return {
        "wall_s": trained - start,
        "fit_s": trained - ready,
        "images_per_s": config.epochs * len(x_train) / (trained - ready),
        "val_loss": float(history.history["val_loss"][-1]),
        "val_loss_curve": [round(v, 4) for v in history.history["val_loss"]],
        "ratio": report.ratio,
    }


# ---------------------------------------------------------------- the driver
def run_config(config: Config, task: str, images: int = 0) -> dict:
    """Run one configuration in a fresh interpreter; its result dict (with the load beside it)."""
    request = json.dumps({"task": task, "config": asdict(config), "images": images})
    env = tool_env({"VAE_MODE": "student", "PYTHONUNBUFFERED": "1"})
    if config.backend:
        env["KERAS_BACKEND"] = config.backend
    env.update(thread_env(config))
    proc = subprocess.Popen(
        [sys.executable, "-m", "measure.study", "_worker", request],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    result: dict = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(_RESULT):
            result = json.loads(line[len(_RESULT) :])
        elif task == "quality" and ("val_loss" in line or line.startswith("Epoch")):
            print(f"      {config.name}: {line.strip()}", flush=True)
    if proc.wait() != 0 or not result:
        raise SystemExit(f"configuration {config.name} failed (exit {proc.returncode})")
    result["load"] = load_average()
    return result


def throughput(images: int, names: list[str], repeat: int) -> None:
    grid = [c for c in THROUGHPUT_GRID if not names or c.name in names]
    print(
        f"Training throughput, one timed epoch of {images:,} images after a warm-up ({load_average()})"
    )
    print("| configuration | images/s | load |")
    print("|---|---:|---|")
    for config in grid * repeat:  # repeats interleave, so a busy minute hits every setting alike
        row = run_config(config, "throughput", images)
        print(
            f"| {config.describe(training=False)} | {row['images_per_s']:.0f} | {row['load']} |",
            flush=True,
        )


def installed_backends() -> list[str]:
    """The Keras backends this environment can run (``make backends`` adds JAX and PyTorch)."""
    from vae_grader.sandbox.environment import BACKENDS

    return [b for b in BACKENDS if importlib.util.find_spec(b) is not None]


def on_backend(config: Config, backend: str) -> Config:
    """``config`` on ``backend``; Keras's PyTorch backend runs one step per call (as the budget does there)."""
    steps = 1 if backend == "torch" else config.steps_per_execution
    return replace(config, backend=backend, steps_per_execution=steps)


def backends_throughput(images: int, repeat: int, budgets: list[str], threads: list[str]) -> None:
    """The grading and the student batch size on every installed backend, interleaved in one run;
    ``threads`` also times each with one thread ("1,1"): how much the backend suffers when the
    cores are shared."""
    backends = installed_backends()
    known = {"grading": GRADING, "student": STUDENT}
    grid = [replace(Config.of(name, known[name]), threads=t) for name in budgets for t in threads]
    print(
        f"Training throughput per backend ({', '.join(backends)}), one timed epoch of {images:,} "
        f"images after a warm-up ({load_average()})"
    )
    print("| budget | backend | settings | images/s | load |")
    print("|---|---|---|---:|---|")
    for _ in range(repeat):
        for config in grid:
            for backend in backends:
                run = on_backend(config, backend)
                row = run_config(run, "throughput", images)
                print(
                    f"| {config.name} | {backend} | {run.describe(training=False)} | "
                    f"{row['images_per_s']:.0f} | {row['load']} |",
                    flush=True,
                )


def quality(configs: list[Config]) -> list[dict]:
    rows = []
    print("| configuration | images/s | wall time | val_loss (10k test) | error ratio | load |")
    print("|---|---:|---:|---:|---:|---|")
    for config in configs:
        row = run_config(config, "quality")
        rows.append(row)
        print(
            f"| {config.name}: {config.describe()} | {row['images_per_s']:.0f} | "
            f"{row['wall_s'] / 60:.1f} min | {row['val_loss']:.4f} | {row['ratio']:.3f} | {row['load']} |",
            flush=True,
        )
        print(f"      val_loss by epoch: {row['val_loss_curve']}", flush=True)
    for config, row in list(zip(configs, rows))[1:]:  # ratios only mean something within one run
        print(
            f"{config.name} / {configs[0].name}: wall time {row['wall_s'] / rows[0]['wall_s']:.2f}, "
            f"val_loss {row['val_loss']:.4f} vs {rows[0]['val_loss']:.4f}",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    tp = sub.add_parser("throughput", help="images/s for each setting of THROUGHPUT_GRID")
    tp.add_argument("--images", type=int, default=12288, help="images per timed epoch")
    tp.add_argument("--repeat", type=int, default=1, help="rounds over the grid (interleaved)")
    tp.add_argument("names", nargs="*", help="settings of THROUGHPUT_GRID to time (default: all)")
    qp = sub.add_parser(
        "quality",
        help="train named configurations to the end, one after the other (ratios to the first)",
    )
    qp.add_argument("names", nargs="+", choices=sorted(CONFIGS))
    qp.add_argument("--train-images", type=int, default=0, help="fewer images, for a dry run")
    qp.add_argument("--epochs", type=int, default=0, help="fewer epochs, for a dry run")
    sub.add_parser("side-by-side", help="the 2017 settings and the student default, in one run")
    bp = sub.add_parser(
        "backends", help="the grading and the student batch size on every installed backend"
    )
    bp.add_argument("--images", type=int, default=4096, help="images per timed epoch")
    bp.add_argument("--repeat", type=int, default=2, help="rounds (interleaved)")
    bp.add_argument("--budgets", default="grading,student", help="grading, student or both")
    bp.add_argument("--threads", default="default,1,1", help="'default', '1,1' or both")
    wp = sub.add_parser("_worker")
    wp.add_argument("request")
    args = parser.parse_args(argv)

    if args.command == "_worker":
        request = json.loads(args.request)
        config = Config(**request["config"])
        if request["task"] == "throughput":
            result = worker_throughput(config, request["images"])
        else:
            result = worker_quality(config)
        print(_RESULT + json.dumps(result), flush=True)
        return 0
    if args.command == "throughput":
        unknown = set(args.names) - {c.name for c in THROUGHPUT_GRID}
        if unknown:
            parser.error(f"unknown settings {sorted(unknown)}: see THROUGHPUT_GRID")
        throughput(args.images, args.names, args.repeat)
    elif args.command == "backends":
        threads = ["default", "1,1"] if args.threads == "default,1,1" else [args.threads]
        backends_throughput(args.images, args.repeat, args.budgets.split(","), threads)
    elif args.command == "quality":
        configs = [CONFIGS[name] for name in args.names]
        if args.train_images or args.epochs:
            configs = [
                replace(
                    c,
                    train_images=args.train_images or c.train_images,
                    epochs=args.epochs or c.epochs,
                )
                for c in configs
            ]
        quality(configs)
    else:
        start = time.time()
        quality([ORIGINAL, Config.of("new default", STUDENT)])  # prints the ratio to the original
        print(f"({(time.time() - start) / 60:.0f} min for both)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
