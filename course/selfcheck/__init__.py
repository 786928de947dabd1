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

The package holds one module per part, ``part<n>_<name>`` (``part1_encoder`` ... ``part8_manifold``):
that part's probe, verdict and the measured constants they share, declared as ``CHECK``. ``probe``
holds the plumbing they all use. This module finds the part modules (``PROBES``: a part is added by
adding its module), runs and judges them, and makes the notebook's calls (``selfcheck.<name>``). The
part modules are not named after the calls: importing a submodule sets the package attribute of its
name, and would replace the call. Callers import a part's own names from its module.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable, Mapping
from typing import Any

from course import probing
from course.checks import Outcome, SelfCheckFailed, expect, run_checks
from course.selfcheck.probe import Probe

PART_MODULE = re.compile(r"part(?P<number>[1-9][0-9]*)_(?P<name>[a-z][a-z0-9_]*)")
"""A part's module: ``part<number>_<name>``; its test cell is ``test_<name>``, its notebook call ``<name>``."""


class PartDeclarationError(ImportError):
    """A part module that does not declare its part the way :func:`_discover` reads it."""


def _discover() -> dict[str, Probe]:
    """Every part module's ``CHECK``, by the grade_id of its test cell, in the order of the parts.

    Adding a part is adding a module: nothing else here lists the parts.
    """
    found: dict[int, tuple[str, Probe]] = {}
    for info in pkgutil.iter_modules(__path__):
        match = PART_MODULE.fullmatch(info.name)
        if match is None:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        check = getattr(module, "CHECK", None)
        number = int(match["number"])
        if not isinstance(check, Probe) or check.part != number:
            raise PartDeclarationError(
                f"{module.__name__} must declare CHECK = Probe({number}, ...) for part {number}"
            )
        if number in found:
            raise PartDeclarationError(
                f"two modules declare part {number}: {info.name}, {found[number][0]}"
            )
        found[number] = (match["name"], check)
    if sorted(found) != list(range(1, len(found) + 1)):
        raise PartDeclarationError(f"the parts are not numbered 1..{len(found)}: {sorted(found)}")
    return {f"test_{name}": check for _, (name, check) in sorted(found.items())}


PROBES: dict[str, Probe] = _discover()
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


def _notebook_call(grade_id: str, probe: Probe) -> Callable[..., None]:
    """The notebook's ``selfcheck.<name>(...)``: its parameters are the names the probe reads, its
    docstring the first line of the part module's."""

    signature = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in probe.names]
    )

    def call(*args: Any, **kwargs: Any) -> None:
        _check(grade_id, signature.bind(*args, **kwargs).arguments)

    name = grade_id.removeprefix("test_")
    module = inspect.getmodule(probe.probe)
    call.__name__ = call.__qualname__ = name
    call.__signature__ = signature  # type: ignore[attr-defined]
    call.__doc__ = (inspect.getdoc(module) or "").split("\n")[0]
    return call


CALLS: dict[str, Callable[..., None]] = {
    grade_id.removeprefix("test_"): _notebook_call(grade_id, probe)
    for grade_id, probe in PROBES.items()
}
"""The notebook's calls by name (``selfcheck.encoder(build_encoder)``), one per part."""
globals().update(CALLS)

__all__ = [
    "CALLS",
    "PROBES",
    "Probe",
    "SelfCheckFailed",
    "judge",
    "judge_here",
    "report",
    "run_probe",
    *CALLS,
]
