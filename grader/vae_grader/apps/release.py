"""Build the student notebook from the master, and keep committed notebooks clean.

``python -m vae_grader.apps.release`` regenerates ``release/vae/vae.ipynb`` with nbgrader's own
``generate_assignment`` in a scratch copy of the course (so the real gradebook is untouched) and
copies the result into place. ``--refresh-outputs`` first re-executes the master in grading mode
and keeps only the outputs that nbval compares (cells tagged ``nbval-check-output``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from vae_grader.paths import (
    ASSIGNMENT,
    CHECKED_OUTPUT_TAG,
    COURSE_ROOT,
    MASTER,
    NOTEBOOK,
    RELEASE,
    nbgrader_command,
    tool_env,
)

_KEPT_CELL_METADATA = ("nbgrader", "tags", "deletable", "editable")


def clean_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip what makes diffs noisy: execution counts, timings, outputs nbval does not check."""
    nb.metadata = nbformat.from_dict(
        {
            "kernelspec": {
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
                "name": "python3",
            },
            "language_info": {"name": "python"},
        }
    )
    code_index = 0
    for cell in nb.cells:
        cell.metadata = nbformat.from_dict(
            {k: cell.metadata[k] for k in _KEPT_CELL_METADATA if k in cell.metadata}
        )
        if cell.cell_type != "code":
            continue
        code_index += 1
        if _is_checked(cell) and cell.outputs:
            # nbval refuses a reference cell with outputs but no execution count ("Unrun reference
            # cell"), so checked cells keep one: their position, which only moves when cells do.
            cell.execution_count = code_index
            for output in cell.outputs:
                if "execution_count" in output:
                    output.execution_count = code_index
        else:
            cell.execution_count = None
            cell.outputs = []
    return nb


def _is_checked(cell: nbformat.NotebookNode) -> bool:
    return CHECKED_OUTPUT_TAG in cell.metadata.get("tags", [])


def is_clean(path: Path) -> list[str]:
    """Reasons the committed notebook at ``path`` is not clean (empty list: clean)."""
    nb = nbformat.read(path, as_version=4)
    reasons = []
    expected = clean_notebook(nbformat.read(path, as_version=4))
    for index, (cell, clean) in enumerate(zip(nb.cells, expected.cells)):
        if cell.cell_type != "code":
            continue
        if cell.execution_count != clean.execution_count:
            reasons.append(
                f"cell {index} has execution_count {cell.execution_count}, expected {clean.execution_count}"
            )
        if cell.outputs and not _is_checked(cell):
            reasons.append(f"cell {index} has outputs but nbval does not check them")
        extra = set(cell.metadata) - set(_KEPT_CELL_METADATA)
        if extra:
            reasons.append(f"cell {index} has volatile metadata {sorted(extra)}")
    if nb.metadata != expected.metadata:
        reasons.append(
            f"notebook metadata {dict(nb.metadata)} is not the standard kernelspec/language_info"
        )
    text = path.read_text()
    for marker in ("/root/", "/home/", "/tmp/", "/Users/"):
        if marker in text:
            reasons.append(f"the notebook mentions a machine path ({marker}...)")
    return reasons


def generate_release(destination: Path = RELEASE, master: Path = MASTER) -> Path:
    """Run ``nbgrader generate_assignment`` in a scratch course directory; copy the result out."""
    with tempfile.TemporaryDirectory(prefix="vae-release-") as scratch:
        root = Path(scratch)
        shutil.copy(COURSE_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
        (root / "source" / ASSIGNMENT).mkdir(parents=True)
        shutil.copy(master, root / "source" / ASSIGNMENT / NOTEBOOK)
        result = subprocess.run(
            nbgrader_command("generate_assignment", ASSIGNMENT, "--force"),
            cwd=root,
            env=tool_env(),
            capture_output=True,
            text=True,
        )
        produced = root / "release" / ASSIGNMENT / NOTEBOOK
        if result.returncode != 0 or not produced.is_file():
            raise RuntimeError(
                f"nbgrader generate_assignment failed:\n{result.stdout}\n{result.stderr}"
            )
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(produced, destination)
    return destination


def refresh_master_outputs(master: Path = MASTER) -> None:
    """Execute the master in grading mode and keep only the outputs nbval compares."""
    from nbclient import NotebookClient

    nb = nbformat.read(master, as_version=4)
    # The kernel's environment goes to jupyter_client's start_kernel(env=...) through nbclient's
    # execute(**kwargs): this process's os.environ is never changed.
    NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(master.parent)}},
    ).execute(env=tool_env({"VAE_MODE": "grading"}))
    nbformat.write(clean_notebook(nb), master)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--refresh-outputs",
        action="store_true",
        help="re-execute the master (grading mode) and store its checked outputs first",
    )
    args = parser.parse_args(argv)
    if args.refresh_outputs:
        print(
            "Executing the master notebook in grading mode to refresh its checked outputs ...",
            flush=True,
        )
        refresh_master_outputs()
    else:
        nbformat.write(clean_notebook(nbformat.read(MASTER, as_version=4)), MASTER)
    path = generate_release()
    print(f"Wrote {path.relative_to(COURSE_ROOT)} from {MASTER.relative_to(COURSE_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
