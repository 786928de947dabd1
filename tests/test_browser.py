"""A student's session in a real browser: JupyterLab 4, nbgrader's Assignments tab, Run All, Validate.

JupyterLab runs as a separate Unix user (the student, tests/exchange_world.py) in their HOME, which
holds the assignment fetched from the exchange; Debian's chromium, driven by Playwright for Python
(never Playwright's own browser download), does what the student does: Nbgrader > Assignment List,
open the notebook from the list, Run > Run All Cells (the short budget: Jupyter was started with
VAE_MODE=grading, as the README tells students who want quick runs; tests/test_exchange.py shows
that validating picks the short budget with no VAE_MODE at all),
then the notebook toolbar's **Validate**. The dialog must say success for a correct notebook and
show the failing part's self-check for a broken one, its message whole (no line wider than the
dialog). On the way it checks what the student study found wrong: the Nbgrader menu offers the
student's tools only (no Formgrader, Create Assignment or Course List), the set-up cell prints no
TensorFlow log lines (Jupyter runs without TF_CPP_MIN_LOG_LEVEL, as a student's does), and in the
broken notebook Run All stops at part 4's self-check, which shows its message in at most 3 lines.
A third student submits the broken notebook and gets the feedback page back through the exchange:
its index names each part and check, one click on "(view feedback)" shows its folder, a double click
opens it. Screenshots go to the test's output folder (the path is printed; VAE_SCREENSHOTS names
one); docs/student-notebook.png, docs/validate-success.png, docs/selfcheck-failed.png,
docs/validate-failed.png and docs/feedback-page.png were taken by it.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
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
NARROW = {"width": 1024, "height": 768}
"""The smallest window the Validate dialog is checked in (the screenshots use 1400 x 1000)."""
INSTRUCTOR_TOOLS = ("Formgrader", "Create Assignment", "Course List")
"""The Nbgrader menu's instructor entries (compared ignoring case: nbgrader writes "Create assignment"),
which scripts/setup.sh disables for the environment."""
PART4_MESSAGE = (
    "the layer's output is array of shape (2, 28, 28, 1), mean 0.25; expected array of shape "
    "(2, 28, 28, 1), mean 0.5 (off by 0.25, tolerance 0): return the first input x unchanged, not "
    "the reconstruction"
)
"""Part 4's self-check message for a loss layer that returns the reconstruction (193 characters)."""


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

    def __init__(
        self,
        world: CourseWorld,
        student: Person,
        log: Path,
        extra_env: dict[str, str] | None = None,
    ):
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
        if student.uid == 0:  # the test's instructor is root
            argv.append("--ServerApp.allow_root=True")
        world.transcript.append(
            f"[{student.name}] {' '.join(argv[:3])} --ServerApp.token=... --port={self.port}"
        )
        self.handle = open(log, "w")
        # The student starts Jupyter with VAE_MODE=grading to iterate quickly (README, student
        # workflow): Run All then trains on the short budget instead of the 30-minute full run.
        # Pictures need the kernel's own inline backend: no MPLBACKEND=agg here.
        env = {**world.env(student), "VAE_MODE": "grading"}
        env.pop("MPLBACKEND", None)
        # A student's Jupyter has no TF_CPP_MIN_LOG_LEVEL: `import course` must quieten TensorFlow.
        env.pop("TF_CPP_MIN_LOG_LEVEL", None)
        env.update(extra_env or {})
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

    def status_of(self, path: str) -> int:
        """The HTTP status of a page of this server (``/formgrader``, say), redirects not followed."""

        class Stay(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        try:
            with urllib.request.build_opener(Stay).open(
                f"http://127.0.0.1:{self.port}{path}?token={self.token}", timeout=30
            ) as reply:
                return reply.status
        except urllib.error.HTTPError as error:
            return error.code

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
    world = CourseWorld.create(("dana", "eve", "fay"))
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


@dataclass
class Session:
    """What the student saw in one session."""

    dialog: str = ""
    seconds: float = 0.0
    menu: list[str] = field(default_factory=list)
    formgrader_status: int = 0  # HTTP status of the server's /formgrader page
    setup_stderr: str = ""
    failure: str = ""  # the failing self-check's output as the page shows it
    failure_lines: int = 0  # its lines on screen (wrapped lines count)
    cut: list[str] = field(default_factory=list)  # the dialog's texts wider than the dialog
    dialog_columns: int = 0  # characters of the dialog's monospace font per line
    narrow_columns: int = 0  # the same in a NARROW window


# An output's text and how many lines it takes on screen (its <pre>'s height over its line height).
_LINES_ON_SCREEN = """(output) => {
    const pre = output.querySelector('pre') || output;
    const style = getComputedStyle(pre);
    const height = parseFloat(style.lineHeight) || 1.2 * parseFloat(style.fontSize);
    return [output.textContent, Math.round(pre.getBoundingClientRect().height / height)];
}"""
# Every <pre> of the Validate dialog whose text is wider than the <pre> or runs past the dialog's
# edge, and the dialog's width in characters of its monospace font.
_CUT_IN_DIALOG = """(dialog) => {
    const edge = dialog.getBoundingClientRect().right;
    const cut = [...dialog.querySelectorAll('pre')]
        .filter(pre => pre.scrollWidth > pre.clientWidth + 1 || pre.getBoundingClientRect().right > edge + 1)
        .map(pre => pre.innerText);
    const pre = dialog.querySelector('pre');
    const probe = document.createElement('span');
    probe.textContent = 'x'.repeat(100);
    pre.appendChild(probe);
    const columns = Math.floor(pre.clientWidth / (probe.getBoundingClientRect().width / 100));
    probe.remove();
    return [cut, columns];
}"""


def _session(
    world: CourseWorld, student: Person, shots: Path, tag: str, stop_at: str | None = None
) -> Session:
    """Open the notebook from the Assignments tab, Run All, validate; what the student saw.

    ``stop_at``: the source text of the self-check cell where Run All stops with an error (the
    broken notebook); None: Run All must run every cell."""
    from playwright.sync_api import sync_playwright

    seen = Session()
    lab = Lab(world, student, shots / f"{tag}-jupyterlab.log")
    started = time.monotonic()
    has_picture = None
    try:
        lab.wait_ready()
        seen.formgrader_status = lab.status_of("/formgrader")
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(lab.url)
            page.locator("#jp-main-dock-panel").wait_for()

            # Nbgrader > Assignment List: the fetched assignment, with its notebook. The menu's
            # entries are what the student is offered.
            page.locator("#jp-MainMenu").get_by_text("Nbgrader", exact=True).click()
            menu = page.locator(".lm-Menu")
            menu.get_by_text("Assignment List", exact=True).wait_for()
            seen.menu = [t.strip() for t in menu.locator(".lm-Menu-itemLabel").all_inner_texts()]
            page.screenshot(path=shots / f"{tag}-0-menu.png")
            menu.get_by_text("Assignment List", exact=True).click()
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

            # Run > Run All Cells.
            page.locator("#jp-MainMenu").get_by_text("Run", exact=True).click()
            page.locator(".lm-Menu").get_by_text("Run All Cells", exact=True).click()
            setup_cell = notebook.locator(".jp-CodeCell", has_text="import course").first
            if stop_at is None:  # every code cell numbered: run, none queued ([*]) or skipped ([ ])
                page.wait_for_function(
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
            else:  # Run All stops at the failing self-check
                failing = notebook.locator(".jp-CodeCell", has_text=stop_at).first
                error = failing.locator(".jp-OutputArea-output[data-mime-type*='stderr']").first
                error.wait_for(timeout=RUN_ALL_TIMEOUT_S * 1000)
                page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(
                    timeout=120_000
                )
                seen.failure, seen.failure_lines = error.evaluate(_LINES_ON_SCREEN)
                failing.scroll_into_view_if_needed()
                page.mouse.wheel(0, -250)  # the part's code above the self-check, in view
                page.wait_for_timeout(500)
                page.screenshot(path=shots / f"{tag}-2-selfcheck.png")
            seen.setup_stderr = "\n".join(
                setup_cell.locator(
                    ".jp-OutputArea-output[data-mime-type*='stderr']"
                ).all_inner_texts()
            )

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
            seen.dialog = dialog.inner_text()
            if dialog.locator("pre").count():
                seen.cut, seen.dialog_columns = dialog.locator(".jp-Dialog-content").evaluate(
                    _CUT_IN_DIALOG
                )
                # A laptop's smaller window: the dialog narrows with it.
                page.set_viewport_size(NARROW)
                page.wait_for_timeout(500)
                cut, seen.narrow_columns = dialog.locator(".jp-Dialog-content").evaluate(
                    _CUT_IN_DIALOG
                )
                seen.cut += [text for text in cut if text not in seen.cut]
                page.screenshot(path=shots / f"{tag}-4-validate-narrow.png")
            browser.close()
    finally:
        lab.stop()
    seen.seconds = time.monotonic() - started
    assert has_picture is not False, "the manifold cell showed no picture after Run All"
    return seen


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


def _students_view(seen: Session) -> None:
    """What every session must show: the student's tools only, and a quiet set-up cell."""
    assert "Assignment List" in seen.menu, seen.menu
    lowered = [label.lower() for label in seen.menu]
    assert [tool for tool in INSTRUCTOR_TOOLS if tool.lower() in lowered] == [], seen.menu
    assert seen.formgrader_status == 404, seen.formgrader_status  # its server extension is off too
    assert seen.setup_stderr == "", f"the set-up cell printed on stderr:\n{seen.setup_stderr}"


def test_correct_notebook_validates_in_jupyterlab(world, shots):
    student = _student_with(world, "dana", filled(PARTS))
    seen = _session(world, student, shots, "correct")
    print(
        f"\ncorrect notebook: Validate dialog after {seen.seconds:.0f} s in the browser:\n{seen.dialog}"
    )
    print(f"Nbgrader menu: {seen.menu}")
    _students_view(seen)
    assert "Success! Your notebook passes all the tests." in seen.dialog, seen.dialog


def test_broken_notebook_names_the_failing_part(world, shots):
    mistake = {
        "loss_layer": ("return x", "return z_decoded")
    }  # the layer returns the reconstruction
    student = _student_with(world, "eve", filled(PARTS, mistake))
    seen = _session(world, student, shots, "broken", stop_at="selfcheck.loss_layer(")
    print(
        f"\nbroken notebook: part 4's self-check in the page ({seen.failure_lines} lines on screen):"
        f"\n{seen.failure}\nValidate dialog after {seen.seconds:.0f} s in the browser "
        f"({seen.dialog_columns} columns wide; {seen.narrow_columns} in a "
        f"{NARROW['width']} px window):\n{seen.dialog}"
    )
    _students_view(seen)
    # In the page: the message alone, in at most 3 lines, nothing of the self-check's machinery.
    flat = re.sub(r"\s+", " ", seen.failure)
    assert flat.strip() == f"Part 4 self-check failed: {PART4_MESSAGE}", seen.failure
    assert seen.failure_lines <= 3 and len(seen.failure.strip().splitlines()) <= 3, seen.failure
    assert "Traceback" not in seen.failure and "selfcheck/" not in seen.failure, seen.failure
    # In Validate's dialog: the failing cell, then the whole message, no line cut at the edge.
    assert "The following cell failed" in seen.dialog, seen.dialog
    assert "# Self-check for part 4" in seen.dialog, seen.dialog
    assert f"Part 4 self-check failed: {PART4_MESSAGE}" in re.sub(r"\s+", " ", seen.dialog)
    assert "Traceback" not in seen.dialog, seen.dialog
    message_cut = [text for text in seen.cut if "self-check failed" in text]
    assert message_cut == [], (
        f"wider than the dialog ({seen.narrow_columns} columns): {message_cut}"
    )


def test_feedback_page_is_one_folder_away(world, shots):
    """The page a student gets back: its index names each part and check. nbgrader's "(view
    feedback)" link in the Assignments tab shows the feedback folder in the file browser (its
    lab extension calls filebrowser:go-to-path on the folder); the page opens from there."""
    from playwright.sync_api import sync_playwright

    mistake = {"loss_layer": ("return x", "return z_decoded")}
    student = _student_with(world, "fay", filled(PARTS, mistake))
    world.nbgrader(student, "submit", ASSIGNMENT)
    for step in ("collect", "autograde", "generate_feedback", "release_feedback"):
        world.nbgrader(world.instructor, step, ASSIGNMENT, timeout=900)
    world.nbgrader(student, "fetch_feedback", ASSIGNMENT)

    lab = Lab(world, student, shots / "feedback-jupyterlab.log")
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
            page.locator("#jp-MainMenu").get_by_text("Nbgrader", exact=True).click()
            page.locator(".lm-Menu").get_by_text("Assignment List", exact=True).click()
            link = page.locator("#submitted_assignments_list a", has_text="view feedback")
            link.first.wait_for()
            _dismiss_start_up_questions(page)
            link.first.click()
            # One click: the file browser shows the feedback folder, the page in it.
            listing = page.locator(".jp-DirListing-item", has_text=f"{ASSIGNMENT}.html")
            listing.first.wait_for()
            crumbs = page.locator(".jp-BreadCrumbs").first.inner_text()
            _dismiss_start_up_questions(page)
            page.screenshot(path=shots / "feedback-1-folder.png")
            listing.first.dblclick()  # the second step: JupyterLab's HTML viewer opens the page
            frame = page.frame_locator(".jp-HTMLViewer iframe").first
            toc = frame.locator("#toc")
            toc.wait_for()
            index = toc.inner_text()
            page.wait_for_timeout(500)
            page.screenshot(path=shots / "feedback-2-page.png")
            browser.close()
    finally:
        lab.stop()
    print(
        f"\nfeedback: '(view feedback)' opened the folder {crumbs!r}; the page's index after "
        f"{time.monotonic() - started:.0f} s:\n{index}"
    )
    assert "feedback" in crumbs, crumbs
    assert re.search(r"Part 4 · loss layer · self-check \(0 / 2\)", index), index
    assert "Part 1 · encoder · self-check (2 / 2)" in index, index
    assert "Test cell" not in index, index


def test_the_instructor_gets_formgrader_back(world, shots):
    """Same environment, the instructor's session: JUPYTER_CONFIG_PATH=student_config/instructor
    outranks the environment's settings, and the instructor's tools are back."""
    from playwright.sync_api import sync_playwright

    override = Path(__file__).resolve().parents[1] / "student_config" / "instructor"
    lab = Lab(
        world,
        world.instructor,
        shots / "instructor-jupyterlab.log",
        extra_env={"JUPYTER_CONFIG_PATH": str(override)},
    )
    try:
        lab.wait_ready()
        formgrader_status = lab.status_of("/formgrader")
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(lab.url)
            page.locator("#jp-main-dock-panel").wait_for()
            page.locator("#jp-MainMenu").get_by_text("Nbgrader", exact=True).click()
            menu = page.locator(".lm-Menu")
            menu.get_by_text("Formgrader", exact=True).wait_for()
            labels = [t.strip() for t in menu.locator(".lm-Menu-itemLabel").all_inner_texts()]
            page.screenshot(path=shots / "instructor-menu.png")
            browser.close()
    finally:
        lab.stop()
    print(f"\ninstructor's Nbgrader menu: {[label for label in labels if label]}")
    lowered = [label.lower() for label in labels]
    assert [tool for tool in INSTRUCTOR_TOOLS if tool.lower() not in lowered] == [], labels
    assert formgrader_status in (200, 302), formgrader_status  # served (302: to its first page)
