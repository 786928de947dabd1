"""nbgrader configuration for the students' side of the course (installed by scripts/setup.sh).

`scripts/setup.sh` links this file into the environment's Jupyter configuration folder
(``.venv/etc/jupyter/nbgrader_config.py``; ``sys.prefix/etc/jupyter`` is on ``jupyter --paths``),
where ``nbgrader validate``, ``fetch_assignment``/``submit``/``fetch_feedback`` and JupyterLab's
Assignments tab and **Validate** button all find it, from whatever folder the student works in. A
student never copies a configuration file; nbgrader no longer warns "No nbgrader_config.py file
found" (it warns when no file of that name is in the working folder or on the config path).

The instructor's ``nbgrader_config.py`` at the course root is loaded after this one (nbgrader reads
the working folder last) and overrides every value here when grading.
"""

import os

c = get_config()  # noqa: F821  (provided by nbgrader when it loads this file)

# The course's id in the exchange: what `nbgrader fetch_assignment vae` and `submit` look for.
c.CourseDirectory.course_id = "vae-mnist"

# The exchange folder shared by instructor and students: nbgrader's default /srv/nbgrader/exchange
# (or what a JupyterHub's /etc/jupyter/nbgrader_config.py sets) unless VAE_EXCHANGE names another;
# tests/test_exchange.py points it at a scratch folder.
if os.environ.get("VAE_EXCHANGE"):
    c.Exchange.root = os.environ["VAE_EXCHANGE"]

# Validating runs the whole notebook with the short grading budget (course/budget.py picks it from
# NBGRADER_EXECUTION, which nbgrader sets). nbgrader's default limit of 30 s per cell stopped a
# correct notebook in the training cell; 300 s leaves a student's slower laptop several times the
# slowest measured run (README, "What the limits rest on"). A cell past it is interrupted and
# reported as the failing cell (interrupt_on_timeout), not as a crash of the validator.
#
# Everything below is scoped to the validator (`c.Validator.Execute`): the instructor's autograde,
# which loads this file too, keeps its own executor settings.
c.Validator.Execute.timeout = 300
c.Validator.Execute.interrupt_on_timeout = True
# A failing self-check then reads as its message ("AssertionError: the layer's output is ...:
# return the first input x unchanged"), under the cell's first line ("# Self-check for part 4"),
# instead of a traceback through course/checks.py. The first argument is nbgrader's own default
# for Python kernels (no history file); the last keeps ipykernel 7's "Kernel is running over TCP
# without encryption" start-up warning (a local kernel on 127.0.0.1) out of the student's output.
c.Validator.Execute.extra_arguments = [
    "--HistoryManager.hist_file=:memory:",
    "--InteractiveShell.xmode=Minimal",
    "--IPKernelApp.log_level=ERROR",
]
# `nbgrader validate` cuts every printed line at this width (default 90), which cut self-check
# messages in half; the longest measured is about 200 characters. (The Validate button shows them
# whole whatever this says.)
c.Validator.width = 240

# --- The instructor's side: never grade with nbgrader's defaults ----------------------------------
# This file is loaded before the course's own nbgrader_config.py, which replaces the setting below.
# When the course's file fails to load (a typo, a missing import), nbgrader only logs the error and
# goes on with its defaults, which would run student code in a plain kernel with the test cells
# inside it. Then this placeholder stops `nbgrader autograde` for every student instead.
from nbgrader.preprocessors import NbGraderPreprocessor  # noqa: E402


class CourseConfigNotLoaded(NbGraderPreprocessor):
    """The only autograde step while the course's nbgrader_config.py has not replaced it."""

    def preprocess(self, nb, resources):
        raise RuntimeError(
            "the course's nbgrader_config.py did not load (see the error above), so nothing was "
            "graded: student code never runs without the course's sandbox and judge"
        )


c.Autograde.autograde_preprocessors = [CourseConfigNotLoaded]
