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

from vae_grader.pipeline.grade_class import GradingRun, copy_course, run_pipeline
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


OUT_OF_PROCESS = (
    "slow",
    "kernel",
    "nbgrader",
    "judge",
    "sandbox",
    "exchange",
    "browser",
    "postgres",
)
"""Markers of tests that start other programs; ``--in-process`` (``make test-fast``) leaves them out."""

TOOLS_IN_PROCESS_LAYER = frozenset({"ruff", "git", "python -c"})
"""Programs a fast test may still run: short-lived tools and inline scripts, no kernel, no nbgrader, no
sandbox, no server."""


collect_ignore = ["files"]
"""tests/files/ holds notebooks that tests read as input (``test_plugin_files.py``): nbval must not run them."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--in-process",
        action="store_true",
        help="run only tests that start no kernel, nbgrader, sandbox, browser or server (make test-fast); "
        "an unmarked test that starts one fails and names the marker it needs",
    )
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
        from vae_grader.apps.demo import chosen_submissions

        try:
            chosen_submissions(names)
        except SystemExit as error:
            raise pytest.UsageError(str(error)) from None
    return names


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        # Every test that reads the class's grades runs nbgrader through this fixture, so the fixture
        # says so once for all of them.
        if "graded_course" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.nbgrader)
    if config.getoption("in_process"):
        outside = [
            item for item in items if any(item.get_closest_marker(m) for m in OUT_OF_PROCESS)
        ]
        items[:] = [item for item in items if item not in outside]
        config.hook.pytest_deselected(items=outside)
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
    from vae_grader.apps.demo import adversarial_submissions, demo_submissions

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


@pytest.fixture(autouse=True)
def _only_in_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``--in-process``, a test that starts a program other than a short tool fails, naming it:
    the markers then say what every test runs, and the fast layer cannot quietly grow slow."""
    if not request.config.getoption("in_process"):
        return
    import subprocess

    real_init = subprocess.Popen.__init__

    def guarded(self: subprocess.Popen, args: object, *rest: object, **kwargs: object) -> None:
        argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)  # type: ignore[call-overload]
        words = [os.fsdecode(word) for word in argv]  # type: ignore[arg-type]
        program = os.path.basename(words[0].split()[0]) if words else ""
        if program.startswith("python") and words[1:2] == ["-c"]:
            program = (
                "python -c"  # a few lines in a fresh interpreter (an import seen from outside)
            )
        elif program.startswith("python") and words[1:2] == ["-m"] and len(words) > 2:
            program = words[2]  # `python -m ruff` runs the tool
        if program not in TOOLS_IN_PROCESS_LAYER:
            pytest.fail(
                f"{request.node.nodeid} starts {program!r}: mark it with what it runs "
                f"({', '.join(OUT_OF_PROCESS[1:])}) so that the fast layer (--in-process) leaves it out",
                pytrace=False,
            )
        real_init(self, args, *rest, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)
