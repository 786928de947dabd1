"""Where things live in the course directory, and how to call the environment's own tools."""

from __future__ import annotations

import os
import sys
from pathlib import Path

COURSE_ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT = "vae"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
MASTER = COURSE_ROOT / "source" / ASSIGNMENT / NOTEBOOK
RELEASE = COURSE_ROOT / "release" / ASSIGNMENT / NOTEBOOK
CHECKED_OUTPUT_TAG = "nbval-check-output"


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
