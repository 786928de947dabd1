"""Verdicts of the hidden tests, computed in the grader's process from probe data.

The probes (``vae_grader.judge.hidden_probes``) run in the student's kernel and hand back data: models
saved in Keras's format, arrays, numbers. Everything here runs where no student code runs: models
are loaded with ``safe_mode`` and only standard layers, and every reference value is computed
here from the inputs the probe was given. Each hidden cell is split into checks with their own
points (nbgrader's partial credit), so one slip does not cost a whole part; the split is in the
notebook's points table.

One module per part, or per pair of parts judged from the same kind of data: ``models`` (parts 1, 3
and 5), ``sampling`` (2), ``loss`` (4), ``training`` (6 and 7, both against MNIST), ``manifold`` (8).
This module maps each hidden cell's grade id to its verdict and re-exports the names the rest of the
grader, the tests and the master notebook's hidden cells use (``vae_grader.judge.hidden.check_here``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from course.checks import Check, Outcome
from course.selfcheck import Probe
from course.selfcheck import judge as _judge
from vae_grader.judge import hidden_probes as hp
from vae_grader.judge.hidden.loss import (
    KL_WEIGHT,
    LOSS_SLIPS,
    diagnose_loss,
    loss_terms,
    reference_vae_loss,
    verdict_loss_layer,
)
from vae_grader.judge.hidden.manifold import verdict_manifold
from vae_grader.judge.hidden.models import (
    CONV,
    DECODER_LAYERS,
    ENCODER_LAYERS,
    verdict_decoder,
    verdict_encoder,
    verdict_vae_model,
)
from vae_grader.judge.hidden.sampling import verdict_sampling
from vae_grader.judge.hidden.training import (
    RATIO_THRESHOLD,
    UNTRAINED_SPREAD,
    diagnose_training,
    mnist,
    verdict_data,
    verdict_training,
)

__all__ = [
    "CONV",
    "DECODER_LAYERS",
    "ENCODER_LAYERS",
    "KL_WEIGHT",
    "LOSS_SLIPS",
    "RATIO_THRESHOLD",
    "SALTED",
    "UNTRAINED_SPREAD",
    "VERDICTS",
    "check_here",
    "diagnose_loss",
    "diagnose_training",
    "judge",
    "loss_terms",
    "mnist",
    "probe_spec",
    "reference_vae_loss",
    "verdict_data",
    "verdict_decoder",
    "verdict_encoder",
    "verdict_loss_layer",
    "verdict_manifold",
    "verdict_sampling",
    "verdict_training",
    "verdict_vae_model",
]


VERDICTS: Mapping[str, Callable[..., list[Check]]] = {
    "test_encoder_hidden": verdict_encoder,
    "test_sampling_hidden": verdict_sampling,
    "test_decoder_hidden": verdict_decoder,
    "test_loss_layer_hidden": verdict_loss_layer,
    "test_vae_model_hidden": verdict_vae_model,
    "test_data_hidden": verdict_data,
    "test_training_hidden": verdict_training,
    "test_manifold_hidden": verdict_manifold,
}


SALTED = ("test_sampling_hidden", "test_loss_layer_hidden")
"""Hidden cells whose inputs the grader draws afresh for every probe (``hidden_probes.SALT``)."""


def probe_spec(grade_id: str, salt: int = 0) -> Probe:
    """The hidden cell ``grade_id`` as a :class:`course.selfcheck.Probe`, its verdict judging the inputs of ``salt``."""
    part, names, function = hp.PROBES[grade_id]
    verdict = (
        functools.partial(VERDICTS[grade_id], salt=salt)
        if grade_id in SALTED
        else VERDICTS[grade_id]
    )
    return Probe(part, names, getattr(hp, function), verdict)


def judge(grade_id: str, data: dict[str, Any], salt: int = 0) -> Outcome:
    return _judge(probe_spec(grade_id, salt), data)


def check_here(grade_id: str, namespace: Mapping[str, Any]) -> None:
    """The master notebook's hidden cells (nbval, the instructor's own runs): probe and verdict in one process.

    When a submission is graded, the cell's source is never run: the grader probes the student's
    kernel and judges here (``vae_grader.judge.rulings``). This keeps the master runnable end to end.
    """
    from course.selfcheck import judge_here

    spec = probe_spec(grade_id)
    outcome = judge_here(spec, namespace)
    if not outcome.full:
        raise AssertionError("\n".join(outcome.failures))
    print(
        f"Part {spec.part} hidden tests passed ({outcome.points:g} of {outcome.max_points:g} points)."
    )
