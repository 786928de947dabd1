"""The adversarial corpus: submissions that try to break, fool or escape the grader (issue 5).

Each case is a :class:`~vae_grader.submission_kit.Submission` built from the release and the
master like the demo set, with

* ``expected``: the fair grade per graded cell, reasoned from the tests (cells not listed score 0;
  ``lost`` says why each of those scores nothing). The fair grade is what the submission really
  earns: never more, and a crash, timeout or trick in one cell costs only what depends on it;
* ``expected_feedback``: phrases the student's feedback page must contain, i.e. the message that
  tells them what happened;
* :data:`FLAGGED`: the cases nbgrader must leave flagged for manual grading (the grader could not
  grade them as far as the tests go, so it says so rather than silently scoring 0).

Grading time is what limits the corpus (each case is a separate ``nbgrader autograde`` with its
own kernel), so the cases are built on :data:`FAST` (every part that needs no training, filled in
from the master) where they must show that a crash or trick leaves the other parts' points
intact, and on :data:`ENCODER` (part 1 only) where one part is enough; the parts left out are
unanswered and score 0. Only ``crash_after_training`` trains (twice: the crash after training
forces a replay). :data:`ESCAPES` lists the cases that attack the machine rather than the grade
(their cells print one ``ESCAPE-...`` line per attempt), which tests/test_adversarial.py checks.

The tests of this corpus live in tests/test_adversarial.py; ``python -m vae_grader.demo``
grades it together with the demo set.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping

import nbformat
from nbformat.notebooknode import NotebookNode

from vae_grader.paths import MASTER
from vae_grader.submission_kit import PARTS, Submission, cell_by_id, filled, full_points, test_cells

_MASTER = nbformat.read(MASTER, as_version=4)

FAST = ("encoder", "sampling", "decoder", "loss_layer", "vae_model", "data")
"""The parts whose tests pass without training (vae_model and the hidden manifold test use stand-ins)."""
ENCODER = ("encoder",)

NOT_ATTEMPTED = "not attempted: the part still raises NotImplementedError"
Builder = Callable[[NotebookNode, NotebookNode], NotebookNode | bytes]


# --- building blocks ---------------------------------------------------------------------------------


def _index(nb: NotebookNode, grade_id: str) -> int:
    for i, cell in enumerate(nb.cells):
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return i
    raise KeyError(grade_id)


def then(base: Builder, *steps: Callable[[NotebookNode], None]) -> Builder:
    """``base``'s notebook, changed in place by each step in turn."""

    def build(master: NotebookNode, release: NotebookNode) -> NotebookNode:
        nb = base(master, release)
        assert isinstance(nb, NotebookNode)
        nb = copy.deepcopy(nb)
        for step in steps:
            step(nb)
        return nb

    return build


def _new_cell(source: str, cell_id: str) -> NotebookNode:
    """A plain code cell with a fixed id (nbformat would draw a random one), so builds are reproducible."""
    cell = nbformat.v4.new_code_cell(source)
    cell.id = cell_id
    return cell


def add_cell_after(grade_id: str, source: str) -> Callable[[NotebookNode], None]:
    """A step: a plain student cell (no nbgrader metadata) right after the cell ``grade_id``."""

    def step(nb: NotebookNode) -> None:
        nb.cells.insert(_index(nb, grade_id) + 1, _new_cell(source, f"added-after-{grade_id}-{len(nb.cells)}"))

    return step


def delete_cells(*grade_ids: str) -> Callable[[NotebookNode], None]:
    def step(nb: NotebookNode) -> None:
        nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in grade_ids]

    return step


def duplicate_cell(grade_id: str) -> Callable[[NotebookNode], None]:
    """Copy-paste a cell, metadata included, right below itself (what Jupyter's C/V does)."""

    def step(nb: NotebookNode) -> None:
        i = _index(nb, grade_id)
        duplicate = copy.deepcopy(nb.cells[i])
        duplicate.id = f"{duplicate.get('id', grade_id)}-copy"  # Jupyter gives a pasted cell a new id
        nb.cells.insert(i + 1, duplicate)

    return step


def strip_metadata(grade_id: str) -> Callable[[NotebookNode], None]:
    """The cell re-typed into a fresh cell: same code, no nbgrader metadata."""

    def step(nb: NotebookNode) -> None:
        cell = nb.cells[_index(nb, grade_id)]
        nb.cells[_index(nb, grade_id)] = _new_cell(cell.source, f"retyped-{grade_id}")

    return step


def move_before(grade_id: str, before: str) -> Callable[[NotebookNode], None]:
    def step(nb: NotebookNode) -> None:
        cell = nb.cells.pop(_index(nb, grade_id))
        nb.cells.insert(_index(nb, before), cell)

    return step


def set_metadata(grade_id: str, **changes: object) -> Callable[[NotebookNode], None]:
    def step(nb: NotebookNode) -> None:
        cell_by_id(nb, grade_id).metadata["nbgrader"].update(changes)

    return step


def swap_ids(first: str, second: str) -> Callable[[NotebookNode], None]:
    def step(nb: NotebookNode) -> None:
        a, b = cell_by_id(nb, first), cell_by_id(nb, second)
        a.metadata["nbgrader"]["grade_id"], b.metadata["nbgrader"]["grade_id"] = second, first

    return step


def set_source(grade_id: str, source: str) -> Callable[[NotebookNode], None]:
    def step(nb: NotebookNode) -> None:
        cell_by_id(nb, grade_id).source = source

    return step


def every_solution_raises(master: NotebookNode, release: NotebookNode) -> NotebookNode:
    nb = copy.deepcopy(release)
    for part in PARTS:
        cell_by_id(nb, part).source = f'raise RuntimeError("part {part} is broken on purpose")'
    return nb


def raw_bytes(data: bytes) -> Builder:
    return lambda master, release: data


def empty_notebook(master: NotebookNode, release: NotebookNode) -> NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = copy.deepcopy(release.metadata)
    return nb


def _lost(parts: Iterable[str], lost: Mapping[str, str] | None) -> dict[str, str]:
    """Reasons for every graded cell that scores nothing: unattempted parts plus ``lost``."""
    parts = tuple(parts)
    reasons = {cell: NOT_ATTEMPTED for part in PARTS if part not in parts for cell in test_cells(part)}
    reasons.update(lost or {})
    return reasons


def case(student: str, description: str, build: Builder, parts: Iterable[str], feedback: tuple[str, ...],
         lost: Mapping[str, str] | None = None, filename: str = "vae.ipynb") -> Submission:
    """A corpus entry: full points for the cells of ``parts`` except those in ``lost``."""
    parts = tuple(parts)
    reasons = _lost(parts, lost)
    unknown = set(reasons) - {cell for part in PARTS for cell in test_cells(part)}
    if unknown:
        raise ValueError(f"{student}: unknown graded cells {sorted(unknown)}")
    return Submission(student=student, description=description, build=build,
                      expected=full_points(_MASTER, parts, minus=reasons), filename=filename,
                      expected_feedback=feedback, lost=reasons)


# --- the attacks that target the machine, not the grade ------------------------------------------------
# Each attempt prints "ESCAPE-<what>: blocked (<error>)" or "ESCAPE-<what>: SUCCEEDED"; the test
# asserts that no SUCCEEDED line exists and that the files are intact.

_ATTEMPT = '''
import os
def attempt(what, action):
    try:
        result = action()
    except Exception as exc:
        print(f"ESCAPE-{what}: blocked ({type(exc).__name__}: {exc})")
    else:
        print(f"ESCAPE-{what}: SUCCEEDED ({str(result)[:60]!r})")
'''

READ_SOLUTIONS = _ATTEMPT + '''
import course, glob
course_root = os.path.abspath(os.path.join(os.getcwd(), "..", "..", ".."))
repository = os.path.dirname(os.path.dirname(course.__file__))
attempt("read-source", lambda: open(os.path.join(course_root, "source", "vae", "vae.ipynb")).read())
attempt("read-repository-source", lambda: open(os.path.join(repository, "source", "vae", "vae.ipynb")).read())
attempt("read-other-student", lambda: open(os.path.join(course_root, "submitted", "complete", "vae", "vae.ipynb")).read())
attempt("list-submissions", lambda: os.listdir(os.path.join(course_root, "submitted")) or 1 / 0)
attempt("read-own-autograded-copy", lambda: open("vae.ipynb").read())
'''

WRITE_GRADEBOOK = _ATTEMPT + '''
import sqlite3
course_root = os.path.abspath(os.path.join(os.getcwd(), "..", "..", ".."))
def raise_scores():
    db = sqlite3.connect("file:" + os.path.join(course_root, "gradebook.db") + "?mode=rw", uri=True)
    db.execute("UPDATE grade SET auto_score = 99")
    db.commit()
    return "scores raised"
attempt("write-gradebook", raise_scores)
attempt("append-gradebook", lambda: open(os.path.join(course_root, "gradebook.db"), "ab").write(b"x"))
attempt("overwrite-other-student", lambda: open(os.path.join(course_root, "submitted", "complete", "vae", "vae.ipynb"), "w").write("{}"))
attempt("overwrite-other-autograded", lambda: open(os.path.join(course_root, "autograded", "complete", "vae", "vae.ipynb"), "w").write("{}"))
attempt("write-course-package", lambda: open(os.path.join(os.path.dirname(course.__file__), "checks.py"), "a").write("#"))
'''

NETWORK = _ATTEMPT + '''
import socket
attempt("network-ip", lambda: socket.create_connection(("1.1.1.1", 80), timeout=3))
attempt("network-dns", lambda: socket.getaddrinfo("pypi.org", 443))
'''

ESCAPES = ("escape_attempts",)
"""Cases that attack the machine: each prints ESCAPE-... lines that must all say blocked."""


# --- the corpus --------------------------------------------------------------------------------------

_FAST = filled(FAST)
_ENCODER = filled(ENCODER)


SUBMISSIONS: list[Submission] = [
    case(
        "syntax_error", "a syntax error in the decoder cell (an unclosed parenthesis)",
        filled(FAST, {"decoder": ("x = layers.Reshape(shape_before_flattening)(x)", "x = layers.Reshape(shape_before_flattening(x)")}),
        FAST, ("SyntaxError",),
        lost={"test_decoder": "the decoder cell never ran: build_decoder is not defined",
              "test_decoder_hidden": "the decoder cell never ran: build_decoder is not defined"},
    ),
    case(
        "name_error", "a typo in the sampling layer (z_logvar for z_log_var): NameError when the layer is called",
        filled(FAST, {"sampling": ("ops.exp(0.5 * z_log_var)", "ops.exp(0.5 * z_logvar)")}),
        FAST, ("NameError",),
        lost={"test_sampling": "Sampling raises NameError", "test_sampling_hidden": "Sampling raises NameError",
              "test_vae_model": "build_vae calls the broken Sampling layer",
              "test_vae_model_hidden": "build_vae calls the broken Sampling layer"},
    ),
    case(
        "error_in_every_cell", "every solution cell replaced by a raise: nothing can pass",
        every_solution_raises, (), ("RuntimeError",),
    ),
    case(
        "infinite_loop_cell", "the encoder cell ends in `while True: pass` after defining everything",
        filled(ENCODER, {"encoder": ("encoder = build_encoder()\n", "encoder = build_encoder()\nwhile True:\n    pass\n")}),
        ENCODER, ("CellTimeoutError: the cell encoder ran longer than",),
    ),
    case(
        "loop_in_tested_function",
        "build_encoder loops forever, ignoring interrupts, when called with latent_dim=3 (only the visible test does)",
        filled(ENCODER, {"encoder": (
            '    image = keras.Input(shape=(28, 28, 1), name="image")',
            '    while latent_dim == 3:\n'
            '        try:\n'
            '            __import__("time").sleep(0.2)\n'
            '        except KeyboardInterrupt:\n'
            '            pass\n'
            '    image = keras.Input(shape=(28, 28, 1), name="image")')}),
        ENCODER, ("CellTimeoutError: the cell test_encoder ran longer than", "did not stop when interrupted"),
        lost={"test_encoder": "build_encoder(3) never returns: the test is stopped at the time limit"},
    ),
    case(
        "memory_bomb", "a cell that asks for 12 GiB at once",
        then(_ENCODER, add_cell_after("test_encoder_hidden", "import numpy as np\nballast = np.ones(12 * 2**30 // 8)\nprint(ballast.sum())")),
        ENCODER, ("MemoryError",),
    ),
    case(
        "fork_bomb", "a cell whose children fork until the process limit, and keep trying",
        then(_ENCODER, add_cell_after("test_encoder_hidden", (
            "import os, time\nforked = 0\nwhile True:\n    try:\n        pid = os.fork()\n"
            "    except OSError as exc:\n        print(f'fork failed after {forked}: {exc}')\n        break\n"
            "    if pid == 0:\n        while True:\n            try:\n                os.fork()\n"
            "            except OSError:\n                time.sleep(0.05)\n    forked += 1"))),
        ENCODER, ("StrayProcesses",),
    ),
    case(
        "os_exit", "os._exit(1) right after the decoder cell: the tests after it need the replayed state",
        then(_FAST, add_cell_after("decoder", "import os\nos._exit(1)")),
        FAST, ("KernelDied: your cell that starts with", "stopped the kernel (the Python process exited with code 1)"),
    ),
    case(
        "crash_after_training",
        "the complete notebook with os._exit(1) right after training: the manifold tests need the trained decoder back",
        then(filled(PARTS), add_cell_after("test_training_hidden", "import os\nos._exit(1)")),
        PARTS, ("KernelDied",),
    ),
    case(
        "sys_exit", "sys.exit() in a cell of its own",
        then(_ENCODER, add_cell_after("test_encoder_hidden", "import sys\nsys.exit('done for today')")),
        ENCODER, ("SystemExit",),
    ),
    case(
        "kill_parent", "a cell that kills the kernel's parent process, then one that kills its own process group",
        then(_FAST, add_cell_after("test_sampling_hidden", "import os, signal\nos.killpg(0, signal.SIGKILL)"),
             add_cell_after("test_sampling_hidden", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)")),
        FAST, ("calls os.kill()", "calls os.killpg()", "KernelDied"),
    ),
    case(
        "huge_output", "the encoder cell prints 40 MB",
        filled(ENCODER, {"encoder": ("encoder = build_encoder()\n",
                                     "encoder = build_encoder()\nfor i in range(40):\n    print('spam, spam, eggs and spam\\n' * 40_000)\n")}),
        ENCODER, ("output truncated by the grader",),
    ),
    case(
        "deleted_test_cells", "two test cells deleted (a visible and a hidden one)",
        then(_FAST, delete_cells("test_encoder_hidden", "test_decoder")),
        FAST, ("were put back and graded",),
    ),
    case(
        "duplicated_cells", "the encoder cell and a test cell copy-pasted with their metadata (the copies edited)",
        then(_FAST, duplicate_cell("encoder"), duplicate_cell("test_sampling")),
        FAST, ("more than one encoder cell", "appeared 2 times"),
    ),
    case(
        "retyped_cells", "the sampling cell and a test cell re-typed into fresh cells (no metadata)",
        then(_FAST, strip_metadata("sampling"), strip_metadata("test_encoder")),
        FAST, ("had lost its grading tag",),
    ),
    case(
        "reordered_cells", "the decoder cell dragged to the top, a test above the cell it tests",
        then(_FAST, move_before("decoder", "setup"), move_before("test_loss_layer", "loss_layer")),
        FAST, ("out of order",),
    ),
    case(
        "tampered_metadata",
        "points raised to 100, grade flags flipped, and the grade_ids of two solution cells swapped",
        then(_FAST, set_metadata("test_encoder", points=100), set_metadata("test_sampling_hidden", grade=False),
             set_metadata("data", grade=True, points=50), swap_ids("decoder", "loss_layer")),
        FAST, ("graded with the original metadata", "recognised by its content"),
    ),
    case(
        "edited_test_cells", "the locked decoder tests replaced by prints that claim success",
        then(_ENCODER, set_source("test_decoder", 'print("Part 3 self-check passed.")'),
             set_source("test_decoder_hidden", "pass")),
        ENCODER, ("had been edited",),
    ),
    case(
        "patch_helpers",
        "a wrong sampler (exp(z_log_var)) plus a cell that disables checks.expect_close and numpy.testing.assert_allclose",
        then(filled(FAST, {"sampling": ("ops.exp(0.5 * z_log_var)", "ops.exp(z_log_var)")}),
             add_cell_after("sampling", "checks.expect_close = lambda *args, **kwargs: None\nimport numpy.testing\n"
                                        "numpy.testing.assert_allclose = lambda *args, **kwargs: None")),
        FAST, ("GradingIntegrityError", "course.checks.expect_close", "numpy.testing.assert_allclose"),
        lost={"test_sampling_hidden": "the variance test fails (exp(z_log_var) as the s.d.); the patch that hid it was not counted"},
    ),
    case(
        "patch_course_package",
        "untrained model plus a cell that makes course.quality.reconstruction_report report a perfect model",
        then(_FAST, add_cell_after("data", (
            "import course.quality, types\n"
            "course.quality.reconstruction_report = lambda *a, **k: types.SimpleNamespace(ratio=0.1, top5=0.9)"))),
        FAST, ("GradingIntegrityError", "course.quality.reconstruction_report"),
    ),
    case(
        "escape_attempts",
        "a cell that tries to read the solutions and another student's notebook, raise its scores in the gradebook, "
        "overwrite another student's files and the course package, and reach the network",
        then(_ENCODER, add_cell_after("test_encoder_hidden", READ_SOLUTIONS + WRITE_GRADEBOOK + NETWORK)),
        ENCODER, ("ESCAPE-read-source: blocked", "ESCAPE-read-other-student: blocked", "ESCAPE-write-gradebook: blocked",
                  "ESCAPE-overwrite-other-student: blocked", "ESCAPE-network-ip: blocked"),
    ),
    case(
        "not_json", "a file that is not JSON (a truncated save)",
        raw_bytes(b'{\n "cells": [\n  {\n   "cell_type": "code",\n   "source": ["def build_encoder('), (),
        ("could not be read as a notebook",),
    ),
    case(
        "empty_notebook", "a valid notebook with no cells", empty_notebook, (),
        ("contained none of the assignment",),
    ),
    case(
        "wrong_filename", "the complete fast parts, submitted as 'VAE (1).ipynb'", _FAST, FAST,
        ("graded as vae.ipynb",), filename="VAE (1).ipynb",
    ),
]

FLAGGED = {"not_json", "empty_notebook"}
"""Cases nbgrader must leave marked as needing manual grading (with the reason in the feedback)."""
