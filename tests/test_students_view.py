"""What a student sees, without a browser: a failing self-check, TensorFlow's start-up, the feedback index.

* A failing self-check shows as its message alone, at most 3 lines, in IPython (in process, the
  shell JupyterLab's kernel runs), in every traceback mode; the student's own errors keep IPython's
  full traceback.
* ``import course`` in a real Jupyter kernel writes nothing to stderr (TensorFlow's oneDNN notice came
  twice, through absl, whatever TF_CPP_MIN_LOG_LEVEL said), and a student's warning still shows.
* The feedback page's index names every graded cell by its part and check, from the master's grade ids.
* The environment's Jupyter settings hide the instructor's tools (Formgrader, Create Assignment, the
  course list) from students, and JUPYTER_CONFIG_PATH=student_config/instructor brings them back.

tests/test_browser.py checks the same things in JupyterLab itself (and Validate's dialog).
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import nbformat
import nbgrader
import pytest
from IPython.core.interactiveshell import InteractiveShell
from nbconvert.exporters import HTMLExporter
from nbconvert.filters import strip_ansi
from traitlets.config import Config

from course.checks import MESSAGE_WIDTH, Outcome, SelfCheckFailed
from course.selfcheck import report
from vae_grader.preprocessors.feedback import FEEDBACK_TEMPLATE, StudentFeedback, index_name
from vae_grader import submissions
from vae_grader.submissions import PARTS, points_by_cell

ROOT = Path(__file__).resolve().parents[1]
SAMPLING_MESSAGE = (
    "the draws' standard deviation is [4.01, 3.98]; expected 2 = exp(0.5 * log 4) in each "
    "dimension: exp(z_log_var) is the variance, not the standard deviation (the 0.5 is missing)"
)
"""Part 2's message for the 2017 sampler (exp(z_log_var) as the scale), 193 characters."""


# --- a failing self-check in IPython ---------------------------------------------------------------


@pytest.fixture(scope="module")
def shell() -> InteractiveShell:
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    return InteractiveShell.instance(config=config)


def _run(
    shell: InteractiveShell, source: str, capsys: pytest.CaptureFixture[str]
) -> tuple[str, object]:
    """What the cell printed (colours removed) and the exception it ended with."""
    result = shell.run_cell(source, store_history=False)
    captured = capsys.readouterr()
    return strip_ansi(captured.out + captured.err), result.error_in_exec


@pytest.mark.parametrize("mode", ["Context", "Verbose", "Minimal", "Plain"])
def test_a_failing_self_check_shows_its_message_alone(shell, capsys, mode) -> None:
    shell.run_line_magic("xmode", mode)
    capsys.readouterr()
    shown, error = _run(
        shell,
        "from course.checks import Outcome\nfrom course.selfcheck import report\n"
        f"report(2, Outcome(0.0, 2.0, ({SAMPLING_MESSAGE!r},)))",
        capsys,
    )
    assert isinstance(error, SelfCheckFailed) and isinstance(error, AssertionError)
    lines = shown.strip().splitlines()
    assert len(lines) <= 3, shown
    assert lines[0].startswith("Part 2 self-check failed: the draws'"), shown
    assert " ".join(lines).endswith("(the 0.5 is missing)"), shown
    assert all(len(line) <= MESSAGE_WIDTH for line in lines), shown
    assert "Traceback" not in shown and "selfcheck" not in shown and "File " not in shown, shown


def test_the_students_own_errors_keep_their_traceback(shell, capsys) -> None:
    shell.run_line_magic("xmode", "Context")
    capsys.readouterr()
    shown, error = _run(
        shell, "def scale(log_var):\n    return undefined_name * log_var\n\nscale(2.0)", capsys
    )
    assert isinstance(error, NameError)
    assert "Traceback (most recent call last)" in shown, shown
    assert "----> 2     return undefined_name * log_var" in shown, shown  # the line that failed
    assert "NameError: name 'undefined_name' is not defined" in shown, shown
    # A student's own assert is an AssertionError too, and keeps its traceback.
    shown, error = _run(shell, "x = 1\nassert x == 2, 'x should be 2'", capsys)
    assert type(error) is AssertionError
    assert "Traceback" in shown and "AssertionError: x should be 2" in shown, shown


def test_a_self_checks_verdict_is_still_an_assertion_error_outside_ipython() -> None:
    """pytest, the grader and plain Python see an AssertionError carrying every failure."""
    with pytest.raises(AssertionError) as failure:
        report(4, Outcome(0.0, 2.0, ("first failure", "second failure")))
    assert str(failure.value) == "first failure\nsecond failure"
    again = pickle.loads(pickle.dumps(failure.value))
    assert (type(again), str(again), again.part) == (SelfCheckFailed, str(failure.value), 4)
    assert failure.value.lines() == ["Part 4 self-check failed: first failure", "second failure"]


def test_the_message_wraps_at_word_boundaries_to_the_dialogs_width() -> None:
    lines = SelfCheckFailed(SAMPLING_MESSAGE, 2).lines()
    assert " ".join(lines) == f"Part 2 self-check failed: {SAMPLING_MESSAGE}"
    assert all(len(line) <= MESSAGE_WIDTH for line in lines) and len(lines) <= 3, lines


# --- TensorFlow's start-up in a kernel -------------------------------------------------------------


@pytest.mark.kernel
def test_import_course_in_a_kernel_prints_no_tensorflow_notices(tmp_path) -> None:
    """A real ipykernel, as JupyterLab starts it: the set-up cell's imports print nothing on stderr;
    a student's warning and a line the student writes to file descriptor 2 still show."""
    from jupyter_client.manager import start_new_kernel

    # ipykernel forwards descriptor 2 into the notebook except under pytest (PYTEST_CURRENT_TEST):
    # without this the TensorFlow lines would never reach the client, and the test would prove nothing.
    env = {key: value for key, value in os.environ.items() if key != "PYTEST_CURRENT_TEST"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as in a student's JupyterLab: course sets it
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path), env=env)
    try:

        def run(code: str) -> list[str]:
            msg_id = client.execute(code)
            stderr = []
            while True:
                msg = client.get_iopub_msg(timeout=120)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "stream" and msg["content"]["name"] == "stderr":
                    stderr.append(msg["content"]["text"])
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    return stderr

        assert run("import course\nimport keras\nfrom keras import layers, ops") == []
        assert run("import sys\nassert 'tensorflow' in sys.modules") == []
        shown = "".join(
            run(
                "import os, time, warnings\nwarnings.warn('my own warning')\n"
                "os.write(2, b'my own stderr line\\n')\n"
                "time.sleep(1)  # ipykernel forwards descriptor 2 from a thread"
            )
        )
        assert "UserWarning: my own warning" in shown and "my own stderr line" in shown, shown
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_the_start_up_filter_matches_tensorflows_lines_only() -> None:
    import course

    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796638347.653336   14790 port.cc:153] oneDNN custom operations are on. You may "
        "see slightly different numerical results due to floating-point round-off errors.",
        "E0000 00:00:1733161536.370813   13094 cuda_dnn.cc:8310] Unable to register cuDNN factory: "
        "Attempting to register factory for plugin cuDNN when one has already been registered",
        "I0000 00:00:1796638356.671863   14828 cpu_feature_guard.cc:227] This TensorFlow binary is "
        "optimized to use available CPU instructions in performance-critical operations.",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with "
        "the appropriate compiler flags.",
    ]
    kept = [
        "/tmp/ipykernel_1/1.py:4: UserWarning: my own warning",
        "WARNING:absl:You are saving your model as an HDF5 file",
        "Epoch 1/6",
    ]
    assert [bool(course._START_UP_NOISE.fullmatch(line)) for line in noise] == [True] * len(noise)
    assert [bool(course._START_UP_NOISE.fullmatch(line)) for line in kept] == [False] * len(kept)


# --- the feedback page's index ---------------------------------------------------------------------


def test_every_graded_cell_of_the_master_has_a_name() -> None:
    master = nbformat.read(ROOT / "source" / "vae" / "vae.ipynb", as_version=4)
    ids = list(points_by_cell(master))
    assert len(ids) == 2 * len(PARTS) == 16
    names = [index_name(cell_id) for cell_id in ids]
    assert len(set(names)) == len(names) and None not in names, names
    assert index_name("test_sampling") == "Part 2 · sampling · self-check"
    assert index_name("test_vae_model_hidden") == "Part 5 · VAE model · hidden tests"
    assert index_name("some_other_cell") is None


def _feedback_page(nb: nbformat.NotebookNode) -> str:
    """The page as `nbgrader generate_feedback` renders it with the course's nbgrader_config.py."""
    base = Path(nbgrader.__file__).parent / "server_extensions" / "formgrader"
    exporter = HTMLExporter(
        **FEEDBACK_TEMPLATE,
        extra_template_paths=[str(base / "static" / "node_modules" / "bootstrap" / "dist" / "css")],
    )
    resources = {"nbgrader": {"notebook": "vae", "score": 0, "max_score": 40, "late_penalty": 0}}
    nb, resources = StudentFeedback().preprocess(nb, resources)
    page, _ = exporter.from_notebook_node(nb, resources=resources)
    return page


def test_the_feedback_index_names_each_part_and_check() -> None:
    master = nbformat.read(ROOT / "source" / "vae" / "vae.ipynb", as_version=4)
    points = points_by_cell(master)
    for cell in master.cells:  # half marks everywhere, as GetGrades would record them
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            meta["score"] = meta["points"] / 2
    page = _feedback_page(master)
    toc = page.split('<div id="toc">', 1)[1].split("</ol>", 1)[0]
    entries = [
        re.sub(r"<[^>]+>|\s+", " ", li).strip() for li in re.findall(r"<li>(.*?)</li>", toc, re.S)
    ]
    expected = []
    for number, part in enumerate(PARTS, start=1):
        for cell_id in submissions.test_cells(part):
            total = points[cell_id]
            expected.append(f"{index_name(cell_id)} ({total / 2:g} / {total:g})")
    assert [re.sub(r"\s+", " ", e) for e in entries] == expected, entries
    assert "Test cell" not in page and "Grade cell:" not in page
    assert page.count("Part 2 · sampling · self-check") == 2  # the index and the cell's own heading


def test_nbgrader_config_selects_the_course_template() -> None:
    """The instructor's nbgrader_config.py hands the template to HTMLExporter, which nbgrader's
    GenerateFeedback then keeps (it sets its own only where none is configured)."""
    source = (ROOT / "nbgrader_config.py").read_text()
    assert "c.HTMLExporter.merge(FEEDBACK_TEMPLATE)" in source
    from nbgrader.converters import GenerateFeedback

    config = Config()
    config.HTMLExporter.merge(FEEDBACK_TEMPLATE)
    converter = GenerateFeedback(config=config)
    assert converter.config.HTMLExporter.template_name == "vae_feedback"
    assert (
        converter.config.HTMLExporter.extra_template_basedirs
        == FEEDBACK_TEMPLATE["extra_template_basedirs"]
    )


# --- the instructor's tools in the students' JupyterLab -------------------------------------------

INSTRUCTOR_PLUGINS = {
    "@jupyter/nbgrader:formgrader",
    "@jupyter/nbgrader:create-assignment",
    "@jupyter/nbgrader:course-list",
}
INSTRUCTOR_SERVER_EXTENSIONS = {
    "nbgrader.server_extensions.formgrader",
    "nbgrader.server_extensions.course_list",
}


def _jupyter_settings(monkeypatch, override: str | None) -> tuple[set[str], set[str]]:
    """The lab plugins JupyterLab disables and the server extensions jupyter_server enables, as
    computed for a server started with this environment (and JUPYTER_CONFIG_PATH=override)."""
    from jupyter_core.paths import jupyter_config_path
    from jupyter_server.extension.config import ExtensionConfigManager
    from jupyterlab_server.config import get_page_config

    monkeypatch.delenv("JUPYTER_CONFIG_PATH", raising=False)
    monkeypatch.delenv("JUPYTER_PREFER_ENV_PATH", raising=False)
    if override:
        monkeypatch.setenv("JUPYTER_CONFIG_PATH", override)
    disabled = set(get_page_config([], None).get("disabledExtensions", []))
    manager = ExtensionConfigManager(read_config_path=jupyter_config_path())
    enabled = {name for name, on in manager.get_jpserver_extensions().items() if on}
    return disabled, enabled


def test_the_students_environment_hides_the_instructors_tools(monkeypatch) -> None:
    """What scripts/setup.sh leaves in .venv/etc/jupyter: the three instructor plugins disabled, the
    formgrader and course-list server extensions off; the students' own tools untouched."""
    disabled, enabled = _jupyter_settings(monkeypatch, None)
    assert INSTRUCTOR_PLUGINS <= disabled, disabled
    assert "@jupyter/nbgrader:assignment-list" not in disabled
    assert "@jupyter/nbgrader:validate-assignment" not in disabled
    assert INSTRUCTOR_SERVER_EXTENSIONS.isdisjoint(enabled), enabled
    assert "nbgrader.server_extensions.assignment_list" in enabled
    assert "nbgrader.server_extensions.validate_assignment" in enabled


def test_the_instructor_turns_them_back_on_per_session(monkeypatch) -> None:
    disabled, enabled = _jupyter_settings(monkeypatch, str(ROOT / "student_config" / "instructor"))
    assert INSTRUCTOR_PLUGINS.isdisjoint(disabled), disabled
    assert INSTRUCTOR_SERVER_EXTENSIONS <= enabled, enabled
