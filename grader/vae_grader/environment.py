"""The environment the grading kernel starts with: the grader's own, plus the course's grading defaults.

Set for the kernel only, when it starts (``RobustExecute.async_start_new_kernel``), never by
changing this process's ``os.environ``: loading ``nbgrader_config.py`` changes nothing, so a
script that reads the configuration (``course_folder.course_config``) needs to undo nothing. A value
the instructor set wins over a default (``VAE_MODE=student`` grades with the long budget).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

GRADING_DEFAULTS: Mapping[str, str] = {
    "VAE_MODE": "grading",  # the short, calibrated training budget (course/budget.py)
    "TF_CPP_MIN_LOG_LEVEL": "1",
    "KERAS_BACKEND": "tensorflow",
}


def with_defaults(
    defaults: Mapping[str, str], env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``env`` (default: this process's environment) with ``defaults`` for the names it lacks."""
    return {**defaults, **(os.environ if env is None else env)}


def grading_kernel_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a grading kernel is started with (the sandbox then keeps only its allowlist)."""
    return with_defaults(GRADING_DEFAULTS, env)
