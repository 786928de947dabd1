"""Write the notebooks of tests/files/ again, after the master changed (tests/test_plugin_files.py says when).

    .venv/bin/python scripts/refresh_test_files.py                  # the submissions, built by the sample kit
    .venv/bin/python scripts/refresh_test_files.py AUTOGRADED.ipynb  # also the autograded notebook, copied from a
                                                                     # grading run: autograded/<student>/vae/vae.ipynb
                                                                     # of `python -m vae_grader.apps.demo --only STUDENT`

Cell ids are made stable (the cell's grade_id, or its position), so a refresh changes only what changed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "tests"))

from vae_samples.kit import load_master_and_release  # noqa: E402

FILES = ROOT / "tests" / "files"
SUBMISSIONS = ("reordered_cells", "edited_test_cells")
"""Corpus cases kept on disk for the sanitize plugins' tests."""
AUTOGRADED = "autograded.ipynb"


def stable(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{index}"
    return nb


def built(name: str) -> nbformat.NotebookNode:
    from vae_samples.adversarial import SUBMISSIONS as CASES

    case = next(s for s in CASES if s.student == name)
    return stable(case.build(*load_master_and_release()))


def main(argv: list[str]) -> int:
    FILES.mkdir(exist_ok=True)
    for name in SUBMISSIONS:
        nbformat.write(built(name), FILES / f"{name}.ipynb")
        print(f"wrote tests/files/{name}.ipynb")
    if argv:
        nb = nbformat.read(argv[0], as_version=4)
        nbformat.write(stable(nb), FILES / AUTOGRADED)
        print(f"wrote tests/files/{AUTOGRADED} from {argv[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
