"""A course configuration that fails to load must stop grading, not fall back to nbgrader's defaults.

nbgrader logs an error when nbgrader_config.py raises and carries on with its defaults: a plain
kernel, test cells run inside it. The students' configuration (student_config/, linked into the
environment by the set-up and loaded first) puts a placeholder in the autograde chain that the
course's own file replaces; while it is still there, nothing is graded.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import nbformat
import pytest

from vae_grader.paths import nbgrader_command, tool_env
from vae_grader.pipeline.grade_class import copy_course
from vae_samples.kit import load_master_and_release


@pytest.mark.slow
def test_autograde_refuses_when_the_course_configuration_breaks(tmp_path: Path) -> None:
    root = copy_course(tmp_path / "course")
    env = tool_env({"NBGRADER_DB_URL": f"sqlite:///{root / 'gradebook.db'}"})
    run = subprocess.run(
        nbgrader_command("generate_assignment", "vae", "--force"),
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    _, release = load_master_and_release()
    marker = root / "student-code-ran"
    release.cells.insert(3, nbformat.v4.new_code_cell(f"open({str(marker)!r}, 'w').write('x')"))
    folder = root / "submitted" / "mallory" / "vae"
    folder.mkdir(parents=True)
    nbformat.write(release, folder / "vae.ipynb")
    config = root / "nbgrader_config.py"
    config.write_text(
        config.read_text() + "\nraise RuntimeError('a typo in the course configuration')\n"
    )

    graded = subprocess.run(
        nbgrader_command("autograde", "vae", "--force", "--student", "mallory"),
        cwd=root,
        env={**env, "VAE_SANDBOX": "off"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = graded.stdout + graded.stderr
    assert "a typo in the course configuration" in log  # the course's file really failed to load
    assert "did not load" in log and "nothing was graded" in log, log[-3000:]
    assert graded.returncode != 0
    assert not marker.exists(), "student code ran with nbgrader's defaults"
