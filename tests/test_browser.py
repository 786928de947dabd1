"""A student's session in a real browser: JupyterLab 4, nbgrader's Assignments tab, Run All, Validate.

JupyterLab runs as a separate Unix user (the student, tests/exchange_world.py) in their HOME, which
holds the assignment fetched from the exchange; Debian's chromium, driven by Playwright for Python
(never Playwright's own browser download), does what the student does: Nbgrader > Assignment List,
open the notebook from the list, Run > Run All Cells (the short budget: Jupyter was started with
VAE_MODE=grading, as the README tells students who want quick runs; tests/test_exchange.py shows
that validating picks the short budget with no VAE_MODE at all),
then the notebook toolbar's **Validate** (the broken notebook skips Run All: Validate runs it anyway). The dialog must say success for a correct notebook and
show the failing part's self-check for a broken one. Screenshots go to the test's output folder
(the path is printed); docs/student-notebook.png and docs/validate-success.png were taken by it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from exchange_world import ASSIGNMENT, CourseWorld, Person
from vae_grader.submissions import PARTS
from vae_samples.kit import filled, load_master_and_release

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SHOTS = Path(os.environ.get("VAE_SCREENSHOTS", "")) if os.environ.get("VAE_SCREENSHOTS") else None
RUN_ALL_TIMEOUT_S = (
    600  # whole notebook in the short budget: ~45 s idle, ~120 s with the machine shared
)
VALIDATE_TIMEOUT_S = 600  # Validate re-runs the whole notebook in a fresh kernel


def _need_browser() -> None:
    missing = [
        what
        for what, ok in (
            ("/usr/bin/chromium", CHROMIUM.exists()),
            ("playwright", shutil.which("playwright") is not None or _importable("playwright")),
        )
        if not ok
    ]
    if missing:
        message = f"the browser test needs {', '.join(missing)} (scripts/setup.sh installs both)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """`jupyter lab` as the student, on 127.0.0.1 with a random token, stopped on exit."""

    def __init__(self, world: CourseWorld, student: Person, log: Path):
        self.token = secrets.token_hex(16)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/lab?token={self.token}"
        self.log = log
        argv = [
            "jupyter",
            "lab",
            "--no-browser",
            f"--ServerApp.token={self.token}",
            f"--port={self.port}",
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.port_retries=0",
        ]
        world.transcript.append(
            f"[{student.name}] {' '.join(argv[:3])} --ServerApp.token=... --port={self.port}"
        )
        self.handle = open(log, "w")
        # The student starts Jupyter with VAE_MODE=grading to iterate quickly (README, student
        # workflow): Run All then trains on the short budget instead of the 30-minute full run.
        # Pictures need the kernel's own inline backend: no MPLBACKEND=agg here.
        env = {**world.env(student), "VAE_MODE": "grading"}
        env.pop("MPLBACKEND", None)
        self.process = subprocess.Popen(
            world.command(student, argv),
            cwd=student.home,
            env=env,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"jupyter lab exited with {self.process.returncode}: {self.log.read_text()[-3000:]}"
                )
            try:
                urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/api/status?token={self.token}", timeout=2
                )
                return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(
            f"jupyter lab did not answer in {timeout:.0f} s: {self.log.read_text()[-3000:]}"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)  # the server and the kernels it started
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        self.handle.close()


@pytest.fixture(scope="module")
def world():
    _need_browser()
    world = CourseWorld.create(("dana", "eve"))
    world.release()
    yield world
    world.remove()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = SHOTS or tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folder}")
    return folder


def _student_with(world: CourseWorld, name: str, build) -> Person:
    student = world.students[name]
    world.nbgrader(student, "fetch_assignment", ASSIGNMENT)
    path = world.fetched_notebook(student)
    master, _ = load_master_and_release()
    nbformat.write(build(master, nbformat.read(path, as_version=4)), path)
    os.chown(path, student.uid, student.uid)
    return student


def _session(
    world: CourseWorld, student: Person, shots: Path, tag: str, run_all: bool = True
) -> tuple[str, float]:
    """Open the notebook from the Assignments tab, run all (if asked), validate; return the
    dialog's text and the session's wall time."""
    from playwright.sync_api import sync_playwright

    lab = Lab(world, student, shots / f"{tag}-jupyterlab.log")
    started = time.monotonic()
    try:
        lab.wait_ready()
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(lab.url)
            page.locator("#jp-main-dock-panel").wait_for()

            # Nbgrader > Assignment List: the fetched assignment, with its notebook.
            page.locator("#jp-MainMenu").get_by_text("Nbgrader", exact=True).click()
            page.locator(".lm-Menu").get_by_text("Assignment List", exact=True).click()
            fetched = page.locator("#fetched_assignments_list")
            fetched.get_by_text(ASSIGNMENT, exact=True).first.wait_for()
            page.screenshot(path=shots / f"{tag}-1-assignments.png")
            fetched.get_by_text(ASSIGNMENT, exact=True).first.click()  # expands the assignment
            fetched.locator("a", has_text=f"{ASSIGNMENT}").last.click()  # the notebook's own link
            notebook = page.locator(".jp-NotebookPanel:visible")
            notebook.locator(".jp-Cell").first.wait_for()
            _dismiss_start_up_questions(page)
            page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(
                timeout=120_000
            )

            has_picture = None
            if run_all:  # Run > Run All Cells, then wait until no cell is queued or running.
                page.locator("#jp-MainMenu").get_by_text("Run", exact=True).click()
                page.locator(".lm-Menu").get_by_text("Run All Cells", exact=True).click()
                page.wait_for_function(  # every code cell numbered: run, none queued ([*]) or skipped ([ ])
                    "() => { const prompts = [...document.querySelectorAll("
                    "'.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')];"
                    " return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent)); }",
                    timeout=RUN_ALL_TIMEOUT_S * 1000,
                    polling=1000,
                )
                manifold_cell = notebook.locator(".jp-CodeCell", has_text="def build_manifold")
                picture = manifold_cell.locator(".jp-OutputArea-output img")
                has_picture = picture.count() > 0
                if has_picture:
                    picture.first.scroll_into_view_if_needed()
                    page.mouse.wheel(0, -150)
                    page.wait_for_timeout(500)
                page.screenshot(path=shots / f"{tag}-2-notebook.png")

            # The notebook toolbar's Validate button; nbgrader saves the notebook first.
            notebook.locator(
                "button.validate-button, .validate-button button, .validate-button"
            ).first.click()
            dialog = page.locator(".jp-Dialog", has_text="Validation Results")
            dialog.locator(
                ".validation-success, .validation-failed, .validation-error, pre"
            ).first.wait_for(timeout=VALIDATE_TIMEOUT_S * 1000)
            page.wait_for_timeout(500)
            page.screenshot(path=shots / f"{tag}-3-validate.png")
            text = dialog.inner_text()
            browser.close()
    finally:
        lab.stop()
    assert has_picture is not False, "the manifold cell showed no picture after Run All"
    return text, time.monotonic() - started


def _dismiss_start_up_questions(page) -> None:
    """What a new JupyterLab asks first: the kernel for a notebook opened before the kernel list
    arrived ("Select Kernel": the notebook's own python3), and whether to fetch Jupyter news (no)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.locator(".jp-Dialog", has_text="Select Kernel").get_by_role(
            "button", name="Select", exact=True
        ).click(timeout=15_000)
    except PlaywrightTimeout:
        pass
    news = page.locator(".jp-Notification-Toast-default, .Toastify__toast", has_text="Jupyter news")
    if news.count():
        news.get_by_role("button", name="No", exact=True).click()


def test_correct_notebook_validates_in_jupyterlab(world, shots):
    student = _student_with(world, "dana", filled(PARTS))
    text, seconds = _session(world, student, shots, "correct")
    print(f"\ncorrect notebook: Validate dialog after {seconds:.0f} s in the browser:\n{text}")
    assert "Success! Your notebook passes all the tests." in text, text


def test_broken_notebook_names_the_failing_part(world, shots):
    mistake = {
        "loss_layer": ("return x", "return z_decoded")
    }  # the layer returns the reconstruction
    student = _student_with(world, "eve", filled(PARTS, mistake))
    text, seconds = _session(
        world, student, shots, "broken", run_all=False
    )  # Validate runs it anyway
    print(f"\nbroken notebook: Validate dialog after {seconds:.0f} s in the browser:\n{text}")
    assert "The following cell failed" in text, text
    assert "# Self-check for part 4" in text, text
    assert "AssertionError: the layer's output" in text and "not the reconstruction" in text, text
    assert "Traceback" not in text, text
