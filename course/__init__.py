"""Helpers for the course "Generating images with variational autoencoders" (Keras 3, MNIST).

Import this package before Keras: in a Jupyter kernel on the TensorFlow backend it loads Keras and
TensorFlow itself, with TensorFlow's C++ start-up notices kept out of the notebook, so that real
warnings stand out. It never chooses the backend: that is ``KERAS_BACKEND`` (Keras's own default,
TensorFlow, when unset), which the notebook's set-up cell shows and the student may set. Nothing here solves a graded part of the assignment; the package holds data loading, the
training budget, student-facing checks and plotting helpers.
"""

from __future__ import annotations

import os as _os

# TensorFlow's C++ INFO lines (CPU feature lists) tell students nothing they can act on. Level 1 hides
# INFO only: TensorFlow's warnings and errors at run time still show (one of them, "Your input ran out
# of data", is a student's bug). setdefault keeps any explicit choice made by the user or the grader.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import re as _re  # noqa: E402
import sys as _sys  # noqa: E402

_START_UP_NOISE = _re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWEF]\d{4} [\d:.]+ +\d+ [^ ]+:\d+\] .*"
    r"|To enable the following instructions: .*, in other operations, rebuild TensorFlow .*"
)
"""What TensorFlow's C++ side writes to the process's stderr while it loads: absl's preamble, then log
lines in absl's format (``I0000 00:00:1796638347.653336   14790 port.cc:153] oneDNN custom operations
are on...``; with a GPU build, ``E0000 ... Unable to register cuDNN factory`` and the like), and the
second line of the CPU-feature notice."""


def _in_kernel() -> bool:
    """Whether this process is a Jupyter kernel (JupyterLab, nbgrader's Validate, the grader's kernel)."""
    ipython = _sys.modules.get("IPython")
    return "ipykernel" in _sys.modules and ipython is not None and ipython.get_ipython() is not None


def _load_keras_quietly() -> None:
    """Import Keras (and so TensorFlow) with its C++ start-up notices kept out of the notebook.

    ipykernel forwards whatever is written to the kernel's file descriptor 2 into the notebook as red
    stderr output. TensorFlow 2.21 writes its oneDNN notice there twice at import, through absl,
    whatever TF_CPP_MIN_LOG_LEVEL says, so no environment variable hides it (TF_ENABLE_ONEDNN_OPTS=0
    would, by switching oneDNN off: other numbers, slower training). So descriptor 2 points at a
    scratch file while TensorFlow loads, and everything in it except those notices is written back to
    stderr. No student code runs meanwhile, and Python's own warnings go to ``sys.stderr``, which in
    a kernel is not descriptor 2: nothing of the student's is hidden.
    """
    import tempfile

    try:
        scratch = tempfile.TemporaryFile(mode="w+b")
        saved = _os.dup(2)
    except OSError:  # no scratch space or no descriptor 2: load as usual
        return
    try:
        _sys.stderr.flush()
        _os.dup2(scratch.fileno(), 2)
        try:
            import keras  # noqa: F401
        # The notebook's own `import keras` then shows the error, where students expect it.
        except Exception:
            pass
        finally:
            _sys.stderr.flush()
            _os.dup2(saved, 2)
    finally:
        _os.close(saved)
    scratch.seek(0)
    text = scratch.read().decode("utf-8", "replace")
    scratch.close()
    kept = [
        line
        for line in text.splitlines(keepends=True)
        if not _START_UP_NOISE.fullmatch(line.rstrip("\r\n"))
    ]
    if kept:
        _sys.stderr.write("".join(kept))


if (
    _in_kernel()
    # Keras's own default backend is TensorFlow when KERAS_BACKEND is unset.
    and _os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"
    and "tensorflow" not in _sys.modules
):
    _load_keras_quietly()

from course.budget import TrainingBudget, training_budget  # noqa: E402
from course.data import MnistDataError, load_mnist  # noqa: E402

__all__ = ["MnistDataError", "TrainingBudget", "load_mnist", "training_budget"]
