"""The verdict process: confined, bounded, and never a pass by default (``vae_grader.judge.confined``).

Each test starts a real verdict process (bubblewrap, a few seconds for Keras's import) and judges a
real answer of a correct encoder, with the limits turned down until that verdict is past them:
what the cell gets then is what a hostile answer gets when it is past the real limits. The
hostile answers themselves (chunk bombs, huge configs, slow convolutions) are corpus cases,
graded through plain nbgrader beside a correct submission (tests/vae_samples/adversarial.py).
"""

from __future__ import annotations

import sys

import pytest

from course import probing, selfcheck
from vae_grader.judge import rulings as judge
from vae_grader.judge.confined import ConfinedJudge

pytestmark = pytest.mark.sandbox

ENCODER = judge.judged("test_encoder")


@pytest.fixture(scope="module")
def answer() -> bytes:
    from test_judge import functional_encoder

    probe = selfcheck.PROBES["test_encoder"]
    return probing.pack(selfcheck.run_probe(probe, {"build_encoder": functional_encoder}))


def _judge(answer: bytes, **limits) -> tuple[judge.Ruling, ConfinedJudge]:
    confined = ConfinedJudge(**limits)
    try:
        return confined.judge(ENCODER, answer, 0), confined
    finally:
        confined.stop()


def test_a_correct_answer_passes_in_the_confined_process(answer) -> None:
    confined = ConfinedJudge()
    try:
        first = confined.judge(ENCODER, answer, 0)
        garbage = confined.judge(ENCODER, b"not an archive", 0)
        again = confined.judge(ENCODER, answer, 0)  # the same process judges on
    finally:
        confined.stop()
    assert first.outcome.points == first.outcome.max_points == 2 and first.flag is None
    assert garbage.outcome.points == 0 and "not readable" in garbage.outcome.failures[0]
    assert again == first
    assert 0 < confined.peak_rss < confined.memory_limit


def test_past_the_memory_limit_the_cell_scores_zero_with_the_reason(answer) -> None:
    ruling, _ = _judge(answer, memory_limit=50 * 2**20)
    assert ruling.outcome.points == 0 and ruling.flag is None
    assert "more than 0.0488281 GB of memory" in ruling.outcome.failures[0]


def test_past_the_cpu_limit_the_cell_scores_zero_with_the_reason(answer) -> None:
    ruling, _ = _judge(answer, cpu_seconds=0)
    assert ruling.outcome.points == 0 and ruling.flag is None
    assert "more than 0 s of computing" in ruling.outcome.failures[0]


def test_past_the_wall_clock_backstop_the_cell_is_flagged_not_zeroed_for_the_student(
    answer,
) -> None:
    ruling, _ = _judge(answer, wall_seconds=0, cpu_seconds=600)
    assert ruling.outcome.points == 0
    assert ruling.flag and "busy machine" in ruling.flag


def test_a_process_that_never_starts_is_a_flagged_zero(answer, monkeypatch) -> None:
    monkeypatch.setattr(
        ConfinedJudge, "command", lambda self: [sys.executable, "-c", "import sys; sys.exit(3)"]
    )
    ruling, _ = _judge(answer)
    assert ruling.outcome.points == 0 and ruling.flag and "did not start" in ruling.flag


READY_THEN = (
    "import os, sys, struct, json\n"
    "out = sys.stdout.buffer\n"
    "def say(b): out.write(struct.pack('>Q', len(b)) + b); out.flush()\n"
    "say(json.dumps({'ready': True}).encode())\n"
    "sys.stdin.buffer.read(8)\n"
)
"""A stand-in verdict process: says it is ready, reads the start of a request, then does what follows."""


def _stand_in(monkeypatch, then: str) -> None:
    script = READY_THEN + then
    monkeypatch.setattr(ConfinedJudge, "command", lambda self: [sys.executable, "-c", script])


def test_a_process_that_answers_garbage_is_a_flagged_zero(answer, monkeypatch) -> None:
    _stand_in(monkeypatch, 'say(b\'{"points": 2, "max_points": 2}\')\n')
    ruling, _ = _judge(answer)
    assert ruling.outcome.points == 0 and ruling.flag


def test_a_process_that_dies_mid_verdict_is_a_flagged_zero(answer, monkeypatch) -> None:
    _stand_in(monkeypatch, "os._exit(9)\n")
    ruling, _ = _judge(answer)
    assert ruling.outcome.points == 0 and ruling.flag and "exit code 9" in ruling.flag


def test_the_verdict_process_sees_only_its_allowlist(tmp_path) -> None:
    """No course folder, gradebook or submission: the grader package and the course package only."""
    from vae_grader.judge.confined import VerdictSandbox

    paths = {a.target for a in VerdictSandbox().allowed_paths() if a.kind in ("ro", "rw")}
    import course
    import vae_grader

    assert any(course.__path__[0].startswith(p) for p in paths)
    assert any(vae_grader.__path__[0].startswith(p) for p in paths)
    assert not [a for a in VerdictSandbox().allowed_paths() if a.kind == "rw"]
    from vae_grader.paths import COURSE_ROOT

    for private in ("source", "submitted", "autograded", "gradebook.db", "nbgrader_config.py"):
        assert str(COURSE_ROOT / private) not in paths
