"""The grading pipeline: exact scores, feedback pages, no hidden test in any page.

The slow tests share one grading run of every sample submission (``graded_course`` in
tests/conftest.py). The fast ones check the demo set, the manifest and the feedback filter alone.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import html
import os
import re
from pathlib import Path

import nbformat
import pytest

from vae_grader.apps import demo
from vae_grader.preprocessors.feedback import (
    NOT_ATTEMPTED,
    StudentFeedback,
    strip_ansi,
    student_message,
)
from vae_grader.paths import ASSIGNMENT, COURSE_ROOT, MASTER, NOTEBOOK, RELEASE
from vae_grader.pipeline.grade_class import run_pipeline
from vae_grader.cells import require_cell
from vae_grader.submissions import PARTS, points_by_cell
from vae_grader.submissions import test_cells as cells_of_part
from vae_samples.demo import SUBMISSIONS
from vae_samples.kit import load_master_and_release

MANIFEST_FILE = COURSE_ROOT / "tests" / "vae_samples" / "demo_manifest.md"
DEMO_IDS = [s.student for s in SUBMISSIONS]
BUDGET_OVERRIDES = (
    "VAE_EPOCHS",
    "VAE_TRAIN_IMAGES",
    "VAE_VAL_IMAGES",
    "VAE_BATCH_SIZE",
    "VAE_LEARNING_RATE",
    "VAE_SEED",
)


def hidden_test_lines(master: nbformat.NotebookNode, release: nbformat.NotebookNode) -> list[str]:
    """Every line a student must never see: stripped, non-blank lines between the hidden-test markers
    in the master, at least 8 characters, not a marker or a comment, and not also in the release
    (a hidden test may repeat a visible line, e.g. ``enc = checks.expect_raises_nothing(...)``)."""
    visible = {line.strip() for cell in release.cells for line in cell.source.splitlines()}
    lines = []
    for cell in master.cells:
        inside = False
        for line in cell.source.splitlines():
            text = line.strip()
            if text == "### BEGIN HIDDEN TESTS":
                inside = True
            elif text == "### END HIDDEN TESTS":
                inside = False
            elif inside and len(text) >= 8 and not text.startswith("#") and text not in visible:
                lines.append(text)
    return lines


def page_text(path: Path) -> str:
    """What a reader of the HTML page sees: tags removed (syntax highlighting splits every line into
    spans), entities decoded, whitespace runs collapsed inside lines."""
    text = html.unescape(re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8")))
    return "\n".join(re.sub(r"[ \t]+", " ", line) for line in text.splitlines())


def leaks(text: str, secrets: list[str]) -> list[str]:
    return [line for line in secrets if re.sub(r"[ \t]+", " ", line) in text]


def _overrides_note() -> str:
    set_vars = [f"{v}={os.environ[v]}" for v in BUDGET_OVERRIDES if os.environ.get(v)]
    return (
        f" (note: {', '.join(set_vars)} is set; the manifest holds for the real grading budget)"
        if set_vars
        else ""
    )


# --- fast: the demo set, the manifest, the feedback filter -----------------------------------------


def test_demo_set_covers_the_required_mistakes():
    required = {
        "complete",
        "untouched",
        "half_done",
        "sampler_exp_logvar",
        "kl_sign_flipped",
        "decoder_no_sigmoid",
        "encoder_stride1",
        "data_unscaled",
        "manifold_linspace",
        "manifold_swapped",
        "loss_returns_reconstruction",
    }
    assert required <= set(DEMO_IDS), f"missing demo students: {sorted(required - set(DEMO_IDS))}"
    assert len(DEMO_IDS) == len(set(DEMO_IDS)), "student ids must be unique"


@pytest.mark.parametrize("student", DEMO_IDS)
def test_demo_submission_follows_the_master(student):
    """Each sample is the release with master solutions, and differs from the complete one only in
    the solution cells its description is about (a mistake's text must still match the master)."""
    master, release = load_master_and_release()
    submission = next(s for s in SUBMISSIONS if s.student == student)
    complete = next(s for s in SUBMISSIONS if s.student == "complete").build(master, release)
    built = submission.build(copy.deepcopy(master), copy.deepcopy(release))
    assert [c.metadata.get("nbgrader", {}).get("grade_id") for c in built.cells] == [
        c.metadata.get("nbgrader", {}).get("grade_id") for c in release.cells
    ]
    changed = {
        c.metadata["nbgrader"]["grade_id"]
        for c, d in zip(built.cells, complete.cells)
        if c.source != d.source
    }
    assert changed <= set(PARTS), (
        f"{student} changes cells other than solution cells: {sorted(changed - set(PARTS))}"
    )
    all_cells = set(points_by_cell(master))
    assert set(submission.expected) | set(submission.lost) == all_cells, (
        "every graded cell is either expected or lost"
    )
    assert not set(submission.expected) & set(submission.lost), (
        "a cell cannot be both expected and lost"
    )
    assert all(reason.strip() for reason in submission.lost.values()), (
        "every lost cell needs a reason"
    )
    if student == "complete":
        assert not changed and not submission.lost
    elif student == "untouched":
        assert changed == set(
            PARTS
        )  # nothing filled: every solution cell is still the release stub
    else:
        assert changed, f"{student} is identical to the complete submission"


def test_manifest_file_is_in_sync():
    expected = demo.manifest() + "\n"
    assert MANIFEST_FILE.is_file() and MANIFEST_FILE.read_text() == expected, (
        "tests/vae_samples/demo_manifest.md is out of date: run "
        "`python -m vae_grader.apps.demo --manifest > tests/vae_samples/demo_manifest.md`"
    )


def test_student_messages_are_plain():
    assert student_message("NotImplementedError", "") == NOT_ATTEMPTED
    name_error = student_message("NameError", "name 'encoder' is not defined")
    assert "name 'encoder' is not defined" in name_error and "a cell above failed" in name_error
    assert (
        student_message("AssertionError", "z_mean has shape (None, 3)")
        == "Test failed: z_mean has shape (None, 3)"
    )
    assert student_message("ValueError", "\x1b[31mbad\x1b[0m") == "ValueError: bad"
    assert (
        student_message("CellTimeoutError", "this cell ran longer than 60 s")
        == "stopped: this cell ran longer than 60 s"
    )


def test_feedback_filter_removes_hidden_source_and_tracebacks():
    secret = 'checks.expect_layers("the encoder", enc, secret_layout)'
    cell = nbformat.v4.new_code_cell(
        source=f"# visible comment\n### BEGIN HIDDEN TESTS\n{secret}\n### END HIDDEN TESTS",
        metadata={
            "nbgrader": {
                "grade": True,
                "solution": False,
                "locked": True,
                "grade_id": "t",
                "points": 1,
            }
        },
        outputs=[
            nbformat.v4.new_output(
                "stream", name="stderr", text=f"<ipython>:2: UserWarning\n  {secret}\n"
            ),
            nbformat.v4.new_output(
                "error",
                ename="AssertionError",
                evalue="the encoder: layer 2 has strides (1, 1)",
                traceback=[
                    "\x1b[31mAssertionError\x1b[0m Traceback",
                    f"----> 2 {secret}",
                    "AssertionError: ...",
                ],
            ),
        ],
    )
    student_cell = nbformat.v4.new_code_cell(
        source="x = 1\nundefined_name",
        metadata={"nbgrader": {"solution": True, "grade": False, "grade_id": "s"}},
        outputs=[
            nbformat.v4.new_output(
                "error",
                ename="NameError",
                evalue="name 'undefined_name' is not defined",
                traceback=[
                    "Traceback",
                    "Cell \x1b[0;32mIn[3], line 2\x1b[0m",
                    "Cell In[2], line 9, in f",
                    "Cell In[3], line 1, in g",
                    "NameError",
                ],
            )
        ],
    )
    nb = nbformat.v4.new_notebook(cells=[cell, student_cell])
    out, _ = StudentFeedback().preprocess(nb, {})
    graded, own = out.cells
    assert secret not in graded.source and "visible comment" in graded.source
    assert [o.output_type for o in graded.outputs] == ["stream", "error"]
    assert (
        graded.outputs[0].text.startswith("<ipython>:2: UserWarning")
        and secret not in graded.outputs[0].text
    )
    assert graded.outputs[1].traceback == ["Test failed: the encoder: layer 2 has strides (1, 1)"]
    assert (
        own.outputs[0].traceback[0].endswith("(raised at line 1 of this cell)")
    )  # the deepest frame in this cell


# --- slow: one grading run of every sample submission ----------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("student", DEMO_IDS)
def test_scores_match_the_manifest(graded_course, student):
    submission = next(s for s in graded_course.demo if s.student == student)
    result = graded_course.run.results[student]
    assert result.error is None, f"nbgrader could not grade {student}: {result.error}"
    expected = {
        cell: float(submission.expected.get(cell, 0.0)) for cell in graded_course.run.max_points
    }
    assert result.scores == expected, (
        f"{student}: cells that differ (got, expected): "
        + str(
            {
                c: (result.scores[c], expected[c])
                for c in expected
                if result.scores[c] != expected[c]
            }
        )
        + _overrides_note()
    )
    assert not result.needs_manual_grade, f"nbgrader flagged {student} for manual grading"


@pytest.mark.slow
@pytest.mark.parametrize("student", DEMO_IDS)
def test_feedback_page_shows_each_failed_test_message(graded_course, student):
    result = graded_course.run.results[student]
    assert result.feedback is not None and result.feedback.is_file(), (
        f"no feedback page for {student}"
    )
    text = " ".join(page_text(result.feedback).split())
    autograded = nbformat.read(
        graded_course.run.course_root / "autograded" / student / ASSIGNMENT / NOTEBOOK, as_version=4
    )
    for cell_id, points in result.scores.items():
        if points > 0:
            continue
        outputs = require_cell(autograded, cell_id).outputs
        errors = [o for o in outputs if o.output_type == "error"]
        warnings = [o.text for o in outputs if o.output_type == "stream" and o.name == "stderr"]
        assert errors or warnings, (
            f"{student}: {cell_id} scored 0 but shows no error and no warning"
        )
        if errors:
            message = (
                NOT_ATTEMPTED
                if errors[0].ename == "NotImplementedError"
                else strip_ansi(errors[0].evalue)
            )
        else:  # nbgrader scores a test cell that writes to stderr 0: the warning is the reason
            message = strip_ansi(warnings[0]).strip().splitlines()[0]
        assert " ".join(message.split())[:120] in text, (
            f"{student}: the feedback page lacks {cell_id}'s message {message!r}"
        )
    submission = next(s for s in graded_course.demo if s.student == student)
    for phrase in submission.expected_feedback:
        assert phrase in text, f"{student}: the feedback page should say {phrase!r}"


@pytest.mark.slow
def test_no_feedback_page_shows_a_hidden_test_line(graded_course):
    master, release = nbformat.read(MASTER, as_version=4), nbformat.read(RELEASE, as_version=4)
    secrets = hidden_test_lines(master, release)
    # The hidden regions now hold only the call of the grader's check (two lines a cell, 8 cells: 16
    # measured); the verdicts themselves live in vae_grader.judge.hidden, which tests/test_judge_attacks.py
    # searches for in every page.
    assert len(secrets) >= 16, "the hidden-test line extraction found suspiciously few lines"
    pages = sorted((graded_course.run.course_root / "feedback").glob(f"*/{ASSIGNMENT}/*.html"))
    assert len(pages) >= len(graded_course.demo)
    leaked = {
        page.parent.parent.name: found
        for page in pages
        if (found := leaks(page_text(page), secrets))
    }
    assert not leaked, f"hidden-test lines in feedback pages: {leaked}"


@pytest.mark.slow
def test_the_leak_check_finds_hidden_lines_on_an_unfiltered_page(graded_course, tmp_path):
    """Rendered without StudentFeedback, the same autograded notebook shows its hidden regions: the check
    above can fail. (Tracebacks no longer quote hidden tests at all: the judge never runs them in the kernel.)"""
    from nbconvert import HTMLExporter

    master, release = nbformat.read(MASTER, as_version=4), nbformat.read(RELEASE, as_version=4)
    secrets = hidden_test_lines(master, release)
    autograded = (
        graded_course.run.course_root / "autograded" / "encoder_stride1" / ASSIGNMENT / NOTEBOOK
    )
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(autograded, as_version=4))
    unfiltered = tmp_path / "unfiltered.html"
    unfiltered.write_text(body, encoding="utf-8")
    assert leaks(page_text(unfiltered), secrets), (
        "expected the unfiltered page to show the hidden regions"
    )


@pytest.mark.slow
def test_grade_csv_has_every_student(graded_course):
    with open(graded_course.run.csv_path, newline="") as handle:
        rows = {
            row["student_id"]: row
            for row in csv.DictReader(handle)
            if row["assignment"] == ASSIGNMENT
        }
    for submission in graded_course.submissions:
        assert submission.student in rows, (
            f"{submission.student} is missing from {graded_course.run.csv_path}"
        )
        assert float(rows[submission.student]["score"]) == pytest.approx(
            graded_course.run.results[submission.student].total
        )
        assert float(rows[submission.student]["max_score"]) == pytest.approx(
            graded_course.run.max_total
        )


@pytest.mark.slow
def test_rerun_gives_the_same_scores_and_forgets_removed_students(tmp_path, course_env):
    """Re-running regrades (nbgrader skips existing outputs without --force) and drops students that
    left the set from the folders, the gradebook and the CSV. Uses the quick-to-grade untouched release."""
    from vae_grader.pipeline.grade_class import copy_course, course_config, gradebook

    untouched = next(s for s in SUBMISSIONS if s.student == "untouched")
    extra = dataclasses.replace(untouched, student="leaves_later")
    root = copy_course(tmp_path / "course")
    first = run_pipeline(root, [untouched, extra], progress=None)
    second = run_pipeline(root, [untouched], progress=None)
    assert second.results["untouched"].scores == first.results["untouched"].scores
    assert second.results["untouched"].feedback is not None
    for folder in ("submitted", "autograded", "feedback"):
        assert not (root / folder / "leaves_later").exists(), (
            f"{folder}/leaves_later survived the re-run"
        )
    with gradebook(course_config(root)) as gb:
        assert [s.id for s in gb.students] == ["untouched"]
        assert len(gb.find_assignment(ASSIGNMENT).submissions) == 1
    with open(second.csv_path, newline="") as handle:
        assert [row["student_id"] for row in csv.DictReader(handle)] == ["untouched"]


def test_every_part_has_points_in_the_master():
    points = points_by_cell(nbformat.read(MASTER, as_version=4))
    for part in PARTS:
        for cell in cells_of_part(part):
            assert points.get(cell, 0) > 0, f"{cell} carries no points in the master"


def test_grading_workers_come_from_the_environment_or_the_machine(monkeypatch):
    import psutil

    from vae_grader.pipeline.cluster import (
        MEMORY_PER_WORKER,
        PipelineError,
        grading_workers,
        usable_cores,
    )

    monkeypatch.setenv("VAE_GRADING_WORKERS", "3")
    assert grading_workers() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("VAE_GRADING_WORKERS", bad)
        with pytest.raises(PipelineError, match="VAE_GRADING_WORKERS must be a whole number"):
            grading_workers()
    monkeypatch.delenv("VAE_GRADING_WORKERS")
    by_memory = psutil.virtual_memory().total // MEMORY_PER_WORKER
    assert grading_workers() == max(1, min(usable_cores(), by_memory))


def test_training_cells_get_the_long_time_limit():
    """The training cell (and any student cell that calls .fit) gets training_timeout; every other
    cell, the test cells included, the short Execute.timeout, so an endless loop costs one minute."""
    from nbformat.v4 import new_code_cell
    from traitlets.config import Config

    from vae_grader.preprocessors.execute import RobustExecute

    config = Config()
    config.Execute.timeout = 60
    config.RobustExecute.training_timeout = 180
    executor = RobustExecute(config=config)
    master = nbformat.read(MASTER, as_version=4)
    limits = {
        cell.metadata.get("nbgrader", {}).get("grade_id"): executor._get_timeout(cell)
        for cell in master.cells
        if cell.cell_type == "code"
    }
    assert limits.pop("training") == 180
    assert set(limits.values()) == {60}
    assert (
        executor._get_timeout(new_code_cell("history2 = vae.fit(x_train, epochs=1)")) == 180
    )  # a student's own training cell
    locked_test = new_code_cell("model.fit(x, epochs=1)\nwhile True:\n    pass")
    locked_test.metadata["nbgrader"] = {
        "grade": True,
        "solution": False,
        "locked": True,
        "grade_id": "t",
        "points": 1,
    }
    assert (
        executor._get_timeout(locked_test) == 60
    )  # test cells that fit a stand-in keep the short limit
    assert executor._get_timeout(new_code_cell("while True:\n    pass")) == 60


def test_demo_only_refuses_an_unknown_sample_in_one_line():
    from vae_grader.apps.demo import chosen_submissions, main

    with pytest.raises(SystemExit) as refused:
        main(["--only", "complet", "complete"])
    message = str(refused.value)
    assert message.startswith("error: no sample submission named complet (did you mean complete")
    assert "\n" not in message
    chosen = chosen_submissions(["loss_by_hand", "complete", "loss_by_hand"])
    assert [s.student for s in chosen] == ["loss_by_hand", "complete"]
