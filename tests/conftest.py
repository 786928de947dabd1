"""Shared fixtures: one grading run of every sample submission per test session.

Grading a submission takes tens of seconds, so the demo set and the adversarial corpus are graded
ONCE, together, by the session fixture ``graded_course``; every test that needs grades or
feedback pages reads that run.

``pytest --only NAME[,NAME…]`` grades just those samples (demo or adversarial) and keeps only the
tests about them: the tests parametrized by one of those students, and no test that reads the whole
class. It is for checking a new case in a minute instead of grading all of them; ``make test``
never passes it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
import pytest

from vae_grader.pipeline import GradingRun, copy_course, run_pipeline
from vae_grader.submissions import Submission


@dataclass(frozen=True)
class GradedCourse:
    """What ``graded_course`` returns.

    run: the pipeline's result. ``run.course_root`` is the scratch course directory;
         ``run.results[student]`` has ``scores`` (grade_id -> points), ``total``,
         ``needs_manual_grade``, ``autograde_seconds``, ``feedback`` (Path of the HTML page or None)
         and ``error`` (one line when nbgrader could not grade it); ``run.max_points`` maps every
         graded cell to its maximum, ``run.csv_path`` is the exported CSV.
    demo: the demo submissions (vae_samples.demo.SUBMISSIONS).
    adversarial: the adversarial corpus (vae_samples.adversarial.SUBMISSIONS).
    """

    run: GradingRun
    demo: tuple[Submission, ...]
    adversarial: tuple[Submission, ...]

    @property
    def submissions(self) -> tuple[Submission, ...]:
        return self.demo + self.adversarial


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--only",
        action="append",
        default=[],
        metavar="NAME[,NAME…]",
        help="grade only these sample students and run only the tests about them",
    )


def chosen_students(config: pytest.Config) -> list[str]:
    names = [name for value in config.getoption("only") for name in value.split(",") if name]
    if names:
        from vae_grader.demo import chosen_submissions

        try:
            chosen_submissions(names)
        except SystemExit as error:
            raise pytest.UsageError(str(error)) from None
    return names


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    chosen = set(chosen_students(config))
    if not chosen:
        return
    kept, dropped = [], []
    for item in items:
        if "graded_course" not in getattr(item, "fixturenames", ()):
            kept.append(item)
            continue
        student = getattr(item, "callspec", None) and item.callspec.params.get("student")
        (kept if student in chosen else dropped).append(item)
    items[:] = kept
    config.hook.pytest_deselected(items=dropped)


@pytest.fixture(scope="session")
def live_print(request: pytest.FixtureRequest):
    """print() that reaches the terminal even while pytest captures output (progress of long runs)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def say(message: str) -> None:
        with capture.global_and_fixture_disabled():
            print(message, flush=True)

    return say


@pytest.fixture(scope="session")
def course_env() -> Iterator[None]:
    """Grading in scratch courses must use their own SQLite gradebook, whatever the shell says."""
    saved = os.environ.pop("NBGRADER_DB_URL", None)
    yield
    if saved is not None:
        os.environ["NBGRADER_DB_URL"] = saved


@pytest.fixture(scope="session")
def graded_course(
    tmp_path_factory: pytest.TempPathFactory,
    live_print,
    course_env,
    request: pytest.FixtureRequest,
) -> GradedCourse:
    """Every demo and adversarial submission, graded once with plain nbgrader commands (see GradedCourse)."""
    from vae_grader.demo import adversarial_submissions, demo_submissions

    demo, adversarial = tuple(demo_submissions()), tuple(adversarial_submissions())
    chosen = set(chosen_students(request.config))
    if chosen:
        demo = tuple(s for s in demo if s.student in chosen)
        adversarial = tuple(s for s in adversarial if s.student in chosen)
    root = copy_course(tmp_path_factory.mktemp("graded-course"))
    live_print(
        f"\ngrading {len(demo)} demo + {len(adversarial)} adversarial submissions once for this session in {root}"
    )
    run = run_pipeline(
        root, demo + adversarial, progress=lambda message: live_print("  " + message)
    )
    return GradedCourse(run=run, demo=demo, adversarial=adversarial)
