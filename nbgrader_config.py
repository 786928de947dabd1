"""nbgrader configuration for the course "Generating images with variational autoencoders".

The repository root is the course directory. Plain nbgrader commands run from here with no extra
flags (``--force`` aside): ``nbgrader generate_assignment vae``, ``nbgrader autograde vae``,
``nbgrader generate_feedback vae``, ``nbgrader export``. Every course-specific behaviour hooks in
below, so an instructor never needs a wrapper script to grade correctly.

Environment variables (all optional):
  NBGRADER_DB_URL    gradebook URL; default: SQLite file gradebook.db in this folder
                     (e.g. postgresql://user@host/vae for a shared server)
  VAE_MODE           training budget inside graded notebooks; default here: grading
  VAE_CELL_TIMEOUT   seconds one cell may run during autograding; default 60
"""

import os

c = get_config()  # noqa: F821  (provided by nbgrader when it loads this file)

COURSE_ROOT = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.course_id = "vae-mnist"
c.CourseDirectory.root = COURSE_ROOT
c.CourseDirectory.db_url = os.environ.get("NBGRADER_DB_URL") or f"sqlite:///{os.path.join(COURSE_ROOT, 'gradebook.db')}"

# Student-facing stub that replaces each solution region.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Autograding executes student notebooks with the short, calibrated training budget
# (course/budget.py). The kernel inherits this process's environment.
os.environ.setdefault("VAE_MODE", "grading")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# A graded notebook runs in ~20 s; 60 s per cell stops an endless loop without hurting a slow but
# correct submission (the slowest cell, training, takes ~10 s in grading mode).
c.Execute.timeout = int(os.environ.get("VAE_CELL_TIMEOUT", "60"))
c.Execute.interrupt_on_timeout = True
c.Execute.allow_errors = True

# --- Feedback pages (course/grading/feedback.py, issue 4) -------------------------------------
# (filled in by the pipeline work)

# --- Sandboxed grading kernel and robust execution (course/grading/sandbox.py, issue 5) --------
# (filled in by the hardening work)
