"""Style is checked, not hoped for: ruff's linter and formatter over the packages and tests (settings in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["course", "grader", "tests", "conftest.py", "nbgrader_config.py", "student_config"]


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, *PATHS], cwd=ROOT, capture_output=True, text=True
    )


def test_ruff_finds_no_lint_errors() -> None:
    result = _ruff("check", "--no-fix", "--output-format", "concise")
    assert result.returncode == 0, (
        f"ruff check found problems (fix with `ruff check --fix`):\n{result.stdout[-3000:]}"
    )


def test_code_is_formatted() -> None:
    result = _ruff("format", "--check")
    assert result.returncode == 0, f"run `ruff format`:\n{result.stdout[-3000:]}"


def test_master_notebook_passes_the_linter() -> None:
    """The master's code cells get the same lint rules (not the formatter: the sample submissions
    substitute exact lines of it, so reformatting it is a change of its own)."""
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-fix", "--output-format", "concise"]
        + ["source/vae/vae.ipynb"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"ruff check on the master notebook:\n{result.stdout[-3000:]}"
