"""Helpers for the course "Generating images with variational autoencoders" (Keras 3, MNIST).

Import this package before Keras: it quietens TensorFlow's C++ start-up chatter so that real
warnings stand out in the notebook. Nothing here solves a graded part of the assignment; the
package holds data loading, the training budget, student-facing checks and plotting helpers,
and (under ``vae_grader``) the instructor's nbgrader pipeline.
"""

from __future__ import annotations

import os as _os

# TensorFlow prints INFO lines at import (oneDNN notices, CPU feature lists) that students cannot
# act on. Level 1 hides INFO only; warnings and errors still show. setdefault keeps any explicit
# choice made by the user or the grader.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from course.budget import TrainingBudget, training_budget  # noqa: E402
from course.data import MnistDataError, load_mnist  # noqa: E402

__all__ = ["MnistDataError", "TrainingBudget", "load_mnist", "training_budget"]
