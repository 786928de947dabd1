"""Fail closed: no verdict ever passes data it could not judge, and no cell scores without a verdict.

* **Fuzz** (in this process, about a minute): every judged cell's verdict (visible and hidden) is fed
  the real answers of a complete submission with one key broken at a time (NaN, inf, an int where a
  name or an array belongs, wrong shapes and dtypes, empty values, truncated model bytes, a missing
  key), and answers made of junk alone. ``judge.rule`` must never raise, and never give full marks
  to an answer one of whose keys the verdict read was broken.
* **Every judged cell has a verdict**: ``RequireVerdicts`` zeroes and flags a test cell whose outputs
  would earn more than its recorded verdict: no outputs at all, a pass message the judge never wrote,
  a NaN or negative partial score (both full marks to nbgrader).
* **Rulings are sane**: a verdict process's reply that is malformed, NaN, negative or above the cell's
  points is a flagged zero.
"""

from __future__ import annotations

import io
import os
import random
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("VAE_MODE", "grading")
os.environ.setdefault("MPLBACKEND", "Agg")

import nbformat  # noqa: E402
from nbformat.notebooknode import from_dict  # noqa: E402

from course import probing, selfcheck  # noqa: E402
from course.checks import Outcome  # noqa: E402
from vae_grader.judge import hidden  # noqa: E402
from vae_grader.judge import rulings as judge
from vae_grader.kernel.judged_cells import VERDICTS  # noqa: E402
from vae_grader.notes import flags_of  # noqa: E402
from vae_grader.paths import MASTER  # noqa: E402
from vae_grader.preprocessors.require_verdicts import RequireVerdicts  # noqa: E402

JUDGED = sorted(selfcheck.PROBES) + sorted(hidden.PARTS)


class Reads(dict):
    """A dict that remembers which keys a verdict read."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return super().__contains__(key)


def junk_values(key: str, value: Any, rng: random.Random) -> Iterator[tuple[str, Any]]:
    """Broken stand-ins for ``value`` under ``key``: (what, value) pairs."""
    if key.endswith(".keras"):
        blob = bytes(value) if isinstance(value, bytes | bytearray) else b""
        yield "truncated model", blob[: len(blob) // 2]
        yield "empty model", b""
        yield "zip without a model", _zip({"config.json": b"{}"})
        return
    yield "missing", _MISSING
    yield "an int", 7
    yield "a name", "x"
    yield "None", None
    yield "a nested list", [[1, [2]], "a"]
    array = np.asarray(value) if not key.endswith(".json") else None
    if array is not None and array.dtype.kind in "fiub" and array.size:
        yield "NaN", np.full(array.shape, np.nan)
        yield "inf", np.full(array.shape, np.inf)
        yield "strings", np.full(array.shape, "a")
        if array.dtype.kind == "b":
            yield "negated", ~array
        if array.ndim:
            yield "reversed", array.T if array.ndim > 1 else array[::-1]
            yield "empty", array[:0]
            yield "a scalar", np.float64(rng.random())
        else:
            yield "an array", np.zeros((3, 2))
    if key.endswith(".json") and isinstance(value, dict):
        yield "an empty dict", {}
        yield "keys with NaN", {k: float("nan") for k in value}
        yield "keys with strings", {k: "x" for k in value}


_MISSING = object()

STILL_RIGHT = {
    ("test_manifold", "manifold", "reversed"): "the visible check judges the picture's format (one "
    "420x420 image in [0, 1]: a transposed one is one too) and the layout through build_manifold with "
    "the probe's decoder; the trained decoder is not sent, so the picture's own layout is the hidden "
    "test's business",
}
"""Broken values that still answer what the check asks, with why (keyed by cell, key, breakage)."""


def _same(a: Any, b: Any) -> bool:
    if a is _MISSING:
        return False
    if isinstance(a, np.ndarray | np.generic) and isinstance(b, np.ndarray | np.generic):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
    return type(a) is type(b) and a == b


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def packable(data: dict[str, Any]) -> dict[str, Any]:
    """Through pack/unpack, as the grader receives it (what pack refuses is skipped by the caller)."""
    return probing.unpack(probing.pack(data))


@pytest.fixture(scope="module")
def answers() -> dict[str, dict[str, Any]]:
    """The real answers of the complete demo student for every judged cell (training on 64 images)."""
    from test_fair_grading import TRAINING_IMAGES, _code_cells, _run  # noqa: PLC0415
    from vae_samples import demo
    from vae_samples.kit import load_master_and_release

    master, release = load_master_and_release()
    nb = demo.sample("complete", "x").build(master, release)
    namespace: dict[str, Any] = {}
    for cell_id, source in _code_cells(nb):
        if cell_id == "training":
            full = namespace["x_train"]
            namespace["x_train"] = full[:TRAINING_IMAGES]
            _run(source, namespace, cell_id)
            namespace["x_train"] = full
            continue
        _run(source, namespace, cell_id)
    out = {}
    for grade_id in JUDGED:
        spec = (
            selfcheck.PROBES[grade_id]
            if grade_id in selfcheck.PROBES
            else hidden.probe_spec(grade_id)
        )
        out[grade_id] = packable(selfcheck.run_probe(spec, namespace))
    return out


def _rule(grade_id: str, data: dict[str, Any], salt: int = 0) -> judge.Ruling:
    return judge.rule(judge.judged(grade_id), probing.pack(data), salt)


def _verdict_reads(grade_id: str, data: dict[str, Any]) -> tuple[Outcome, set[str]]:
    tracked = Reads(data)
    test = judge.judged(grade_id)
    outcome = judge.verdict(test, tracked, 0)
    return outcome, tracked.read


@pytest.mark.slow
@pytest.mark.parametrize("grade_id", JUDGED)
def test_broken_answers_never_earn_full_marks(grade_id: str, answers) -> None:
    original = answers[grade_id]
    _, read = _verdict_reads(grade_id, original)
    rng = random.Random(grade_id)
    most = judge.max_points(judge.judged(grade_id))
    tried = 0
    for key in sorted(read & set(original)):
        for what, value in junk_values(key, original[key], rng):
            if _same(value, original[key]):
                continue  # not broken at all (an empty dict of errors, a one-value array transposed)
            data = dict(original)
            if value is _MISSING:
                del data[key]
            else:
                data[key] = value
            try:
                blob = probing.pack(data)
            except (TypeError, ValueError):
                continue  # not even sendable: pack() refuses it in the kernel too
            ruling = judge.rule(judge.judged(grade_id), blob, 0)  # must not raise
            tried += 1
            no_error_recorded = key == probing.ERRORS and value is _MISSING  # the same as {}
            still_right = (grade_id, key, what) in STILL_RIGHT
            assert ruling.outcome.points < most or no_error_recorded or still_right, (
                f"{grade_id}: {key} as {what} still earned {ruling.outcome.points} of {most}"
            )
            assert ruling == ruling.settled(judge.judged(grade_id))
    assert tried or not read & set(original), grade_id


@pytest.mark.slow
@pytest.mark.parametrize("grade_id", JUDGED)
def test_junk_answers_earn_nothing_and_never_raise(grade_id: str, answers) -> None:
    """Answers made of junk alone, under the keys real answers use."""
    keys = sorted({k for a in answers.values() for k in a} | {"missing.json"})
    rng = random.Random(f"junk {grade_id}")
    most = judge.max_points(judge.judged(grade_id))
    for _ in range(60):
        data: dict[str, Any] = {probing.ERRORS: {}}
        for key in rng.sample(keys, k=min(len(keys), rng.randint(1, 8))):
            source = next((a[key] for a in answers.values() if key in a), ["build_encoder"])
            choices = [v for _, v in junk_values(key, source, rng) if v is not _MISSING]
            data[key] = rng.choice(choices)
        try:
            blob = probing.pack(data)
        except (TypeError, ValueError):
            continue
        ruling = judge.rule(judge.judged(grade_id), blob, rng.randrange(2**31))
        assert ruling.outcome.points < most, f"{grade_id}: junk {sorted(data)} earned full marks"


def test_a_raising_verdict_is_a_flagged_zero(monkeypatch) -> None:
    test = judge.judged("test_manifold_hidden")

    def broken(*args, **kwargs):
        raise TypeError("unhashable type: 'list'")

    monkeypatch.setattr(judge, "verdict", broken)
    ruling = judge.rule(test, probing.pack({probing.ERRORS: {}}), 0)
    assert ruling.outcome.points == 0 and ruling.flag
    assert "TypeError" in ruling.outcome.failures[0]


def test_missing_names_of_the_wrong_type_are_not_a_pass() -> None:
    for odd in (5, "build_manifold", [1, 2], {"a": 1}, [None]):
        ruling = _rule("test_manifold_hidden", {probing.ERRORS: {}, "missing.json": odd})
        assert ruling.outcome.points == 0, odd


@pytest.mark.parametrize(
    "reply",
    [
        {"points": float("nan"), "max_points": 3, "failures": [], "passed": []},
        {"points": -1, "max_points": 3, "failures": ["x"], "passed": []},
        {"points": 4, "max_points": 3, "failures": [], "passed": []},
        {"points": 1, "max_points": 3, "failures": [], "passed": []},
        {"points": 3, "max_points": 99, "failures": [], "passed": []},
        {"points": "3", "max_points": 3, "failures": None, "passed": []},
        {"error": "no verdict"},
        None,
        [],
    ],
)
def test_an_impossible_ruling_is_a_flagged_zero(reply) -> None:
    test = judge.judged("test_manifold_hidden")
    ruling = judge.Ruling.from_json(test, reply)
    assert ruling.outcome.points == 0 and ruling.flag


# --- every judged cell has a verdict ----------------------------------------------------------------


def _autograded(outputs_by_cell: dict[str, list[dict]]) -> nbformat.NotebookNode:
    nb = nbformat.read(MASTER, as_version=4)
    for cell in nb.cells:
        name = cell.metadata.get("nbgrader", {}).get("grade_id")
        if name in outputs_by_cell:
            cell.outputs = [from_dict(o) for o in outputs_by_cell[name]]
    return nb


def _score(nb: nbformat.NotebookNode, name: str) -> float:
    from nbgrader import utils

    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == name)
    return utils.determine_grade(cell)[0]


PASS_TEXT = {"output_type": "stream", "name": "stdout", "text": "Part 8 hidden tests passed.\n"}


def _partial(text: str) -> dict:
    return {
        "output_type": "execute_result",
        "execution_count": None,
        "metadata": {},
        "data": {"text/plain": text},
    }


@pytest.mark.parametrize(
    "outputs",
    [[], [PASS_TEXT], [_partial("nan")], [_partial("-1")], [_partial("2.5")]],
    ids=["no outputs", "a pass the judge never wrote", "NaN", "negative", "more than its verdict"],
)
def test_a_cell_without_its_verdict_scores_zero_and_is_flagged(outputs) -> None:
    nb = _autograded({"test_manifold_hidden": outputs, "test_manifold": [PASS_TEXT]})
    most = judge.max_points(judge.judged("test_manifold"))
    resources = {VERDICTS: {"test_manifold": most, "test_manifold_hidden": 0.5}}
    RequireVerdicts().preprocess(nb, resources)
    assert _score(nb, "test_manifold_hidden") == 0
    assert "test_manifold_hidden" in flags_of(nb)
    assert _score(nb, "test_manifold") == most  # its own verdict: kept


def test_verdicts_that_were_reached_are_kept() -> None:
    test = judge.judged("test_loss_layer_hidden")
    partial = judge.verdict_outputs(test, Outcome(1.5, 3.0, ("the KL term",)))
    nb = _autograded({"test_loss_layer_hidden": partial})
    resources = {VERDICTS: {"test_loss_layer_hidden": 1.5}}
    RequireVerdicts().preprocess(nb, resources)
    assert _score(nb, "test_loss_layer_hidden") == 1.5
    assert "test_loss_layer_hidden" not in flags_of(nb)
