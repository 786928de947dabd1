"""The notebook's visible self-checks: each asks the student's code for data, then judges the data.

Every self-check has two halves. The *probe* runs the student's code on inputs chosen here and
packs what it computed (``course.probing``); the *verdict* judges that data and nothing else. In the
notebook, ``selfcheck.encoder(build_encoder)`` runs both and prints "Part 1 self-check passed." or
raises an error that says what is wrong. When the notebook is graded, the grader runs the probe in
the student's sandboxed kernel and the verdict in its own process, so the points never depend on
what the kernel reports about itself. The probe's data travels through ``pack``/``unpack`` in the
notebook too, so a student sees exactly the verdict the grader will reach.

Nothing here solves a part: the expected values are shapes, ranges and formulas stated in the
notebook's instructions.

The package holds one module per part (``part1_encoder`` ... ``part8_manifold``: that part's probe,
verdict and the measured constants they share) and ``probe``, the plumbing they all use. This module
registers them (``PROBES``), runs and judges them, and makes the notebook's calls. The part modules
are not named after the calls (``encoder``, ``sampling``, ...): importing a submodule sets the
package attribute of its name, and would replace the call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from course import probing
from course.checks import Outcome, SelfCheckFailed, expect, fmt_shape, run_checks

# Re-exported (the ``name as name`` form): the grader, its hidden probes sent into the kernel, the tests
# and the notebook reach all of these as ``course.selfcheck.<name>``.
from course.selfcheck.probe import (
    Probe as Probe,
    _load as _load,
    _model_step as _model_step,
    _numpy as _numpy,
)
from course.selfcheck.part1_encoder import (
    ENCODER_FEATURE_MAP as ENCODER_FEATURE_MAP,
    probe_encoder as probe_encoder,
    verdict_encoder as verdict_encoder,
)
from course.selfcheck.part2_sampling import (
    SAMPLING_MEAN as SAMPLING_MEAN,
    SAMPLING_MEAN_TOLERANCE as SAMPLING_MEAN_TOLERANCE,
    SAMPLING_ROWS as SAMPLING_ROWS,
    SAMPLING_SD_TOLERANCE as SAMPLING_SD_TOLERANCE,
    SAMPLING_SYMBOLIC as SAMPLING_SYMBOLIC,
    SAMPLING_VARIANCE as SAMPLING_VARIANCE,
    probe_sampling as probe_sampling,
    verdict_sampling as verdict_sampling,
)
from course.selfcheck.part3_decoder import (
    EXTREME_CODE as EXTREME_CODE,
    probe_decoder as probe_decoder,
    verdict_decoder as verdict_decoder,
)
from course.selfcheck.part4_loss_layer import (
    LOSS_CODE_LOG_VAR as LOSS_CODE_LOG_VAR,
    LOSS_CODE_MEAN as LOSS_CODE_MEAN,
    LOSS_TOLERANCE as LOSS_TOLERANCE,
    _kl_slip as _kl_slip,
    loss_layer_result as loss_layer_result,
    probe_loss_layer as probe_loss_layer,
    verdict_loss_layer as verdict_loss_layer,
)
from course.selfcheck.part5_vae_model import (
    probe_vae_model as probe_vae_model,
    verdict_vae_model as verdict_vae_model,
)
from course.selfcheck.part6_data import (
    probe_data as probe_data,
    verdict_data as verdict_data,
)
from course.selfcheck.part7_training import (
    LEARNED as LEARNED,
    TRAINING_CAUSES as TRAINING_CAUSES,
    VALIDATION_SAMPLE as VALIDATION_SAMPLE,
    probe_training as probe_training,
    probe_training_diagnosis as probe_training_diagnosis,
    reconstruction_loss as reconstruction_loss,
    verdict_training as verdict_training,
)
from course.selfcheck.part8_manifold import (
    _layout_problem as _layout_problem,
    probe_manifold as probe_manifold,
    verdict_manifold as verdict_manifold,
)


# --- the registry and the notebook's calls ----------------------------------------------------------

PROBES: dict[str, Probe] = {
    "test_encoder": Probe(1, ("build_encoder",), probe_encoder, verdict_encoder),
    "test_sampling": Probe(2, ("Sampling",), probe_sampling, verdict_sampling),
    "test_decoder": Probe(3, ("build_decoder",), probe_decoder, verdict_decoder),
    "test_loss_layer": Probe(4, ("CustomVariationalLayer",), probe_loss_layer, verdict_loss_layer),
    "test_vae_model": Probe(5, ("build_vae",), probe_vae_model, verdict_vae_model),
    "test_data": Probe(6, ("x_train", "x_test"), probe_data, verdict_data, reads_mnist=True),
    "test_training": Probe(
        7,
        ("history", "encoder", "decoder"),
        probe_training,
        verdict_training,
        probe_training_diagnosis,
        TRAINING_CAUSES,
        reads_mnist=True,
    ),
    "test_manifold": Probe(8, ("manifold", "build_manifold"), probe_manifold, verdict_manifold),
}
"""Visible self-check cells by grade_id (the grader judges the same cells with the same verdicts)."""


def run_probe(probe: Probe, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The probe's data for the names it reads from ``namespace`` (a missing name is recorded, not raised)."""
    missing = [name for name in probe.names if name not in namespace]
    if missing:
        data: dict[str, Any] = {probing.ERRORS: {}, "missing.json": missing}
        if probe.diagnosis is not None:
            try:
                data.update(probe.diagnosis(namespace))
            except (
                Exception
            ):  # the diagnosis only chooses a message: without it the usual one stands
                pass
        return data
    return probe.probe(*(namespace[name] for name in probe.names))


def judge(probe: Probe, data: dict[str, Any]) -> Outcome:
    """The verdict on probe data; a name the notebook never defined fails every check of the cell."""
    missing = data.get("missing.json")
    if missing is not None and not (
        isinstance(missing, list) and missing and all(isinstance(n, str) for n in missing)
    ):
        missing = ["(a name the grader could not read)"]
    if missing:
        names = ", ".join(missing)
        verb = "is" if len(missing) == 1 else "are"
        message = (
            f"{names} {verb} not defined: the cell that defines it did not run to the end. Fill in part "
            f"{probe.part}, run the cells above in order, and fix the first one that stops with an error "
            "(an earlier part's self-check says what is wrong there)"
        )
        cause = data.get("cause.json")
        if isinstance(cause, str) and cause in probe.causes:
            message = f"{names} {verb} not defined: {probe.causes[cause]}"
        return run_checks(
            [
                (points, label, lambda: expect(False, message))
                for points, label, _ in probe.verdict(data)
            ]
        )
    return run_checks(probe.verdict(data))


def report(part: int, outcome: Outcome, kind: str = "self-check") -> None:
    """Print the verdict the way the notebook shows it: passed, or a ``SelfCheckFailed`` (an
    ``AssertionError``) naming every failure, which the notebook shows as its message alone."""
    if outcome.full:
        print(f"Part {part} {kind} passed.")
        return
    raise SelfCheckFailed("\n".join(outcome.failures), part)


def judge_here(probe: Probe, namespace: Mapping[str, Any]) -> Outcome:
    """Probe and verdict in one process, the data passed through pack/unpack: exactly what the grader receives."""
    return judge(probe, probing.unpack(probing.pack(run_probe(probe, namespace))))


def _check(grade_id: str, namespace: Mapping[str, Any]) -> None:
    probe = PROBES[grade_id]
    report(probe.part, judge_here(probe, namespace))


def encoder(build_encoder: Callable[..., Any]) -> None:
    """Part 1: build_encoder(2) and build_encoder(3) give the right inputs and outputs."""
    _check("test_encoder", {"build_encoder": build_encoder})


def sampling(Sampling: type) -> None:
    """Part 2: the sampling layer adds fresh noise with the right scale."""
    _check("test_sampling", {"Sampling": Sampling})


def decoder(build_decoder: Callable[..., Any]) -> None:
    """Part 3: build_decoder(2, (14, 14, 64)) maps codes to 28x28x1 images in [0, 1]."""
    _check("test_decoder", {"build_decoder": build_decoder})


def loss_layer(CustomVariationalLayer: type) -> None:
    """Part 4: the loss layer passes x through and adds the right loss."""
    _check("test_loss_layer", {"CustomVariationalLayer": CustomVariationalLayer})


def vae_model(build_vae: Callable[..., Any]) -> None:
    """Part 5: build_vae wires stand-in parts into a compiled model with a loss."""
    _check("test_vae_model", {"build_vae": build_vae})


def data(x_train: Any, x_test: Any) -> None:
    """Part 6: the preprocessed arrays have the right shape, type and range."""
    _check("test_data", {"x_train": x_train, "x_test": x_test})


def training(history: Any, encoder: Any, decoder: Any) -> None:
    """Part 7: the history has the budget's epochs, and the trained model reconstructs far better than a fresh one."""
    _check("test_training", {"history": history, "encoder": encoder, "decoder": decoder})


def manifold(manifold: Any, build_manifold: Callable[..., Any]) -> None:
    """Part 8: the manifold is one 420x420 image in [0, 1], and build_manifold puts each code in its tile."""
    _check("test_manifold", {"manifold": manifold, "build_manifold": build_manifold})


__all__ = [
    "PROBES",
    "Probe",
    "SelfCheckFailed",
    "decoder",
    "data",
    "encoder",
    "fmt_shape",
    "judge",
    "loss_layer",
    "manifold",
    "report",
    "run_probe",
    "sampling",
    "training",
    "vae_model",
]
