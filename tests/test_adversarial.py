"""Grading hardening: the adversarial corpus, the sandbox, and the notebook repairs.

The corpus is graded ONCE per session with the demo set by the ``graded_course`` fixture
(tests/conftest.py): these tests only read that run. Every case must get exactly its fair grade,
show its message in the feedback page, leave every other student's files and gradebook rows
intact and fail every attempt to escape. The fast tests at the end check the sandbox itself and
the notebook repairs without grading anything.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from vae_grader.paths import COURSE_ROOT, MASTER, RELEASE
from vae_grader.pipeline.cluster import grading_workers
from vae_grader.notes import notes_of
from vae_grader.preprocessors.restructure import repair
from vae_grader.preprocessors.scan import scan_source
from vae_grader.submissions import PARTS
from vae_grader.submissions import test_cells as cells_of_part
from vae_samples import adversarial
from vae_samples.kit import canonical, restored_cells

CASES = {s.student: s for s in adversarial.SUBMISSIONS}


def _feedback_text(path: Path | None) -> str:
    if path is None:
        return ""
    return html.unescape(re.sub(r"<[^>]+>", " ", path.read_text(errors="replace")))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rebuilt_bytes(submission, master, release, tmp: Path) -> bytes:
    """The exact bytes the pipeline wrote for ``submission`` (it writes with nbformat.write)."""
    content = submission.build(master, release)
    if isinstance(content, bytes):
        return content
    path = tmp / "rebuilt.ipynb"
    nbformat.write(content, path)
    return path.read_bytes()


# --- the corpus, graded once with the demo set ------------------------------------------------------------


def test_corpus_is_large_and_covers_the_issue():
    assert len(adversarial.SUBMISSIONS) >= 20
    students = [s.student for s in adversarial.SUBMISSIONS]
    assert len(set(students)) == len(students)
    for submission in adversarial.SUBMISSIONS:
        assert submission.expected_feedback, (
            f"{submission.student}: no message the student must see"
        )
        graded = {cell for part in PARTS for cell in cells_of_part(part)}
        assert set(submission.expected) | set(submission.lost) == graded, submission.student
    assert set(adversarial.FLAGGED) <= set(CASES) and set(adversarial.ESCAPES) <= set(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(CASES))
def test_each_case_gets_its_fair_grade_and_message(graded_course, student):
    submission = CASES[student]
    result = graded_course.run.results[student]
    assert result.error is None, f"{student}: nbgrader could not grade it: {result.error}"
    expected = {cell: submission.expected.get(cell, 0.0) for cell in graded_course.run.max_points}
    assert result.scores == expected, (
        f"{student} ({submission.description}): expected {sum(expected.values())}, got {result.total}; "
        + ", ".join(
            f"{c}: expected {expected[c]} got {result.scores[c]}"
            for c in expected
            if expected[c] != result.scores[c]
        )
    )
    text = _feedback_text(result.feedback)
    assert result.feedback is not None, f"{student}: no feedback page"
    for phrase in submission.expected_feedback:
        assert phrase in text, f"{student}: the feedback page does not say {phrase!r}"
    assert result.needs_manual_grade == (student in adversarial.FLAGGED), (
        f"{student}: needs_manual_grade is {result.needs_manual_grade}"
    )


@pytest.mark.slow
def test_corpus_table(graded_course, live_print):
    """The table the issue asks for (case, expected, got), printed and checked as a whole."""
    rows, wrong = [], []
    for submission in adversarial.SUBMISSIONS:
        result = graded_course.run.results[submission.student]
        expected = sum(submission.expected.values())
        rows.append(
            f"| {submission.student} | {expected:g} | {result.total:g} | {result.autograde_seconds:.0f} s |"
        )
        if result.total != expected:
            wrong.append(submission.student)
    seconds = sum(graded_course.run.results[s].autograde_seconds for s in CASES)
    live_print(
        "\n| case | expected | got | autograde |\n|---|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\ncorpus: {len(CASES)} cases, their autograde times add up to {seconds:.0f} s "
        f"(graded {grading_workers()} at a time with the demo set)"
    )
    assert not wrong, f"cases with the wrong total: {wrong}"


@pytest.mark.slow
def test_source_and_submissions_untouched(graded_course, tmp_path):
    """source/ and every student's submitted file are exactly what went in.

    The scratch course's source/ was copied from the repository with its modification times
    (shutil.copytree), before the scratch folder's own creation time was set: any write during
    grading would give a file a later one. Where the repository's file still has the copied
    time (nobody edited it while the tests ran), the contents must also be byte-identical; the same
    holds for the submissions, which are rebuilt from the master to compare.
    """
    root = graded_course.run.course_root
    copied_at = root.stat().st_ctime
    for path in sorted((COURSE_ROOT / "source").rglob("*")):
        if not path.is_file():
            continue
        copy = root / path.relative_to(COURSE_ROOT)
        assert copy.is_file(), f"{copy} disappeared during grading"
        assert copy.stat().st_mtime <= copied_at, f"{copy} was written during grading"
        if (
            copy.stat().st_mtime == path.stat().st_mtime
        ):  # same version as the repository's (not edited since)
            assert _sha256(copy) == _sha256(path), f"{copy} changed during grading"
    # The pipeline writes every submission, then its marker file, then starts grading.
    submitted_at = (root / "submitted" / ".pipeline-students.json").stat().st_mtime
    same_master = (root / "source" / "vae" / "vae.ipynb").stat().st_mtime == MASTER.stat().st_mtime
    master, release = nbformat.read(MASTER, as_version=4), nbformat.read(RELEASE, as_version=4)
    for submission in graded_course.submissions:
        path = root / "submitted" / submission.student / "vae" / submission.filename
        assert path.stat().st_mtime <= submitted_at, f"{path} was written during grading"
        if (
            same_master
        ):  # the submissions are rebuilt from the master: only comparable with the same one
            want = hashlib.sha256(_rebuilt_bytes(submission, master, release, tmp_path)).hexdigest()
            assert _sha256(path) == want, f"{path} changed during grading"
    graded = root / "autograded" / "complete" / "vae" / "vae.ipynb"
    assert len(nbformat.read(graded, as_version=4).cells) > 10, f"{graded} was overwritten"


@pytest.mark.slow
def test_gradebook_rows_of_other_students_intact(graded_course):
    """Every demo student's gradebook rows are exactly their expected points (checksummed), and the
    gradebook itself is sound: the corpus's attempts to write it changed nothing."""
    db = graded_course.run.course_root / "gradebook.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = connection.execute(
            "SELECT sa.student_id, cell.name, g.auto_score, g.manual_score, g.extra_credit, g.needs_manual_grade "
            "FROM grade AS g JOIN base_cell AS cell ON g.cell_id = cell.id "
            "JOIN submitted_notebook AS sn ON g.notebook_id = sn.id "
            "JOIN submitted_assignment AS sa ON sn.assignment_id = sa.id"
        ).fetchall()
    got: dict[str, list] = {}
    for student, cell, auto, manual, extra, manual_flag in rows:
        got.setdefault(student, []).append(
            [cell, float(auto or 0), manual, extra, int(manual_flag)]
        )

    def digest(student_rows: list) -> str:
        return hashlib.sha256(json.dumps(sorted(student_rows)).encode()).hexdigest()

    for submission in graded_course.demo:
        expected = [
            [cell, float(submission.expected.get(cell, 0.0)), None, None, 0]
            for cell in graded_course.run.max_points
        ]
        assert digest(got.get(submission.student, [])) == digest(expected), (
            f"{submission.student}'s gradebook rows differ from their expected points: {sorted(got.get(submission.student, []))}"
        )
    assert not any(row[1] == 99 for student_rows in got.values() for row in student_rows), (
        "a submission raised its scores"
    )


@pytest.mark.slow
def test_escape_attempts_all_failed(graded_course):
    """The cells that attack the machine printed one line per attempt, and every one was blocked."""
    root = graded_course.run.course_root
    for student in adversarial.ESCAPES:
        nb = nbformat.read(root / "autograded" / student / "vae" / "vae.ipynb", as_version=4)
        lines = [
            line
            for cell in nb.cells
            if cell.cell_type == "code"
            for output in cell.outputs
            for line in output.get("text", "").splitlines()
            if line.startswith("ESCAPE-")
        ]
        assert len(lines) >= 3, f"{student}: the attempts did not run ({lines})"
        succeeded = [line for line in lines if "SUCCEEDED" in line]
        assert not succeeded, f"{student} escaped the sandbox: {succeeded}"
    checks = COURSE_ROOT / "course" / "checks.py"
    assert checks.read_text().endswith("\n") and not checks.read_text().endswith("#"), (
        "course/checks.py was appended to"
    )


@pytest.mark.slow
def test_nothing_written_outside_allowed_places(graded_course):
    root = graded_course.run.course_root
    allowed = {
        "nbgrader_config.py",
        "source",
        "release",
        "submitted",
        "autograded",
        "feedback",
        "exports",
        "gradebook.db",
        "gradebook.db-journal",
        "__pycache__",
    }
    assert {p.name for p in root.iterdir()} <= allowed, sorted(p.name for p in root.iterdir())
    for student, submission in CASES.items():
        folder = root / "autograded" / student / "vae"
        # Plain files the student submitted beside the notebook are copied by nbgrader (never lent to the kernel
        # unless the release has them); links were refused at intake.
        brought = {
            name
            for name, content in getattr(submission, "files", {}).items()
            if isinstance(content, bytes)
        }
        allowed_here = {"vae.ipynb", "timestamp.txt", submission.filename} | brought
        assert {p.name for p in folder.iterdir()} <= allowed_here, (
            f"{folder}: {sorted(os.listdir(folder))}"
        )


# --- the sandbox itself (seconds, no grading) ---------------------------------------------------------------

_PROBE = textwrap.dedent("""
    import os, socket, resource, json
    def attempt(action):
        try:
            action()
            return "allowed"
        except Exception as exc:
            return type(exc).__name__
    result = {
        "read_source": attempt(lambda: open(PROBE_SOURCE).read()),
        "write_gradebook": attempt(lambda: open(PROBE_GRADEBOOK, "ab").write(b"x")),
        "read_gradebook": attempt(lambda: open(PROBE_GRADEBOOK, "rb").read(1)),
        "read_other_student": attempt(lambda: open(PROBE_OTHER).read()),
        "network": attempt(lambda: socket.create_connection(("1.1.1.1", 80), timeout=3)),
        "write_system": attempt(lambda: open("/usr/lib/sandbox-probe", "w")),
        "write_tmp": attempt(lambda: open("/tmp/probe", "w").write("x")),
        "write_cwd": attempt(lambda: open("scratch.txt", "w").write("x")),
        "own_file": attempt(lambda: open("data.txt").read()),
        "mnist": attempt(lambda: open(os.environ["MNIST_NPZ"], "rb").read(16)),
        "as_limit": resource.getrlimit(resource.RLIMIT_AS)[0],
        "nproc_limit": resource.getrlimit(resource.RLIMIT_NPROC)[0],
        "uid": os.getuid(),
        "secret": os.environ.get("NBGRADER_DB_URL", "unset"),
    }
    import logging
    messages = []
    catcher = logging.Handler()
    catcher.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("matplotlib").addHandler(catcher)
    logging.getLogger("matplotlib").setLevel(logging.DEBUG)
    import matplotlib.font_manager  # what Keras imports; it must find the lent font list
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    result["font_cache_used"] = any(m.startswith("Using fontManager instance from") for m in messages)
    import keras
    result["keras"] = keras.__version__
    print("PROBE" + json.dumps(result))
""")


def _run_probe(course: Path, workdir: Path) -> dict:
    """Start the sandboxed kernel the way autograde does and run the probe in it.

    The paths it tries go into the code: the kernel's environment is an allowlist (PROBE_* is not on it).
    """
    probe = (
        f"PROBE_SOURCE = {str(course / 'source' / 'vae' / 'vae.ipynb')!r}\n"
        f"PROBE_GRADEBOOK = {str(course / 'gradebook.db')!r}\n"
        f"PROBE_OTHER = {str(course / 'submitted' / 'other' / 'vae' / 'vae.ipynb')!r}\n" + _PROBE
    )
    script = textwrap.dedent(f"""
        import asyncio, json
        from traitlets.config import Config
        from vae_grader.sandbox.kernels import SandboxedKernelManager
        config = Config()
        config.CourseDirectory.root = {str(course)!r}
        config.CourseDirectory.db_url = "sqlite:///{course}/gradebook.db"
        async def main():
            km = SandboxedKernelManager(kernel_name="python3", config=config)
            await km.start_kernel(cwd={str(workdir)!r})
            kc = km.client()
            kc.start_channels()
            try:
                await kc.wait_for_ready(timeout=120)
                out = []
                await kc.execute_interactive({probe!r}, timeout=180,
                                             output_hook=lambda m: out.append(m["content"].get("text", "")))
                print("".join(out))
            finally:
                kc.stop_channels()
                await km.shutdown_kernel(now=True)
        asyncio.run(main())
    """)
    env = dict(os.environ, NBGRADER_DB_URL="postgresql://grader:secret@db/vae")
    env.pop("VAE_SANDBOX", None)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    line = [l for l in result.stdout.splitlines() if l.startswith("PROBE")]
    assert line, (
        f"the sandboxed kernel did not answer:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    )
    return json.loads(line[-1][len("PROBE") :])


@pytest.mark.sandbox
@pytest.mark.kernel
def test_sandboxed_kernel_is_confined(tmp_path):
    if not os.environ.get("MNIST_NPZ"):
        pytest.fail(
            "MNIST_NPZ is not set: the sandbox must show the offline MNIST copy (see conftest.py)"
        )
    course = tmp_path / "course"
    # data.txt is released with the assignment: only released files are lent to the kernel (confine.released_files).
    for relative in (
        "source/vae/vae.ipynb",
        "submitted/other/vae/vae.ipynb",
        "release/vae/data.txt",
    ):
        (course / relative).parent.mkdir(parents=True)
        (course / relative).write_text("{}")
    (course / "gradebook.db").write_bytes(b"SQLite format 3\x00")
    workdir = course / "autograded" / "me" / "vae"
    workdir.mkdir(parents=True)
    (workdir / "data.txt").write_text("the student's own file")
    before = {p: _sha256(p) for p in course.rglob("*") if p.is_file()}
    started = time.monotonic()
    result = _run_probe(course, workdir)
    seconds = time.monotonic() - started
    assert result["read_source"] == "FileNotFoundError"
    assert result["read_gradebook"] == "FileNotFoundError"
    assert result["write_gradebook"] != "allowed"
    assert result["read_other_student"] == "FileNotFoundError"
    assert result["network"] == "OSError"
    assert result["write_system"] != "allowed"
    assert result["write_tmp"] == "allowed" and result["write_cwd"] == "allowed"
    assert result["own_file"] == "allowed" and result["mnist"] == "allowed"
    assert result["as_limit"] == 8 * 2**30 and result["nproc_limit"] == 256
    assert result["uid"] != 0
    assert result["secret"] == "unset"
    assert result["keras"].startswith("3.")
    assert result["font_cache_used"], (
        "matplotlib rebuilt its font list in the sandbox (0.4 s per submission)"
    )
    assert {p: _sha256(p) for p in course.rglob("*") if p.is_file()} == before, (
        "the kernel changed the course folder"
    )
    assert not (workdir / "scratch.txt").exists(), (
        "the kernel's scratch files leaked into the real working folder"
    )
    assert seconds < 240, f"starting the sandboxed kernel and importing Keras took {seconds:.0f} s"


def test_autograde_refuses_without_bubblewrap(monkeypatch, capsys):
    from vae_grader.sandbox import bwrap, environment
    from vae_grader.sandbox import kernels as sandbox

    monkeypatch.delenv(environment.SANDBOX_ENV, raising=False)
    monkeypatch.setattr(bwrap.shutil, "which", lambda name: None)
    bwrap.bwrap_problem.cache_clear()
    try:
        with pytest.raises(SystemExit) as stopped:
            sandbox.refuse_unsandboxed_autograde(["nbgrader", "autograde", "vae"])
        assert stopped.value.code == 2
        message = capsys.readouterr().err
        assert message.count("\n") == 1 and "bubblewrap" in message and "VAE_SANDBOX=off" in message
        sandbox.refuse_unsandboxed_autograde(
            ["nbgrader", "generate_feedback", "vae"]
        )  # only autograde is refused
        monkeypatch.setenv(environment.SANDBOX_ENV, "off")
        sandbox.refuse_unsandboxed_autograde(["nbgrader", "autograde", "vae"])
    finally:
        bwrap.bwrap_problem.cache_clear()


def test_secrets_are_not_passed_to_the_kernel():
    from vae_grader.sandbox.environment import scrubbed_environment

    env = scrubbed_environment(
        {
            "PATH": "/bin",
            "NBGRADER_DB_URL": "postgresql://u:p@h/db",
            "GITHUB_TOKEN": "x",
            "MY_PASSWORD": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "VAE_MODE": "grading",
            "MNIST_NPZ": "/m",
        }
    )
    assert env == {"PATH": "/bin", "VAE_MODE": "grading", "MNIST_NPZ": "/m"}


# --- notebook repairs and the static scan (milliseconds, no kernel) ------------------------------------------


@pytest.mark.parametrize(
    "student",
    [
        "deleted_test_cells",
        "duplicated_cells",
        "retyped_cells",
        "reordered_cells",
        "tampered_metadata",
        "edited_test_cells",
        "empty_notebook",
        "wrong_filename",
    ],
)
def test_repair_restores_the_graded_structure(student):
    canon = canonical()
    master, release = nbformat.read(MASTER, as_version=4), nbformat.read(RELEASE, as_version=4)
    submission = CASES[student]
    nb = submission.build(master, release)
    repaired = repair(nb, canon)
    tagged = restored_cells(repaired, canon)
    if student in ("duplicated_cells", "retyped_cells", "tampered_metadata", "wrong_filename"):
        # every answer the student wrote is graded as the cell it answers
        for part in adversarial.FAST:
            graded = next(c for c in tagged if c.metadata["nbgrader"]["grade_id"] == part)
            assert "NotImplementedError" not in graded.source, f"{part} lost its answer"
    notes = " ".join(note["text"] for note in notes_of(repaired))
    if student != "wrong_filename":
        assert any(phrase in notes for phrase in submission.expected_feedback), notes


def test_static_scan_finds_tampering_and_process_control():
    findings = scan_source(
        textwrap.dedent("""
        import os, signal
        checks.expect = lambda *a: None
        np.testing.assert_allclose = print
        setattr(course.quality, "reconstruction_report", None)
        get_ipython().input_transformers_cleanup.append(lambda lines: [])
        os.kill(os.getppid(), signal.SIGKILL)
        x = 1  # harmless
        model.fit = None  # the student's own object: not a grading tool
    """),
        cell="encoder",
    )
    kinds = [(f.kind, f.what) for f in findings]
    assert ("tamper", "replaces checks.expect") in kinds
    assert ("tamper", "replaces np.testing.assert_allclose") in kinds
    assert ("tamper", "calls setattr on course.quality") in kinds
    assert ("tamper", "calls get_ipython()") in kinds
    assert ("process", "calls os.kill()") in kinds
    assert len(findings) == 5, kinds
    assert scan_source("def f(:\n    pass") == []  # a syntax error is the kernel's to report


# --- the executor on its own (a minute, no nbgrader, no TensorFlow) ------------------------------------------


@pytest.mark.sandbox
@pytest.mark.kernel
def test_executor_survives_crashes_timeouts_and_forks_and_never_runs_test_cells(tmp_path):
    """Each incident costs only its own cell (after every one, f() from before is back); test cells are judged, not run."""
    from nbformat.v4 import new_code_cell, new_notebook
    from traitlets.config import Config

    from vae_grader.notes import flags_of
    from vae_grader.preprocessors.execute import RobustExecute

    def cell(source, grade_id=None, grade=False):
        c = new_code_cell(source)
        if grade_id:
            c.metadata["nbgrader"] = {
                "grade_id": grade_id,
                "grade": grade,
                "locked": True,
                "solution": False,
                "schema_version": 3,
                **({"points": 2} if grade else {}),
            }
        return c

    check = "print('f() =', f())"
    nb = new_notebook(
        cells=[
            cell("import numpy as np", "setup"),
            cell("def f():\n    return 42"),
            cell("import os\nos._exit(3)"),
            cell(check),
            cell("while True:\n    pass"),
            cell(check),
            cell(
                "import time\nwhile True:\n    try:\n        time.sleep(0.2)\n    except KeyboardInterrupt:\n        pass"
            ),
            cell(check),
            cell(
                "import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n        time.sleep(3600)"
            ),
            cell(check),
            cell("print('x' * 3_000_000)"),
            # A test cell whose source would print and pass if it ran in the kernel: the judge probes instead.
            cell("print('Part 1 self-check passed.')", "test_encoder", grade=True),
            cell("print('no judge for me')", "test_unknown", grade=True),
            cell(check),
        ]
    )
    config = Config()
    config.CourseDirectory.root = str(tmp_path)
    # 5 CPU s a cell: the sleeping cell is stopped by the wall-clock backstop (10x) after 50 s.
    config.RobustExecute.timeout = 5
    config.RobustExecute.interrupt_grace = 3
    workdir = tmp_path / "autograded" / "someone" / "vae"
    workdir.mkdir(parents=True)
    started = time.monotonic()
    executor = RobustExecute(config=config)
    nb, _ = executor.preprocess(nb, {"metadata": {"path": str(workdir)}})
    seconds = time.monotonic() - started

    def outputs(index):
        return nb.cells[index + 1].outputs  # the notes cell is inserted at the top

    def errors(index):
        return [o.ename for o in outputs(index) if o.output_type == "error"]

    for index in (3, 5, 7, 9, 13):
        assert any("f() = 42" in o.get("text", "") for o in outputs(index)), (
            f"cell {index}: the state was not restored"
        )
    assert errors(2) == ["KernelDied"]
    assert errors(4) == ["CellTimeoutError"]
    assert errors(6) == ["CellTimeoutError"]
    assert errors(8) == ["StrayProcesses"]
    printed = outputs(10)
    assert sum(len(o.get("text", "")) for o in printed) < 2 * 2**20 + 1000
    assert "output truncated by the grader" in printed[0]["text"]
    judged = outputs(11)
    assert [o.output_type for o in judged] == [
        "error"
    ] and "build_encoder is not defined" in judged[0]["evalue"]
    assert errors(12) == ["NotGraded"] and "no check for the test cell" in outputs(12)[0]["evalue"]
    notes = nb.cells[0]
    assert notes.cell_type == "markdown" and "Notes from the autograder" in notes.source
    for phrase in ("KernelDied", "CellTimeoutError", "StrayProcesses"):
        assert phrase in notes.source, phrase
    assert executor.session.state.restarts == 3 and list(flags_of(nb)) == ["test_unknown"]
    assert seconds < 300, f"the executor test took {seconds:.0f} s"


@pytest.mark.sandbox
@pytest.mark.kernel
def test_exit_in_a_cell_costs_only_that_cell(tmp_path):
    """IPython's exit() and quit() stop the kernel just after it replies: each such cell gets
    KernelStopped, is left out of the replay, and the cells after it run with the state restored.
    (Before the ask_exit payload was read, a kernel that answered one more request before it
    stopped looked alive, the exit() cell was replayed, and every later cell was lost.)"""
    from nbformat.v4 import new_code_cell, new_notebook
    from traitlets.config import Config

    from vae_grader.preprocessors.execute import RobustExecute, asked_to_exit

    check = "print('f() =', f())"
    sources = ["def f():\n    return 42", "exit()", check, "quit()", check, "exit()", check]
    nb = new_notebook(cells=[new_code_cell(source) for source in sources])
    config = Config()
    config.CourseDirectory.root = str(tmp_path)
    config.RobustExecute.timeout = 20
    workdir = tmp_path / "autograded" / "someone" / "vae"
    workdir.mkdir(parents=True)
    executor = RobustExecute(config=config)
    nb, _ = executor.preprocess(nb, {"metadata": {"path": str(workdir)}})
    cells = nb.cells[1:]  # the notes cell is inserted at the top
    for index in (1, 3, 5):
        assert [o.ename for o in cells[index].outputs if o.output_type == "error"] == [
            "KernelStopped"
        ], cells[index].outputs
    for index in (2, 4, 6):
        assert any("f() = 42" in o.get("text", "") for o in cells[index].outputs), (
            f"cell {index}: the state was not restored: {cells[index].outputs}"
        )
    assert executor.session.state.restarts == 3 and executor.session.state.given_up is None
    keep = {"content": {"payload": [{"source": "ask_exit", "keepkernel": True}]}}
    assert not asked_to_exit(keep) and not asked_to_exit(None)
