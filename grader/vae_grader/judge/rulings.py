"""The judge: every test cell's score, computed outside the student's kernel.

A submission controls the kernel that runs it: it can rewrite replies, replace functions, install
input transformers, read its own history. So during ``nbgrader autograde`` no test cell is run in
that kernel. For each test cell (visible self-check or hidden test, by ``grade_id``) the executor
sends a *probe* (:func:`probe_code`): code that calls the student's functions on inputs the grader
chose and hands back data (``course.probing``). The verdict on that data runs here, in the grader's
process, where no student code runs (:func:`verdict_outputs`), and becomes the cell's outputs the
way nbgrader reads them (``utils.determine_grade``): printed text for full marks, a number for
partial credit, an error for none. ``SaveAutoGrades``, the gradebook, ``generate_feedback`` and
``export`` work unchanged.

What the kernel sees: the probe code (which inputs are used), never a hidden test's source or an
expected value. What it can do: hand back any data it likes, which then has to pass the checks
against references computed here; a probe that returns nothing readable scores 0.
"""

from __future__ import annotations

import base64
import inspect
import math
import secrets
from dataclasses import dataclass, replace

from nbformat.notebooknode import NotebookNode, from_dict

from course import probing, selfcheck
from course.checks import Outcome
from vae_grader.judge import hidden
from vae_grader.judge.hidden import inputs as probe_inputs
from vae_grader.judge.hidden.part import HiddenPart
from vae_grader.judge.hidden.training import mnist

POINTS_DIGITS = 6
"""Points are rounded once, where a verdict is reached, to this many decimals; the cell's partial score and the
executor's record of the verdict are then the same number (nbgrader reads the cell's text as a float)."""
MAX_PROBE_BYTES = 64 * 2**20
"""Largest probe answer read (base64); the largest real one, the trained encoder and decoder, is ~3 MB."""


@dataclass(frozen=True)
class Judged:
    """What the judge needs to know of one test cell."""

    grade_id: str
    part: int
    hidden: bool

    @property
    def kind(self) -> str:
        return "hidden tests" if self.hidden else "self-check"


def judged(grade_id: str | None) -> Judged | None:
    """The test cell ``grade_id`` if the judge scores it, else None."""
    if grade_id in selfcheck.PROBES:
        return Judged(grade_id, selfcheck.PROBES[grade_id].part, False)
    if grade_id in hidden.PARTS:
        return Judged(grade_id, hidden.PARTS[grade_id].part, True)
    return None


def _sent_source(spec: HiddenPart) -> str:
    """What the kernel receives of a hidden part's module: its probe and the helpers it declares, nothing else."""
    return "\n\n".join(inspect.getsource(fn) for fn in (*spec.helpers, spec.probe))


PROBE_INPUTS_SOURCE = inspect.getsource(probe_inputs)
PROBE_SOURCES = {grade_id: _sent_source(spec) for grade_id, spec in hidden.PARTS.items()}
"""The sources sent for hidden probes, read once with the modules they belong to: the code sent to the kernel
always matches the tables this process loaded, even if the files on disk change while a class is graded."""


def new_salt() -> int:
    """Fresh inputs for the salted hidden checks, unknown to the kernel until the probe arrives."""
    return secrets.randbelow(2**31)


def probe_code(test: Judged, salt: int = 0) -> str:
    """The code sent to the student's kernel for ``test``: it only computes and emits data."""
    if test.hidden:
        spec = hidden.PARTS[test.grade_id]
        source = (
            f"{PROBE_INPUTS_SOURCE}\nSALT = {int(salt)}\n\n{PROBE_SOURCES[test.grade_id]}\n\n"
            "from course.selfcheck import run_probe as _run_probe\n"
            "from course.selfcheck.probe import Probe as _Probe\n"
            f"_probe = _Probe({spec.part}, {spec.names!r}, {spec.probe.__name__}, None)\n"
            "probing.emit(_run_probe(_probe, user_ns))\n"
        )
    else:
        source = (
            "from course import probing, selfcheck\n"
            f"probing.emit(selfcheck.run_probe(selfcheck.PROBES[{test.grade_id!r}], user_ns))\n"
        )
    return (
        f"exec(compile({source!r}, '<grader probe {test.grade_id}>', 'exec'), "
        "{'__name__': 'grader_probe', 'user_ns': get_ipython().user_ns})"
    )


def answer_bytes(outputs: list[NotebookNode]) -> tuple[bytes | None, str | None]:
    """The probe's answer among a probe's outputs, still packed, or None and why there is none.

    Only the envelope is read here (one answer, its size, base64): unpacking and judging what it
    holds happens in the confined verdict process (``vae_grader.judge.confined``)."""
    blobs = [
        o
        for o in outputs
        if o.get("output_type") in ("display_data", "execute_result")
        and probing.MIME in o.get("data", {})
    ]
    if len(blobs) > 1:
        return (
            None,
            "your notebook answered the grader's request more than once, so no answer was used",
        )
    if not blobs:
        errors = [o for o in outputs if o.get("output_type") == "error"]
        if errors:
            return None, (
                f"the grader's request failed in your notebook's kernel ({errors[0].get('ename')}: "
                f"{str(errors[0].get('evalue', ''))[:200]}); did a cell replace course, keras or numpy?"
            )
        return None, "your notebook's kernel gave the grader no answer"
    text = blobs[0]["data"][probing.MIME]
    if not isinstance(text, str) or len(text) > MAX_PROBE_BYTES:
        return None, "your notebook's answer to the grader was not readable (too large or not text)"
    try:
        return base64.b64decode(text, validate=True), None
    except (ValueError, TypeError):
        return None, "your notebook's answer to the grader was not readable (not base64)"


def unpacked(blob: bytes) -> tuple[dict | None, str | None]:
    """The probe data in a packed answer, or None and why it cannot be read."""
    try:
        return probing.unpack(blob), None
    except (Exception, MemoryError) as exc:  # whatever a forged archive makes the reader raise
        return None, f"your notebook's answer to the grader was not readable ({type(exc).__name__})"


def answer(outputs: list[NotebookNode]) -> tuple[dict | None, str | None]:
    """The probe data among a probe's outputs, or None and why there is none (envelope and content)."""
    blob, problem = answer_bytes(outputs)
    return (None, problem) if blob is None else unpacked(blob)


def reads_mnist(test: Judged) -> bool:
    """Whether ``test``'s verdict compares with MNIST, read by the grader itself."""
    if test.hidden:
        return hidden.PARTS[test.grade_id].reads_mnist
    return selfcheck.PROBES[test.grade_id].reads_mnist


class GraderError(RuntimeError):
    """Something the grader needs is missing (not the student's fault): the cell is flagged, not zeroed."""


def verdict(test: Judged, data: dict, salt: int = 0) -> Outcome:
    if reads_mnist(test):
        try:
            mnist()
        except Exception as exc:  # MnistDataError and whatever a broken file raises
            raise GraderError(f"MNIST could not be read by the grader: {exc}") from exc
    if test.hidden:
        return hidden.judge(test.grade_id, data, salt)
    return selfcheck.judge(selfcheck.PROBES[test.grade_id], data)


def max_points(test: Judged) -> float:
    """What ``test``'s checks are worth in all (the notebook's points table)."""
    spec = hidden.probe_spec(test.grade_id) if test.hidden else selfcheck.PROBES[test.grade_id]
    return round(sum(points for points, _, _ in spec.verdict({})), 6)


def failed(test: Judged, reason: str) -> Outcome:
    """Every check of ``test`` failed for one reason (no data to judge)."""
    return Outcome(0.0, max_points(test), (reason,))


@dataclass(frozen=True)
class Ruling:
    """A verdict as the confined verdict process hands it back: the outcome, and why a person must
    look at the cell when the grader could not judge it (``flag``; the outcome is then 0 points)."""

    outcome: Outcome
    flag: str | None = None

    def to_json(self) -> dict:
        o = self.outcome
        return {
            "points": o.points,
            "max_points": o.max_points,
            "failures": list(o.failures),
            "passed": list(o.passed),
            "flag": self.flag,
        }

    @classmethod
    def from_json(cls, test: Judged, value: object) -> Ruling:
        """The ruling in ``value``, or a flagged zero when it is not one (never a pass by default)."""
        try:
            assert isinstance(value, dict)
            numbers = (value["points"], value["max_points"])
            assert all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers)
            texts = (value["failures"], value["passed"])
            assert all(isinstance(t, list) and all(isinstance(x, str) for x in t) for t in texts)
            outcome = Outcome(
                float(numbers[0]),  # rounded where the verdict was reached (``rule``), never here
                float(numbers[1]),
                tuple(texts[0]),
                tuple(texts[1]),
            )
            flag = value.get("flag")
            return cls(outcome, None if flag is None else str(flag)).settled(test)
        except Exception as exc:  # a malformed reply is the grader's fault: zero and flagged
            reason = f"the grader's verdict process gave no readable verdict ({type(exc).__name__})"
            return cls(failed(test, reason), reason)

    def settled(self, test: Judged) -> Ruling:
        """Fail closed: a verdict whose points are not a number between 0 and the cell's points, or
        that claims full marks beside a failure, becomes a flagged zero. (nbgrader reads a NaN or a
        negative partial score as full marks, and one above the maximum as a crash.)"""
        o, most = self.outcome, max_points(test)
        sane = (
            math.isfinite(o.points)
            and 0 <= o.points <= most
            and math.isclose(o.max_points, most)
            and (not o.failures) == math.isclose(o.points, most)
        )
        if sane:
            return self
        reason = (
            f"the grader reached an impossible verdict ({o.points!r} of {o.max_points!r} points, "
            f"{len(o.failures)} failure(s))"
        )
        return Ruling(failed(test, reason), reason)


def rule(test: Judged, blob: bytes, salt: int = 0) -> Ruling:
    """Unpack a probe's answer and judge it; never raises, never passes by default.

    Unreadable data is a failure with its reason. A verdict that raises (odd data no check
    expected, or a bug of the grader's) scores 0 and is flagged, so that a person looks at it;
    a ``GraderError`` (MNIST unreadable here) is flagged with its reason. Runs in the confined
    verdict process (``vae_grader.judge.verdict_worker``)."""
    data, problem = unpacked(blob)
    if data is None:
        return Ruling(failed(test, problem or "no answer"))
    try:
        outcome = verdict(test, data, salt)
    except GraderError as exc:
        return Ruling(failed(test, f"the grader could not judge it ({exc})"), str(exc))
    except (Exception, MemoryError, RecursionError) as exc:
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        reason = (
            f"the grader could not judge your answer ({type(exc).__name__}"
            + (f": {text}" if text else "")
            + "); it is flagged for your instructor"
        )
        return Ruling(failed(test, reason), reason)
    return Ruling(replace(outcome, points=round(outcome.points, POINTS_DIGITS))).settled(test)


def verdict_outputs(test: Judged, outcome: Outcome) -> list[NotebookNode]:
    """The cell outputs that make nbgrader record ``outcome`` (see ``nbgrader.utils.determine_grade``)."""
    title = f"Part {test.part} {test.kind}"
    if outcome.full:
        return [_stream(f"{title} passed.\n")]
    if outcome.points <= 0:
        message = "\n".join(outcome.failures)
        return [
            from_dict(
                {
                    "output_type": "error",
                    "ename": "AssertionError",
                    "evalue": message,
                    "traceback": [
                        f"AssertionError: {line}" if i == 0 else line
                        for i, line in enumerate(message.splitlines())
                    ],
                }
            )
        ]
    lines = [f"{title}: {outcome.points:g} of {outcome.max_points:g} points. What did not pass:"]
    lines += [f"- {failure}" for failure in outcome.failures]
    return [
        _stream("\n".join(lines) + "\n"),
        from_dict(
            {
                "output_type": "execute_result",
                "execution_count": None,
                "metadata": {},
                "data": {"text/plain": repr(float(outcome.points))},
            }
        ),
    ]


def _stream(text: str) -> NotebookNode:
    return from_dict({"output_type": "stream", "name": "stdout", "text": text})
