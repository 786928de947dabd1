"""Where things live in the course directory, and how to call the environment's own tools."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

COURSE_ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT = "vae"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
MASTER = COURSE_ROOT / "source" / ASSIGNMENT / NOTEBOOK
RELEASE = COURSE_ROOT / "release" / ASSIGNMENT / NOTEBOOK
CHECKED_OUTPUT_TAG = "nbval-check-output"
TESTS = COURSE_ROOT / "tests"
SAMPLES = "vae_samples"


def tool_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for nbgrader subprocesses.

    nbgrader shells out to ``alembic`` to create the gradebook, so the virtual environment's
    bin/ folder must be on PATH even when nobody activated the environment.
    """
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if extra:
        env.update(extra)
    return env


def nbgrader_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nbgrader", *args]


def samples(module: str) -> ModuleType:
    """``vae_samples.<module>`` (``demo``, ``adversarial``, ``kit``): the sample submissions.

    They are test data, kept in the course's tests/ folder rather than in this package; the
    commands that grade them (``python -m vae_grader.apps.demo``, ``measure.benchmark``) load them
    here, which puts tests/ on ``sys.path`` once (at its end: nothing installed is shadowed).
    """
    if not (TESTS / SAMPLES / "__init__.py").is_file():
        raise ModuleNotFoundError(
            f"the sample submissions ({TESTS / SAMPLES}) are missing: they are test data, in the "
            "tests/ folder of a clone of the course repository, which this course directory lacks",
            name=SAMPLES,
        )
    if str(TESTS) not in sys.path:
        sys.path.append(str(TESTS))
    return importlib.import_module(f"{SAMPLES}.{module}")
