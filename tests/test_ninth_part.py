"""A part is the notebook plus one module on each side: a toy ninth part, added to a copy of the course and graded end to end.

The copy holds the student package, the grader package, the master, the configuration and the sample kit.
Part 9 is added there exactly as a course author would add it: cells in the master (and a row in its points
table), ``course/selfcheck/part9_brightest.py`` (probe and visible verdict) and
``vae_grader/judge/hidden/brightest.py`` (hidden probe and verdict). Nothing else is edited: every list
of parts (the self-check calls, the judge's tables, the grade table's columns, the sample kit) derives
from those two modules. Then, with the copy first on the path, the release is generated from the master
and two students who fill in only part 9 are graded by the class pipeline (nbgrader autograde in the
sandbox): the right answer earns part 9's 3 points, a wrong one loses them with the verdict's reason.
The copy is removed with the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from vae_grader.paths import COURSE_ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.nbgrader,
    pytest.mark.kernel,
    pytest.mark.sandbox,
    pytest.mark.judge,
]

STUDENT_SIDE = '''\
"""Part 9's self-check: brightest(images) returns the index of the image with the largest mean pixel."""

from __future__ import annotations

from typing import Any

import numpy as np

from course import probing
from course.checks import Check, expect, expect_ran
from course.selfcheck.probe import Probe


def probe_brightest(brightest: Any) -> dict[str, Any]:
    rec = probing.Recorder()
    images = np.stack([np.full((28, 28, 1), v, "float32") for v in (0.2, 0.9, 0.5)])
    found = rec.attempt("brightest(images)", lambda: int(brightest(images)))
    if found is not None:
        rec["index.json"] = found
    return rec.data


def verdict_brightest(data: dict[str, Any]) -> list[Check]:
    def check() -> None:
        expect_ran(data, "brightest(images)")
        got = data.get("index.json")
        expect(got == 1, f"brightest(images) returned {got!r}; the second of three images is the brightest")

    return [(1, "the index of the brightest image", check)]


CHECK = Probe(9, ("brightest",), probe_brightest, verdict_brightest)
'''

GRADER_SIDE = '''\
"""Verdict of part 9: the brightest of images drawn afresh for every probe."""

from __future__ import annotations

from typing import Any

import numpy as np

from course.checks import Check, expect, expect_ran
from vae_grader.judge.hidden.inputs import SALT, probing
from vae_grader.judge.hidden.part import HiddenPart


def probe_brightest_hidden(brightest: Any) -> dict[str, Any]:
    rec = probing.Recorder()
    images = np.random.default_rng([SALT, 9]).uniform(0, 1, (6, 28, 28, 1)).astype("float32")
    found = rec.attempt("brightest(images)", lambda: int(brightest(images)))
    if found is not None:
        rec["index.json"] = found
    return rec.data


def verdict_brightest_hidden(data: dict[str, Any], salt: int = 0) -> list[Check]:
    images = np.random.default_rng([salt, 9]).uniform(0, 1, (6, 28, 28, 1)).astype("float32")
    right = int(images.mean(axis=(1, 2, 3)).argmax())

    def check() -> None:
        expect_ran(data, "brightest(images)")
        got = data.get("index.json")
        expect(got == right, f"brightest(images) returned {got!r} for six random images; expected {right}")

    return [(2, "the brightest of six random images", check)]


PARTS = (
    HiddenPart(9, ("brightest",), probe_brightest_hidden, verdict_brightest_hidden, salted=True),
)
'''

SOLUTION = """\
def brightest(images):
    \"\"\"The index of the image with the largest mean pixel.\"\"\"
    ### BEGIN SOLUTION
    return int(np.argmax(images.mean(axis=(1, 2, 3))))
    ### END SOLUTION"""

GRADE = """\
import json, sys
import nbformat
from vae_grader.apps.release import generate_release
from vae_grader.paths import COURSE_ROOT, MASTER, RELEASE, samples
from vae_grader.pipeline.grade_class import run_pipeline
from vae_grader.pipeline.report import grade_table
from vae_grader.submissions import PARTS, Submission

kit = samples("kit")
generate_release()
master = nbformat.read(MASTER, as_version=4)
part9 = kit.full_points(master, parts=("brightest",))
students = [
    Submission("right", "part 9 only", kit.filled(["brightest"]), part9),
    Submission("wrong", "part 9 with argmin", kit.filled(["brightest"], {"brightest": ("argmax", "argmin")}), {}),
]
run = run_pipeline(COURSE_ROOT, students, progress=lambda m: print(m, flush=True))
print(grade_table(run, students), flush=True)
json.dump({
    "parts": list(PARTS),
    "release": RELEASE.read_text(),
    "scores": {s: dict(r.scores) for s, r in run.results.items()},
    "feedback": {s: r.feedback.read_text() if r.feedback else "" for s, r in run.results.items()},
}, open(sys.argv[1], "w"))
"""


def _add_part_nine(master: Path) -> None:
    """The notebook's share of a new part: prose, the answer cell, its two test cells, a row of the points table."""
    nb = nbformat.read(master, as_version=4)
    intro = nb.cells[0]
    intro.source = intro.source.replace(
        "| | **total** | | | **40** |",
        "| 9 | the brightest image (`brightest`) | 1 | 2 | 3 |\n| | **total** | | | **43** |",
    )
    after = next(
        i
        for i, c in enumerate(nb.cells)
        if c.metadata.get("nbgrader", {}).get("grade_id") == "test_manifold_hidden"
    )

    def graded(grade_id: str, source: str, points: int | None) -> nbformat.NotebookNode:
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["nbgrader"] = {
            "grade": points is not None,
            "grade_id": grade_id,
            "locked": points is not None,
            "schema_version": 3,
            "solution": points is None,
            **({"points": points} if points is not None else {}),
        }
        return cell

    nb.cells[after + 1 : after + 1] = [
        nbformat.v4.new_markdown_cell(
            "## Part 9 — The brightest digit\n\nReturn the index of the image whose mean pixel is largest."
        ),
        graded("brightest", SOLUTION, None),
        graded(
            "test_brightest",
            "# Self-check for part 9: the brightest of three images\nselfcheck.brightest(brightest)",
            1,
        ),
        graded(
            "test_brightest_hidden",
            "# Hidden tests for part 9\n### BEGIN HIDDEN TESTS\nfrom vae_grader.judge.hidden import check_here\n\n"
            'check_here("test_brightest_hidden", globals())\n### END HIDDEN TESTS',
            2,
        ),
    ]
    nbformat.write(nb, master)


def _course_copy(root: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in ("course", "grader/vae_grader", "source", "tests/vae_samples"):
        shutil.copytree(COURSE_ROOT / folder, root / folder, ignore=ignore)
    shutil.copy(COURSE_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    return root


def test_a_ninth_part_is_the_notebook_plus_one_module_on_each_side(tmp_path: Path) -> None:
    root = _course_copy(tmp_path / "course")
    _add_part_nine(root / "source" / "vae" / "vae.ipynb")
    (root / "course" / "selfcheck" / "part9_brightest.py").write_text(STUDENT_SIDE)
    (root / "grader" / "vae_grader" / "judge" / "hidden" / "brightest.py").write_text(GRADER_SIDE)

    out = tmp_path / "graded.json"
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if k not in ("NBGRADER_DB_URL", "VAE_DASK_SCHEDULER")
        },
        "PYTHONPATH": os.pathsep.join([str(root / "grader"), str(root)]),
    }  # the copy's own SQLite gradebook, on an embedded cluster
    result = subprocess.run(
        [sys.executable, "-c", GRADE, str(out)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    graded = json.loads(out.read_text())

    assert graded["parts"][-1] == "brightest", graded["parts"]
    assert "argmax" not in graded["release"], "part 9's solution reached the release"
    assert "check_here" not in graded["release"], "part 9's hidden test reached the release"
    right, wrong = graded["scores"]["right"], graded["scores"]["wrong"]
    assert (right["test_brightest"], right["test_brightest_hidden"]) == (1.0, 2.0), right
    assert (wrong["test_brightest"], wrong["test_brightest_hidden"]) == (0.0, 0.0), wrong
    # Parts 1-8 were left as released: nothing there earns a point for either student.
    assert sum(right.values()) == 3.0 and sum(wrong.values()) == 0.0, (right, wrong)
    assert "the second of three images is the brightest" in graded["feedback"]["wrong"]
    assert "for six random images" in graded["feedback"]["wrong"]
