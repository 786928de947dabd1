"""The environment the grading kernel starts with: the grader's own, plus the course's grading
defaults; and the allowlist of what of it the sandbox passes on (:func:`allowed_environment`).

Set for the kernel only, when it starts (``RobustExecute.async_start_new_kernel``), never by
changing this process's ``os.environ``: loading ``nbgrader_config.py`` changes nothing, so a
script that reads the configuration (``course_folder.course_config``) needs to undo nothing. A value
the instructor set wins over a default (``VAE_MODE=student`` grades with the long budget).

Two Keras backends are in play, chosen apart: the grader's own (``KERAS_BACKEND``, TensorFlow by
default), which the verdict process loads the kernel's ``.keras`` files with, and the kernel's, which
runs the student's code. ``VAE_KERNEL_BACKEND`` gives the kernel another backend than the grader's
(``VAE_KERNEL_BACKEND=jax nbgrader autograde vae``); unset, the kernel runs on the grader's.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from pathlib import Path

SANDBOX_ENV = "VAE_SANDBOX"

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


KERNEL_BACKEND_VAR = "VAE_KERNEL_BACKEND"
BACKENDS = ("tensorflow", "jax", "torch")
"""The Keras backends the course runs on (docs/backends.md)."""


class BackendError(ValueError):
    """A backend name the course does not run on."""


def kernel_backend(env: Mapping[str, str] | None = None) -> str:
    """The backend of the kernel that runs the student's code: ``VAE_KERNEL_BACKEND``, else the grader's."""
    env = os.environ if env is None else env
    name = (
        env.get(KERNEL_BACKEND_VAR) or env.get("KERAS_BACKEND") or GRADING_DEFAULTS["KERAS_BACKEND"]
    )
    if name not in BACKENDS:
        raise BackendError(
            f"{KERNEL_BACKEND_VAR}/KERAS_BACKEND is {name!r}; the course runs on {', '.join(BACKENDS)}"
        )
    return name


def package_folder(name: str) -> Path | None:
    """The folder of the package ``name`` this process imports, found without importing it; None where
    it is not importable."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def student_package() -> Path | None:
    """The folder of the student package (``course``) this process imports (found, not imported:
    importing it sets environment defaults)."""
    return package_folder("course")


def grading_kernel_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a grading kernel is started with (the sandbox then keeps only its allowlist):
    the grading defaults, on the kernel's backend (:func:`kernel_backend`), and ``PYTHONPATH`` naming the
    folder of the student package the grader itself imports, so the kernel's probes and the grader's
    verdicts come from one copy of it (not from whichever copy the environment happens to install)."""
    merged = with_defaults(GRADING_DEFAULTS, env)
    merged["KERAS_BACKEND"] = kernel_backend(merged)
    package = student_package()
    if package is None:
        merged.pop("PYTHONPATH", None)
    else:
        merged["PYTHONPATH"] = str(package.parent)
    return merged


def verdict_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the verdict process: the grading defaults on the grader's own backend,
    whatever backend the kernel ran, so a verdict never depends on the kernel's choice."""
    return with_defaults(GRADING_DEFAULTS, env)


# Environment variables the kernel gets; everything else is dropped, whatever its name.
ENV_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "TMPDIR",
        "PWD",
        "LANG",
        "LANGUAGE",
        "TZ",
        # Keras / TensorFlow / numerical libraries
        "KERAS_BACKEND",
        "TF_CPP_MIN_LOG_LEVEL",
        "TF_ENABLE_ONEDNN_OPTS",
        "TF_NUM_INTRAOP_THREADS",
        "TF_NUM_INTEROP_THREADS",
        "TF_DETERMINISTIC_OPS",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        # matplotlib
        "MPLCONFIGDIR",
        "MPLBACKEND",
        # Python itself
        "PYTHONHASHSEED",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONIOENCODING",
        "PYTHONUNBUFFERED",
        "PYTHONUTF8",
        "PYTHONPATH",  # set by grading_kernel_environment to the student package's folder alone
        # the course package (course/data.py) and nbgrader (its FAQ: code may test NBGRADER_EXECUTION)
        "MNIST_NPZ",
        "NBGRADER_EXECUTION",
        "NBGRADER_VALIDATING",
        # ipykernel: the session name (JPY_PARENT_PID is left out on purpose: in the PID namespace the
        # parent is always pid 1 and ipykernel would exit at once; bwrap's --die-with-parent does that job)
        "JPY_SESSION_NAME",
        "PYDEVD_DISABLE_FILE_VALIDATION",
    }
)
ENV_PREFIXES = ("LC_", "VAE_")  # locale categories; the course's budget and mode (course/budget.py)
# Never passed even when allowlisted by prefix (say VAE_DB_PASSWORD): names that look like credentials.
_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSW|CREDENTIAL|API_?KEY|PRIVATE|AUTH)", re.IGNORECASE)


def sandbox_disabled(environ: Mapping[str, str] | None = None) -> bool:
    """True when the instructor opted out explicitly with ``VAE_SANDBOX=off`` (or 0/no/false)."""
    value = (environ if environ is not None else os.environ).get(SANDBOX_ENV, "").strip().lower()
    return value in {"off", "0", "no", "false", "none"}


def allowed_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The part of ``env`` the kernel may see: allowlisted names only, and never one that looks like a secret."""
    return {
        key: value
        for key, value in env.items()
        if (key in ENV_NAMES or key.startswith(ENV_PREFIXES)) and not _SECRET_NAME.search(key)
    }


scrubbed_environment = allowed_environment  # the earlier (denylist) name, still used by tests
