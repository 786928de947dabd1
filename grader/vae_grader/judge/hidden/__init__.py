"""Verdicts of the hidden tests, computed in the grader's process from probe data.

The probes (``vae_grader.judge.hidden_probes``) run in the student's kernel and hand back data: models
saved in Keras's format, arrays, numbers. Everything here runs where no student code runs: models
are loaded with ``safe_mode`` and only standard layers, and every reference value is computed
here from the inputs the probe was given. Each hidden cell is split into checks with their own
points (nbgrader's partial credit), so one slip does not cost a whole part; the split is in the
notebook's points table.

One module per part, or per pair of parts judged from the same kind of data: ``models`` (parts 1, 3
and 5), ``sampling`` (2), ``loss`` (4), ``training`` (6 and 7, both against MNIST), ``manifold`` (8).
This module declares each hidden cell once (:data:`PARTS`: its probe, verdict and inputs), judges it
(:func:`judge`) and runs it in the master notebook (:func:`check_here`); the other names live in the part
modules, where callers import them from.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from course.checks import Check, Outcome
from course.selfcheck import Probe
from course.selfcheck import judge as _judge
from vae_grader.judge import hidden_probes as hp
from vae_grader.judge.hidden.loss import verdict_loss_layer
from vae_grader.judge.hidden.manifold import verdict_manifold
from vae_grader.judge.hidden.models import verdict_decoder, verdict_encoder, verdict_vae_model
from vae_grader.judge.hidden.sampling import verdict_sampling
from vae_grader.judge.hidden.training import verdict_data, verdict_training


@dataclass(frozen=True)
class HiddenPart:
    """One hidden test cell, declared once: everything else about it (what the judge scores, the code
    sent to the kernel, which verdicts need MNIST) is read from :data:`PARTS`."""

    part: int
    names: tuple[str, ...]
    """What the probe reads from the student's notebook, in its arguments' order."""
    probe: Callable[..., dict[str, Any]]
    """A function of :mod:`vae_grader.judge.hidden_probes`, the only source sent into the kernel."""
    verdict: Callable[..., list[Check]]
    salted: bool = False
    """Its inputs are drawn afresh for every probe (``hidden_probes.SALT``); the verdict takes ``salt``."""
    reads_mnist: bool = False
    """Its verdict compares with MNIST, read by the grader itself."""


PARTS: Mapping[str, HiddenPart] = {
    "test_encoder_hidden": HiddenPart(
        1, ("build_encoder",), hp.probe_encoder_hidden, verdict_encoder
    ),
    "test_sampling_hidden": HiddenPart(
        2, ("Sampling",), hp.probe_sampling_hidden, verdict_sampling, salted=True
    ),
    "test_decoder_hidden": HiddenPart(
        3, ("build_decoder",), hp.probe_decoder_hidden, verdict_decoder
    ),
    "test_loss_layer_hidden": HiddenPart(
        4, ("CustomVariationalLayer",), hp.probe_loss_layer_hidden, verdict_loss_layer, salted=True
    ),
    "test_vae_model_hidden": HiddenPart(
        5, ("build_vae",), hp.probe_vae_model_hidden, verdict_vae_model
    ),
    "test_data_hidden": HiddenPart(
        6, ("preprocess", "x_train", "x_test"), hp.probe_data_hidden, verdict_data, reads_mnist=True
    ),
    "test_training_hidden": HiddenPart(
        7, ("encoder", "decoder"), hp.probe_training_hidden, verdict_training, reads_mnist=True
    ),
    "test_manifold_hidden": HiddenPart(
        8, ("build_manifold",), hp.probe_manifold_hidden, verdict_manifold
    ),
}
"""The hidden test cells by grade_id."""


def probe_spec(grade_id: str, salt: int = 0) -> Probe:
    """The hidden cell ``grade_id`` as a :class:`course.selfcheck.Probe`, its verdict judging the inputs of ``salt``."""
    spec = PARTS[grade_id]
    verdict = functools.partial(spec.verdict, salt=salt) if spec.salted else spec.verdict
    return Probe(spec.part, spec.names, spec.probe, verdict)


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
