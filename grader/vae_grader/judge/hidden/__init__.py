"""Verdicts of the hidden tests, computed in the grader's process from probe data.

The probes run in the student's kernel and hand back data: models saved in Keras's format, arrays,
numbers. Everything else here runs where no student code runs: models
are loaded with ``safe_mode`` and only standard layers, and every reference value is computed
here from the inputs the probe was given. Each hidden cell is split into checks with their own
points (nbgrader's partial credit), so one slip does not cost a whole part; the split is in the
notebook's points table.

One module per part, or per group of parts judged from the same kind of data: ``models`` (parts 1,
3 and 5), ``sampling`` (2), ``loss`` (4), ``training`` (6 and 7, both against MNIST), ``manifold`` (8).
Each holds its parts' probes (sent into the kernel, with ``inputs``) and verdicts, and declares them
as ``PARTS`` (:class:`~vae_grader.judge.hidden.part.HiddenPart`). This module finds them (:data:`PARTS`:
adding a part is adding a module), names each cell after the student package's part of the same number,
judges it (:func:`judge`) and runs it in the master notebook (:func:`check_here`); callers import a part's
other names from its module.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from course import selfcheck
from course.checks import Outcome
from course.selfcheck.probe import Probe
from vae_grader.judge.hidden.part import HiddenPart


class PartDeclarationError(ImportError):
    """Hidden parts that do not match the student package's parts."""


def _discover() -> dict[str, HiddenPart]:
    """Every module's ``PARTS``, by grade_id (``test_<name>_hidden``, ``<name>`` the student package's name
    for the part of that number), in the order of the parts."""
    found: dict[int, HiddenPart] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for spec in getattr(module, "PARTS", ()):
            if spec.part in found:
                raise PartDeclarationError(
                    f"part {spec.part} is declared twice (again in {module.__name__})"
                )
            found[spec.part] = spec
    visible = {probe.part: grade_id for grade_id, probe in selfcheck.PROBES.items()}
    unknown = sorted(set(found) - set(visible))
    if unknown:
        raise PartDeclarationError(f"hidden tests for parts the notebook does not have: {unknown}")
    return {f"{visible[number]}_hidden": found[number] for number in sorted(found)}


PARTS: Mapping[str, HiddenPart] = _discover()
"""The hidden test cells by grade_id."""


def probe_spec(grade_id: str, salt: int = 0) -> Probe:
    """The hidden cell ``grade_id`` as a :class:`course.selfcheck.Probe`, its verdict judging the inputs of ``salt``."""
    spec = PARTS[grade_id]
    verdict = functools.partial(spec.verdict, salt=salt) if spec.salted else spec.verdict
    return Probe(spec.part, spec.names, spec.probe, verdict)


def judge(grade_id: str, data: dict[str, Any], salt: int = 0) -> Outcome:
    return selfcheck.judge(probe_spec(grade_id, salt), data)


def check_here(grade_id: str, namespace: Mapping[str, Any]) -> None:
    """The master notebook's hidden cells (nbval, the instructor's own runs): probe and verdict in one process.

    When a submission is graded, the cell's source is never run: the grader probes the student's
    kernel and judges here (``vae_grader.judge.rulings``). This keeps the master runnable end to end.
    """
    spec = probe_spec(grade_id)
    outcome = selfcheck.judge_here(spec, namespace)
    if not outcome.full:
        raise AssertionError("\n".join(outcome.failures))
    print(
        f"Part {spec.part} hidden tests passed ({outcome.points:g} of {outcome.max_points:g} points)."
    )
