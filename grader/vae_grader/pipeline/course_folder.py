"""The course folder the pipeline grades in, and its gradebook: what goes in, what comes back out.

The pipeline writes each sample submission where ``nbgrader collect`` would put it
(``submitted/<student>/vae/``), keeps a list of the students it wrote (``MARKER``) so that a later run
removes only its own stale students, and reads every student's per-cell points back from nbgrader's
gradebook, with the gradebook URL and course id exactly as nbgrader reads them from the course's
``nbgrader_config.py``.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry

from vae_grader.paths import ASSIGNMENT, NOTEBOOK
from vae_grader.submissions import Submission

Progress = Callable[[str], None]
MARKER = ".pipeline-students.json"


@dataclass(frozen=True)
class StudentResult:
    """What the gradebook says about one student after the run."""

    student: str
    scores: dict[str, float]
    """grade_id -> points, for every graded cell of the master (0 where nbgrader recorded nothing)."""
    total: float
    needs_manual_grade: bool
    """nbgrader could not grade some cell automatically (e.g. a grade cell was deleted)."""
    autograde_seconds: float
    feedback: Path | None
    """The student's feedback page, or None when nbgrader wrote none."""
    error: str | None = None
    """One line when nbgrader could not grade the submission at all."""


def copy_course(destination: Path, source: Path | None = None) -> Path:
    """A scratch course directory with the configuration, the master and the release, nothing graded.

    Its ``nbgrader_config.py`` points nbgrader at the copy itself (CourseDirectory.root is the
    file's own folder), so grading there never touches the real course's gradebook.
    """
    from vae_grader.paths import COURSE_ROOT

    source = Path(source or COURSE_ROOT)
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "nbgrader_config.py", destination / "nbgrader_config.py")
    for folder in ("source", "release"):
        shutil.copytree(source / folder, destination / folder, dirs_exist_ok=True)
    return destination


@dataclass(frozen=True)
class CourseConfig:
    db_url: str
    course_id: str


def course_config(root: Path) -> CourseConfig:
    """The gradebook URL and course id exactly as nbgrader will read them from ``nbgrader_config.py``
    (loading it changes nothing in this process: the kernel's defaults are set when it starts)."""
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    coursedir = config.get("CourseDirectory", {})
    db_url = coursedir.get("db_url") or f"sqlite:///{root / 'gradebook.db'}"
    return CourseConfig(
        db_url=str(db_url), course_id=str(coursedir.get("course_id") or "default_course")
    )


@contextmanager
def gradebook(config: CourseConfig) -> Iterator[Gradebook]:
    with Gradebook(config.db_url, course_id=config.course_id) as gb:
        yield gb


def forget_submissions(config: CourseConfig, students: Sequence[str]) -> None:
    """Drop the students' gradebook records: a regrade that fails must not leave the previous run's
    scores looking current."""
    with gradebook(config) as gb:
        for student in students:
            try:
                gb.remove_submission(ASSIGNMENT, student)
            except MissingEntry:  # first run for this student
                pass


def write_submission(
    root: Path,
    submission: Submission,
    master: nbformat.NotebookNode,
    release: nbformat.NotebookNode,
) -> None:
    folder = root / "submitted" / submission.student / ASSIGNMENT
    if folder.exists():
        shutil.rmtree(folder)  # a previous run may have used another file name
    folder.mkdir(parents=True)
    content = submission.build(master, release)
    path = folder / submission.filename
    if isinstance(content, bytes):
        path.write_bytes(content)  # deliberately broken files are written exactly as given
    else:
        with (
            warnings.catch_warnings()
        ):  # e.g. DuplicateCellId for a copy-pasted cell: expected here
            warnings.simplefilter("ignore")
            nbformat.write(content, path)
    write_files = getattr(
        submission, "write_files", None
    )  # extra files beside the notebook (adversarial corpus)
    if callable(write_files):
        write_files(folder)


def forget_stale_students(
    root: Path, config: CourseConfig, current: set[str], say: Progress
) -> None:
    marker = root / "submitted" / MARKER
    try:
        previous = set(json.loads(marker.read_text()))
    except (OSError, ValueError):
        previous = set()
    stale = sorted(previous - current)
    if not stale:
        return
    say(
        f"removing {len(stale)} student(s) from an earlier run that are no longer in the set: {', '.join(stale)}"
    )
    for student in stale:
        for folder in ("submitted", "autograded", "feedback"):
            shutil.rmtree(root / folder / student, ignore_errors=True)
    with gradebook(config) as gb:
        for student in stale:
            try:
                gb.remove_student(student)
            except MissingEntry:  # already gone
                pass


def read_results(
    root: Path,
    config: CourseConfig,
    students: Sequence[str],
    max_points: dict[str, float],
    seconds: dict[str, float],
    errors: dict[str, str],
) -> dict[str, StudentResult]:
    results = {}
    with gradebook(config) as gb:
        for student in students:
            scores = dict.fromkeys(max_points, 0.0)
            manual = False
            error = errors.get(student)
            try:
                submission = gb.find_submission(ASSIGNMENT, student)
            except MissingEntry:
                submission = None
                error = error or "nbgrader recorded no submission"
            if submission is not None:
                manual = bool(submission.needs_manual_grade)
                graded = [grade for notebook in submission.notebooks for grade in notebook.grades]
                if not any(
                    grade.auto_score is not None or grade.manual_score is not None
                    for grade in graded
                ):
                    error = error or "nbgrader graded no cell (is the notebook missing or renamed?)"
                for grade in graded:
                    if grade.name in scores:
                        scores[grade.name] = float(grade.score or 0.0)
            feedback = (
                root / "feedback" / student / ASSIGNMENT / NOTEBOOK.replace(".ipynb", ".html")
            )
            results[student] = StudentResult(
                student=student,
                scores=scores,
                total=sum(scores.values()),
                needs_manual_grade=manual,
                autograde_seconds=seconds.get(student, 0.0),
                feedback=feedback if feedback.is_file() else None,
                error=error,
            )
    return results
