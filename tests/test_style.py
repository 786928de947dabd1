"""Style is checked, not hoped for: ruff's linter and formatter over the packages and tests (settings in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = [
    "course",
    "grader",
    "measure",
    "tests",
    "conftest.py",
    "nbgrader_config.py",
    "student_config",
]
MASTER = "source/vae/vae.ipynb"
RELEASE = "release/vae/vae.ipynb"


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True
    )


def test_ruff_finds_no_lint_errors() -> None:
    """The packages, the tests and the master notebook's code cells (the release's stubs leave
    `history` and friends for the student to define, so the linter would only report that)."""
    result = _ruff("check", "--no-fix", "--output-format", "concise", *CODE, MASTER)
    assert result.returncode == 0, (
        f"ruff check found problems (fix with `ruff check --fix`):\n{result.stdout[-3000:]}"
    )


def test_code_and_notebooks_are_formatted() -> None:
    """The sample submissions substitute exact lines of the master's solutions, so a reformat of the
    master shows up there too: `tests/vae_samples/kit.replace_once` raises on a line that moved."""
    result = _ruff("format", "--check", *CODE, MASTER, RELEASE)
    assert result.returncode == 0, f"run `ruff format`:\n{result.stdout[-3000:]}"
