"""What a hidden test cell is (:class:`HiddenPart`), declared by the module that judges it.

A part module of ``vae_grader.judge.hidden`` holds a part's probe (sent into the student's kernel) and its
verdict (run in the grader's confined process), and declares them together in ``PARTS``. The package
finds them: adding a part is adding a module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from course.checks import Check


@dataclass(frozen=True)
class HiddenPart:
    """One hidden test cell; everything else about it (its grade_id, the code sent to the kernel, which
    verdicts need MNIST) is derived from these fields and the student package's part of the same number."""

    part: int
    names: tuple[str, ...]
    """What the probe reads from the student's notebook, in its arguments' order."""
    probe: Callable[..., dict[str, Any]]
    """Sent into the kernel as its own source, after ``hidden.inputs``: it may use only the names defined
    there (and ``helpers``), never its module's other names, which stay in the grader."""
    verdict: Callable[..., list[Check]]
    salted: bool = False
    """Its inputs are drawn afresh for every probe (``inputs.SALT``); the verdict takes ``salt``."""
    reads_mnist: bool = False
    """Its verdict compares with MNIST, read by the grader itself."""
    helpers: tuple[Callable[..., Any], ...] = ()
    """Functions of the part's module that the probe calls, sent with it."""
