"""Feedback pages that tell students what failed without giving the hidden tests away.

``nbgrader generate_feedback`` renders the *autograded* notebooks, and those hold the hidden
tests (autograde restores every grade cell from the master). Out of the box the page therefore
shows the hidden tests' source, and every failing test quotes its own lines again in the
traceback (upstream nbgrader issues #917 and #1363). Adding nbgrader's ``ClearHiddenTests`` is not
enough: we measured that it removes the source but the tracebacks still print the surrounding
hidden lines.

:class:`StudentFeedback` (configured for ``GenerateFeedback`` in ``nbgrader_config.py``) does both
jobs in one pass over each notebook:

1. it removes the hidden-test regions from the cell sources (``ClearHiddenTests``' own logic);
2. it replaces every error's traceback with one line, the exception type and the message the
   test wrote for the student (the ``course.checks`` helpers word every failure that way), and
   rewrites the two errors students meet most, ``NotImplementedError`` and ``NameError``, in
   plain words;
3. it removes every line of printed output that quotes a hidden-test line (a warning quotes the
   source line that triggered it) but keeps the rest: nbgrader scores a test cell 0 when it writes
   to standard error, so the warning is the student's only clue. As a last guard, any other output
   that still contains a hidden-test line is replaced by a note.

The test suite greps every generated page for every hidden-test line (tests/test_pipeline.py).

It also makes the page safe to open. Everything in the autograded notebook except the
locked cells' sources came from the student or ran in the student's kernel, and nbgrader's
feedback template prints markdown and HTML outputs as they are: a markdown cell with
``<img src=x onerror=...>`` or ``[link](javascript:...)``, or a ``display(Javascript(...))``,
ran script in every reader's browser. So:

4. every markdown cell is rendered with nbconvert's own Markdown renderer and cleaned with
   nbconvert's sanitiser (:class:`nbconvert.preprocessors.SanitizeHTML`, bleach in nbconvert
   7.17) against an allow-list of the tags Markdown produces; the cell keeps that clean HTML as
   one HTML block, which the template's renderer passes through unchanged (rendering the clean
   text a second time could turn an escaped ``[x](javascript:...)`` back into a link);
5. outputs keep only ``text/plain``, ``image/png``, ``image/jpeg`` and cleaned ``text/html``
   (``text/markdown`` is rendered and cleaned into ``text/html`` when there is none); JavaScript,
   SVG, widget and every other type are dropped, and so are output metadata other than an
   image's numeric size (a ``filenames`` entry would point the page at any file);
6. hidden-test markers are handled only in the instructor's test cells (grade, not solution):
   a student cell that merely contains the marker text (unbalanced, in a string) is shown as it
   is, and neither fails the page nor hides anything. The markers are nbgrader's configured
   ``ClearHiddenTests.begin_test_delimeter`` / ``end_test_delimeter``.

The page's index lists every graded cell. nbgrader's template calls each one "Test cell", sixteen
identical lines; :func:`index_name` names each from its grade id and the course's part table
(``vae_grader.submissions.PARTS``), e.g. "Part 2 · sampling · self-check", and the course's template
(``templates/vae_feedback``, nbgrader's page with only the index changed; ``FEEDBACK_TEMPLATE``
selects it in ``nbgrader_config.py``) shows those names.
"""

from __future__ import annotations

import numbers
import re
from pathlib import Path

from nbconvert.exporters.exporter import ResourcesDict
from nbconvert.filters.markdown_mistune import markdown2html_mistune
from nbconvert.preprocessors.sanitize import (
    SanitizeHTML,
)  # not re-exported by nbconvert.preprocessors
from nbformat.notebooknode import NotebookNode, from_dict
from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests
from pygments.token import STANDARD_TYPES

from vae_grader.cells import Markers, grade_id, hidden_test_markers
from vae_grader.submissions import PARTS, test_cells

FEEDBACK_TEMPLATE = {
    "template_name": "vae_feedback",
    "template_file": "page.html.j2",
    "extra_template_basedirs": [
        str(Path(__file__).parents[1] / "templates"),
        # nbgrader's own template folder, which the course's template extends; nbgrader adds it
        # itself only while no extra_template_basedirs are configured.
        str(Path(utils.__file__).parent / "server_extensions" / "formgrader" / "templates"),
    ],
}
"""The ``HTMLExporter`` settings of ``nbgrader generate_feedback``: the course's page template."""


def index_name(cell_id: str | None) -> str | None:
    """The feedback index's name of a graded cell, from its grade id: "Part 2 · sampling · self-check"
    for ``test_sampling``, "... · hidden tests" for ``test_sampling_hidden``; None for any other id."""
    for number, part in enumerate(PARTS, start=1):
        visible, hidden = test_cells(part)
        if cell_id in (visible, hidden):
            title = " ".join("VAE" if word == "vae" else word for word in part.split("_"))
            check = "self-check" if cell_id == visible else "hidden tests"
            return f"Part {number} · {title} · {check}"
    return None


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CELL_LINE = re.compile(r"Cell In\[(\d+)\], line (\d+)")
_NAME_ERROR = re.compile(r"name '([^']+)' is not defined")

NOT_ATTEMPTED = "not attempted: this part still raises NotImplementedError (replace `raise NotImplementedError()` with your code)"
REDACTED = "(output removed from the feedback: it quoted the hidden tests)"
REDACTED_LINE = "(a line quoting the hidden tests was removed)"
MIN_HIDDEN_LINE = 8
"""Hidden lines shorter than this (``)``, ``])``) are too generic to count as a leak."""
HIDDEN_SOURCE_REMOVED = "# (the hidden tests of this cell are not shown)"

SAFE_OUTPUTS = frozenset({"text/plain", "image/png", "image/jpeg"})
"""Output types shown as they are: the template escapes them (text) or base64-embeds them (images)."""
MARKDOWN_TAGS = [
    "a",
    "abbr",
    "b",
    "blockquote",
    "br",
    "code",
    "dd",
    "del",
    "div",
    "dl",
    "dt",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "kbd",
    "li",
    "ol",
    "p",
    "pre",
    "s",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "ul",
]
"""What nbconvert's Markdown renderer produces, plus the tags of a pandas table; nothing that runs or styles."""
_CLASSES = frozenset({"highlight", "anchor-link", *STANDARD_TYPES.values()}) - {""}
"""The only classes kept: pygments' token classes and nbconvert's heading anchors. Other classes of the
page's stylesheet (``panel-success``, ``alert``) could dress student text up as the grader's."""
_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "ol": {"start"},
    "th": {"align", "colspan", "rowspan"},
    "td": {"align", "colspan", "rowspan"},
    **{f"h{level}": {"id"} for level in range(1, 7)},
}


def allowed_attribute(tag: str, name: str, value: str) -> bool:
    """bleach's attribute filter: a short allow-list; URLs are checked by bleach (http, https, mailto, relative)."""
    if name == "class":
        return bool(value.split()) and all(token in _CLASSES for token in value.split())
    return name in _ATTRIBUTES.get(tag, ())


def html_sanitizer(**config: object) -> SanitizeHTML:
    """nbconvert's sanitiser with this course's allow-list (``parent=`` passes nbgrader's config on)."""
    return SanitizeHTML(
        tags=MARKDOWN_TAGS,
        attributes=allowed_attribute,
        strip=True,
        strip_comments=True,
        safe_output_keys=set(SAFE_OUTPUTS),
        sanitized_output_types={"text/html"},
        **config,
    )


def safe_markdown(source: str, sanitizer: SanitizeHTML) -> str:
    """Markdown as clean HTML that renders to itself when the template renders it as Markdown again.

    The clean HTML becomes one line inside one ``<div>``: a single HTML block, which Markdown passes
    through verbatim (an HTML block ends at the first blank line; there is none). A newline in HTML
    text is the same as its character reference ``&#10;``, and bleach writes every tag on one line,
    so the page looks the same.
    """
    clean = sanitizer.sanitize_html_tags(markdown2html_mistune(source)).strip()
    return f"<div>{clean.replace(chr(13), '').replace(chr(10), '&#10;')}</div>" if clean else ""


def is_test_cell(cell: NotebookNode) -> bool:
    """The instructor's test cells: the only cells whose hidden-test markers are markers."""
    return utils.is_grade(cell) and not utils.is_solution(cell)


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def hidden_lines(source: str, begin: str | None = None, end: str | None = None) -> list[str]:
    """The stripped, non-trivial lines inside the hidden-test regions of ``source``.

    ``begin``/``end``: the markers (default: nbgrader's ``ClearHiddenTests`` settings). Marker
    lines, blank lines, comment-only lines and lines shorter than ``MIN_HIDDEN_LINE`` are left
    out: they carry nothing a student could use.
    """
    markers = hidden_test_markers() if begin is None or end is None else Markers(begin, end)
    texts = (line.strip() for line in markers.inside(source))
    return [text for text in texts if len(text) >= MIN_HIDDEN_LINE and not text.startswith("#")]


def image_sizes(metadata: object) -> dict:
    """Of an output's metadata, only the numeric width and height of its PNG or JPEG image."""
    sizes: dict = {}
    for mime in ("image/png", "image/jpeg"):
        entry = metadata.get(mime) if isinstance(metadata, dict) else None
        if isinstance(entry, dict):
            size = {
                key: entry[key]
                for key in ("width", "height")
                if isinstance(entry.get(key), numbers.Real) and not isinstance(entry.get(key), bool)
            }
            if size:
                sizes[mime] = size
    return sizes


def student_message(ename: str, evalue: str) -> str:
    """One line a student can act on, from an exception's type and message."""
    evalue = strip_ansi(evalue).strip()
    if ename == "NotImplementedError":
        return NOT_ATTEMPTED
    if ename == "NameError":
        match = _NAME_ERROR.search(evalue)
        name = f"`{match.group(1)}`" if match else "a name"
        return (
            f"NameError: {evalue} ({name} was never defined: a cell above failed or was not run; "
            "fix the first error above this cell first)"
        )
    if ename in ("KeyboardInterrupt", "CellTimeoutError"):
        # The executor words its own timeout message (grader/vae_grader/preprocessors/execute.py); keep it.
        return (
            f"stopped: {evalue}"
            if evalue
            else "stopped: the cell ran longer than the grader's time limit for one cell"
        )
    # SelfCheckFailed: a visible self-check called in a student's own cell.
    if ename in ("AssertionError", "SelfCheckFailed"):
        return f"Test failed: {evalue}" if evalue else "Test failed (the test gave no message)"
    return f"{ename}: {evalue}" if evalue else ename


class StudentFeedback(ClearHiddenTests):
    """Remove hidden tests and reduce errors to their student-facing message (see module doc)."""

    def preprocess(
        self, nb: NotebookNode, resources: ResourcesDict
    ) -> tuple[NotebookNode, ResourcesDict]:
        begin, end = self.begin_test_delimeter, self.end_test_delimeter
        tests = [cell for cell in nb.cells if is_test_cell(cell)]
        visible = "\n".join(
            cell.source for cell in nb.cells if not (is_test_cell(cell) and begin in cell.source)
        )
        visible_lines = {line.strip() for line in visible.splitlines()}
        # Lines the student also sees elsewhere (a hidden test repeating a visible check) are no secret.
        self._secrets = [
            line
            for cell in tests
            for line in hidden_lines(cell.source, begin, end)
            if line not in visible_lines
        ]
        self._sanitizer = html_sanitizer(parent=self)
        nb.metadata.pop(
            "widgets", None
        )  # widget state makes the template load and run widget JavaScript
        ids = [grade_id(cell) for cell in nb.cells if utils.is_grade(cell)]
        resources["vae_feedback"] = {
            "index": {cell_id: name for cell_id in ids if (name := index_name(cell_id))}
        }
        return super().preprocess(nb, resources)

    def preprocess_cell(
        self, cell: NotebookNode, resources: ResourcesDict, cell_index: int
    ) -> tuple[NotebookNode, ResourcesDict]:
        had_hidden = False  # marker text in a student's cell is just text: shown, never acted on
        if is_test_cell(cell):
            had_hidden = self.begin_test_delimeter in cell.source
            try:
                self._remove_hidden_test_region(cell)
            except (
                RuntimeError
            ) as exc:  # markers out of balance in the master: show none of the source
                self.log.warning(
                    "Test cell %s: %s; its source is left out of the feedback", grade_id(cell), exc
                )
                cell.source = HIDDEN_SOURCE_REMOVED
        cell.pop(
            "attachments", None
        )  # markdown attachments: the clean HTML below does not use them
        if cell.cell_type == "markdown":
            cell.source = safe_markdown(cell.source, self._sanitizer)
        elif cell.cell_type == "raw":
            cell.source = self._sanitizer.sanitize_html_tags(cell.source)
        if cell.cell_type != "code":
            return cell, resources
        outputs = []
        for output in self._safe_outputs(cell.get("outputs", [])):
            if output.get("output_type") == "stream":
                output.text = self._scrub_lines(output.get("text", ""))
            if output.get("output_type") == "error":
                output = self._shorten_error(
                    output, show_line=not had_hidden and not utils.is_grade(cell)
                )
            if self._leaks(output):
                output = from_dict(
                    {"output_type": "stream", "name": "stdout", "text": REDACTED + "\n"}
                )
            outputs.append(output)
        cell.outputs = outputs
        return cell, resources

    def _safe_outputs(self, outputs: list[NotebookNode]) -> list[NotebookNode]:
        """Outputs with only the types a page may show (module doc, point 5), through nbconvert's sanitiser."""
        kept = []
        for output in outputs:
            if output.get("output_type") in ("display_data", "execute_result"):
                data = output.setdefault("data", from_dict({}))
                markdown = data.get("text/markdown")
                if isinstance(markdown, (str, list)) and "text/html" not in data:
                    data["text/html"] = markdown2html_mistune("".join(markdown))
                for mime, value in list(data.items()):
                    if isinstance(value, list):  # nbformat allows multi-line strings as lists
                        data[mime] = (
                            "".join(value) if all(isinstance(v, str) for v in value) else ""
                        )
                self._sanitizer.sanitize_code_outputs([output])
                output.metadata = from_dict(image_sizes(output.get("metadata", {})))
                if not data:
                    continue
            elif output.get("output_type") not in ("stream", "error"):
                continue  # not an nbformat output: nothing to show
            kept.append(output)
        return kept

    @staticmethod
    def _shorten_error(output: NotebookNode, show_line: bool) -> NotebookNode:
        message = student_message(output.get("ename", "Error"), output.get("evalue", ""))
        if show_line:
            # In the student's own cells the line number helps, and the cell holds nothing hidden.
            # The first frame is this cell; the last frame of the same cell is where it went wrong.
            frames = _CELL_LINE.findall(strip_ansi("\n".join(output.get("traceback", []))))
            if frames:
                line = [number for cell, number in frames if cell == frames[0][0]][-1]
                message += f" (raised at line {line} of this cell)"
        output.traceback = [message]
        return output

    def _scrub_lines(self, text: str | list[str]) -> str:
        text = "".join(text) if isinstance(text, list) else text
        lines = text.splitlines(keepends=True)
        return "".join(
            REDACTED_LINE + ("\n" if line.endswith("\n") else "")
            if any(s in strip_ansi(line) for s in self._secrets)
            else line
            for line in lines
        )

    def _leaks(self, output: NotebookNode) -> bool:
        texts = [output.get("text", ""), output.get("evalue", ""), *output.get("traceback", [])]
        for value in output.get("data", {}).values():
            texts.append(
                value
                if isinstance(value, str)
                else "\n".join(value)
                if isinstance(value, list)
                else ""
            )
        text = strip_ansi("\n".join(t if isinstance(t, str) else "".join(t) for t in texts))
        return any(secret in text for secret in self._secrets)
