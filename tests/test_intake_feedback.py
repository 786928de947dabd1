"""Grades nobody can forge: what intake refuses, and what a feedback page may show.

Fast unit tests (no grading run, no kernel): a scratch course in ``tmp_path`` with a master notebook
and one submission folder; intake is nbgrader's own pre-convert hook (``intake_hook``) followed by
nbgrader's own copy of the submission (``BaseConverter.init_assignment``) and our reader
(``load_submission``). Feedback is ``StudentFeedback`` on small autograded-like notebooks, rendered
with the course's feedback template where the page itself is what matters.
"""

from __future__ import annotations

import os
import socket
import stat
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import nbgrader
import pytest
from nbconvert.exporters import HTMLExporter
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from nbgrader.converters import Autograde
from nbgrader.converters.base import BaseConverter
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config

from vae_grader.preprocessors.feedback import FEEDBACK_TEMPLATE, StudentFeedback
from vae_grader.preprocessors.intake import intake_hook, load_submission
from vae_grader.notes import flags_of, notes_of

MASTER_SECRET = "MASTER_SOLUTION_LINE = 42"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
"""A real 1x1 PNG, base64: a plot as the executor stores it."""


# --- a scratch course ---------------------------------------------------------------------------------


def _write_notebook(path: Path, *sources: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=[new_code_cell(s) for s in sources]), path)


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """source/vae/vae.ipynb (the master), an empty submitted/mallory/vae/ and alice's real submission."""
    _write_notebook(tmp_path / "source" / "vae" / "vae.ipynb", MASTER_SECRET)
    _write_notebook(tmp_path / "submitted" / "alice" / "vae" / "vae.ipynb", "ALICE = 1")
    (tmp_path / "submitted" / "mallory" / "vae").mkdir(parents=True)
    (tmp_path / "gradebook.db").write_text("the gradebook")
    return tmp_path


def _intake(course: Path, student: str = "mallory") -> list[str]:
    """nbgrader's notebook list for one submission, after the pre-convert hook ran on it."""
    folder = course / "submitted" / student / "vae"
    notebooks = sorted(str(p) for p in folder.glob("*.ipynb"))
    intake_hook(assignment="vae", student="*", notebooks=notebooks)
    return notebooks


def _entry(notebooks: list[str], name: str = "vae.ipynb") -> str:
    return next(p for p in notebooks if os.path.basename(p) == name)


def _note_texts(nb) -> list[str]:
    return [note["text"] for note in notes_of(nb)]


def _nbgrader_copy(course: Path, student: str = "mallory") -> Path:
    """What nbgrader 0.9.6 copies from submitted/ into autograded/ before any preprocessor runs."""
    converter = Autograde(coursedir=CourseDirectory(root=str(course)))
    BaseConverter.init_assignment(converter, "vae", student)
    return course / "autograded" / student / "vae"


# --- intake ---------------------------------------------------------------------------------------------


def test_a_notebook_that_links_to_the_master_is_graded_as_an_empty_notebook(course: Path) -> None:
    link = course / "submitted" / "mallory" / "vae" / "vae.ipynb"
    link.symlink_to("../../../source/vae/vae.ipynb")
    notebooks = _intake(course)
    nb = load_submission(_entry(notebooks))
    assert nb.cells == [], "the link's target (the master) was read"
    assert _note_texts(nb) == [
        "vae.ipynb was a symbolic link, not a file; links are not followed, so it was graded as missing."
    ]
    assert flags_of(nb) == {"*": ["the submitted notebook was a symbolic link"]}
    assert not os.path.lexists(link)
    assert MASTER_SECRET in (course / "source" / "vae" / "vae.ipynb").read_text(), (
        "the master was touched"
    )


def test_the_reader_never_follows_a_link_even_without_the_hook(course: Path) -> None:
    link = course / "submitted" / "mallory" / "vae" / "vae.ipynb"
    link.symlink_to(course / "source" / "vae" / "vae.ipynb")
    nb = load_submission(str(link))
    assert nb.cells == []
    assert _note_texts(nb) == [
        "vae.ipynb was a symbolic link, not a file; links are not followed, so it was graded as missing."
    ]


def test_a_notebook_hard_linked_to_the_master_is_not_read(course: Path) -> None:
    os.link(
        course / "source" / "vae" / "vae.ipynb",
        course / "submitted" / "mallory" / "vae" / "vae.ipynb",
    )
    nb = load_submission(_entry(_intake(course)))
    assert nb.cells == []
    assert _note_texts(nb) == [
        "vae.ipynb was a hard link, not a file; a file with a second name elsewhere is not "
        "read, so it was graded as missing."
    ]
    assert MASTER_SECRET in (course / "source" / "vae" / "vae.ipynb").read_text()


def test_a_submission_folder_that_is_a_link_to_another_student_is_not_read(course: Path) -> None:
    mallory = course / "submitted" / "mallory"
    (mallory / "vae").rmdir()
    mallory.rmdir()
    mallory.symlink_to(course / "submitted" / "alice")
    nb = load_submission(_entry(_intake(course)))
    assert nb.cells == [], "alice's notebook was graded as mallory's"
    assert _note_texts(nb) == [
        "Your submission folder was a symbolic link, not a folder; links are not followed, "
        "so nothing in it was read and it was graded as missing."
    ]
    assert not os.path.lexists(mallory)
    assert "ALICE" in (course / "submitted" / "alice" / "vae" / "vae.ipynb").read_text(), (
        "alice's files were touched"
    )


def test_links_pipes_sockets_and_hard_links_are_removed_before_nbgrader_copies(
    course: Path,
) -> None:
    folder = course / "submitted" / "mallory" / "vae"
    _write_notebook(folder / "vae.ipynb", "x = 1")
    (folder / "helper.py").write_text("HELPER = 1\n")  # a plain file: copied as before
    (folder / "notes.txt").symlink_to(course / "gradebook.db")  # the gradebook
    (folder / "sub").mkdir()
    (folder / "sub" / "key").symlink_to("/etc/hostname")  # a system file, one level down
    (folder / "others").symlink_to(course / "submitted" / "alice" / "vae")  # a folder link
    os.mkfifo(folder / "pipe")  # blocks or breaks shutil.copy
    os.link(course / "gradebook.db", folder / "copy.db")  # a hard link to a file outside
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(folder / "sock"))
    try:
        os.mknod(folder / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        device = True
    except PermissionError:  # not root: the other kinds still cover the check
        device = False

    notebooks = _intake(course)
    copied = _nbgrader_copy(course)

    assert sorted(p.name for p in copied.rglob("*")) == ["helper.py"]
    assert sorted(p.name for p in folder.rglob("*")) == ["helper.py", "sub", "vae.ipynb"]
    nb = load_submission(_entry(notebooks))
    assert [c.source for c in nb.cells] == ["x = 1"]
    texts = _note_texts(nb)
    expected = [
        "copy.db was a hard link, not a file; a file with a second name elsewhere is not read, so it was left out of grading.",
        "notes.txt was a symbolic link, not a file; links are not followed, so it was left out of grading.",
        "others was a symbolic link, not a file; links are not followed, so it was left out of grading.",
        "pipe was a named pipe, not a file; only plain files are read, so it was left out of grading.",
        "sock was a socket, not a file; only plain files are read, so it was left out of grading.",
        "sub/key was a symbolic link, not a file; links are not followed, so it was left out of grading.",
    ]
    if device:
        expected.insert(
            2,
            "null was a device file, not a file; only plain files are read, so it was left out of grading.",
        )
    assert texts == expected
    assert flags_of(nb) == {}, "refused side files alone do not send the notebook to manual grading"
    assert (course / "gradebook.db").read_text() == "the gradebook"
    assert "ALICE" in (course / "submitted" / "alice" / "vae" / "vae.ipynb").read_text()


def test_a_refused_notebook_name_does_not_hide_the_real_notebook_under_another_name(
    course: Path,
) -> None:
    folder = course / "submitted" / "mallory" / "vae"
    (folder / "vae.ipynb").symlink_to(course / "source" / "vae" / "vae.ipynb")
    _write_notebook(folder / "VAE (1).ipynb", "mine = 1")
    notebooks = _intake(course)
    assert [os.path.basename(p) for p in notebooks] == ["vae.ipynb"]
    nb = load_submission(notebooks[0])
    assert [c.source for c in nb.cells] == ["mine = 1"]
    assert _note_texts(nb) == [
        "vae.ipynb was a symbolic link, not a file; links are not followed, so it was graded as missing.",
        "Your notebook was submitted as VAE (1).ipynb, not vae.ipynb; it was graded as vae.ipynb.",
    ]


# --- feedback pages ---------------------------------------------------------------------------------


def _test_cell(source: str, grade_id: str = "test_encoder") -> nbformat.NotebookNode:
    return new_code_cell(
        source,
        metadata={
            "nbgrader": {
                "grade": True,
                "solution": False,
                "locked": True,
                "grade_id": grade_id,
                "points": 2,
                "score": 0,
                "schema_version": 3,
            }
        },
    )


def _solution_cell(source: str, outputs: list) -> nbformat.NotebookNode:
    return new_code_cell(
        source,
        outputs=outputs,
        metadata={
            "nbgrader": {
                "grade": False,
                "solution": True,
                "locked": False,
                "grade_id": "encoder",
                "schema_version": 3,
            }
        },
    )


def _hostile_notebook() -> nbformat.NotebookNode:
    """An autograded-like notebook whose student content tries every way to run script in the page."""
    return new_notebook(
        cells=[
            new_markdown_cell(
                "## My notes\n\n| epoch | loss |\n|---|---|\n| 1 | 0.25 |\n\n"
                "<img src=\"x\" onerror=\"alert('md-img')\"> [click](javascript:alert('md-link'))\n\n"
                "<script>alert('md-script')</script>\n\n<div>\n\n\\[escaped](javascript:alert('md-2nd'))\n\n</div>"
            ),
            _solution_cell(
                "encoder = build()",
                [
                    new_output("stream", name="stdout", text="epoch 1: loss 0.25\n"),
                    new_output(
                        "display_data",
                        data={"image/png": PNG, "text/plain": "<Figure size 640x480>"},
                        metadata={
                            "image/png": {"width": 320},
                            "filenames": {"image/png": "../../gradebook.db"},
                        },
                    ),
                    new_output(
                        "display_data",
                        data={"application/javascript": "alert('js-output')", "text/plain": "<JS>"},
                    ),
                    new_output(
                        "display_data",
                        data={
                            "text/html": "<b onmouseover=alert('html-attr')>bold</b>"
                            "<script>alert('html-script')</script>",
                            "image/svg+xml": "<svg onload=alert('svg')></svg>",
                            "application/vnd.jupyter.widget-view+json": {"model_id": "x"},
                            "text/plain": "<HTML>",
                        },
                    ),
                    new_output(
                        "display_data",
                        data={
                            "text/markdown": "[md-out](javascript:alert('md-output'))",
                            "text/plain": "<Markdown>",
                        },
                    ),
                ],
            ),
            _test_cell(
                "assert encoder is not None\n### BEGIN HIDDEN TESTS\nassert hidden_check(encoder) == 1\n### END HIDDEN TESTS"
            ),
        ]
    )


class _PageScan(HTMLParser):
    """Every attribute and every script body of a page, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.attributes: list[tuple[str, str, str]] = []
        self.images: list[dict[str, str]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.attributes += [(tag, name, value or "") for name, value in attrs]
        if tag == "img":
            self.images.append({name: value or "" for name, value in attrs})
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def _feedback_page(nb: nbformat.NotebookNode) -> str:
    """The course's feedback template (nbgrader's, with the index naming each part), as
    ``nbgrader generate_feedback`` configures it from nbgrader_config.py."""
    base = Path(nbgrader.__file__).parent / "server_extensions" / "formgrader"
    exporter = HTMLExporter(
        **FEEDBACK_TEMPLATE,
        extra_template_paths=[str(base / "static" / "node_modules" / "bootstrap" / "dist" / "css")],
    )
    page, _ = exporter.from_notebook_node(
        nb, resources={"nbgrader": {"score": 0, "max_score": 2, "late_penalty": 0}}
    )
    return page


def test_feedback_pages_run_no_student_script_and_keep_legit_content() -> None:
    nb, _ = StudentFeedback().preprocess(_hostile_notebook(), {})
    page = _feedback_page(nb)
    scan = _PageScan()
    scan.feed(page)
    handlers = [(tag, name) for tag, name, _ in scan.attributes if name.startswith("on")]
    assert handlers == [], f"event handler attributes reached the page: {handlers}"
    script_urls = [
        (tag, name, value)
        for tag, name, value in scan.attributes
        if name in ("href", "src", "action", "formaction")
        and value.strip().lower().startswith(("javascript:", "vbscript:"))
    ]
    assert script_urls == [], f"script URLs reached the page: {script_urls}"
    assert [s for s in scan.scripts if "alert(" in s] == [], (
        "a student's script reached a <script> element"
    )
    assert "../../gradebook.db" not in page, (
        "an output's filenames metadata pointed the page at a file"
    )
    outputs = nb.cells[1].outputs
    kinds = sorted({mime for output in outputs for mime in output.get("data", {})})
    assert kinds == ["image/png", "text/html", "text/plain"]
    # What a student legitimately shows survives: the table, the plot, the printed text.
    assert "<th>epoch</th>" in page and "<td>0.25</td>" in page
    assert {"src": f"data:image/png;base64,{PNG}", "width": "320"}.items() <= scan.images[
        -1
    ].items()
    assert "epoch 1: loss 0.25" in page
    assert "<b>bold</b>" in page


def test_a_marker_in_a_student_cell_neither_breaks_feedback_nor_hides_anything() -> None:
    student = (
        "MARKER = '### BEGIN HIDDEN TESTS'   # unbalanced, in a string\nprint(MARKER)\n"
        "### BEGIN HIDDEN TESTS\nmy_own_check = 3\n### END HIDDEN TESTS"
    )
    nb = new_notebook(
        cells=[
            _solution_cell(
                student,
                [
                    new_output(
                        "stream", name="stdout", text="### BEGIN HIDDEN TESTS\nmy_own_check = 3\n"
                    )
                ],
            ),
            new_code_cell("# END HIDDEN TESTS without a beginning", outputs=[]),
            new_markdown_cell("I wrote `### BEGIN HIDDEN TESTS` here."),
            _test_cell(
                "assert MARKER\n### BEGIN HIDDEN TESTS\nassert hidden_check(MARKER) == 1\n### END HIDDEN TESTS"
            ),
        ]
    )
    nb, _ = StudentFeedback().preprocess(nb, {})
    assert nb.cells[0].source == student
    assert nb.cells[0].outputs[0].text == "### BEGIN HIDDEN TESTS\nmy_own_check = 3\n"
    assert nb.cells[1].source == "# END HIDDEN TESTS without a beginning"
    assert "### BEGIN HIDDEN TESTS" in nb.cells[2].source
    assert nb.cells[3].source == "assert MARKER", "the instructor's hidden test was shown"


def test_hidden_test_markers_come_from_nbgrader_configuration() -> None:
    config = Config()
    config.ClearHiddenTests.begin_test_delimeter = "BEGIN SECRET"
    config.ClearHiddenTests.end_test_delimeter = "END SECRET"
    nb = new_notebook(
        cells=[
            _solution_cell("s = '### BEGIN SECRET'", []),
            _test_cell(
                "assert s\n### BEGIN SECRET\nassert hidden_check(s)\n### END SECRET\n### BEGIN HIDDEN TESTS"
            ),
        ]
    )
    nb, _ = StudentFeedback(config=config).preprocess(nb, {})
    assert nb.cells[0].source == "s = '### BEGIN SECRET'"
    assert nb.cells[1].source == "assert s\n### BEGIN HIDDEN TESTS"


def test_a_test_cell_with_broken_markers_shows_none_of_its_source() -> None:
    nb = new_notebook(
        cells=[
            _test_cell(
                "assert ok\n### BEGIN HIDDEN TESTS\nassert hidden_check() == 1  # no END marker"
            )
        ]
    )
    nb, _ = StudentFeedback().preprocess(nb, {})
    assert "hidden_check" not in nb.cells[0].source and nb.cells[0].source.startswith("# ")
