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

# `nbgrader submit` submits only in the student's own name. nbgrader's `submit --student=bob` writes
# a submission in bob's name for whoever runs it; OwnSubmit refuses that with one line. It is a
# courtesy, not the defence: a student controls their own client and can make any folder by hand,
# so the instructor's collect checks who owns each submission (docs/exchange.md). It lives here, not
# in the course package, because importing that package loads Keras.
# nbgrader leaves a submission readable by anyone who knows its folder's name (files 0444) and its
# top folder writable by all (0777, so that the instructor may delete it); when inbound/ belongs to
# root, root reads everything anyway, so the submission is made private: folders 0700, files 0400.
from nbgrader.exchange.default.submit import ExchangeSubmit  # noqa: E402
from nbgrader.utils import get_username  # noqa: E402


class OwnSubmit(ExchangeSubmit):
    """`nbgrader submit` that submits only as the user running it."""

    def init_dest(self):
        own = get_username()
        requested = self.coursedir.student_id
        if requested not in ("", "*", own):
            shown = requested.encode("unicode_escape").decode("ascii")
            self.fail(f"submit refused: you are {own} and can submit only as {own}, not as {shown}")
        super().init_dest()

    def copy_files(self):
        super().copy_files()
        if os.stat(self.inbound_path).st_uid == 0:
            entry = os.path.join(self.inbound_path, self.assignment_filename)
            self.set_perms(entry, fileperms=0o400, dirperms=0o700)


c.ExchangeFactory.submit = OwnSubmit

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
# A failing self-check shows its message alone whatever the mode ("Part 4 self-check failed: the
# layer's output is ...", wrapped to fit the Validate dialog; course.checks.SelfCheckFailed renders
# itself); xmode=Minimal cuts every other error, the student's own included, to its last line
# ("NameError: name 'x' is not defined") under the failing cell's source, where a full traceback
# would push the next failing cell out of the dialog. The first argument is nbgrader's own default
# for Python kernels (no history file); the last keeps ipykernel 7's "Kernel is running over TCP
# without encryption" start-up warning (a local kernel on 127.0.0.1) out of the student's output.
c.Validator.Execute.extra_arguments = [
    "--HistoryManager.hist_file=:memory:",
    "--InteractiveShell.xmode=Minimal",
    "--IPKernelApp.log_level=ERROR",
]
# `nbgrader validate` cuts every printed line at this width (default 90). Self-check messages come
# wrapped to 88 columns; an error of the student's own code is one line of any length (the lab's
# Validate dialog does not use this width: it shows each line whole, cut only at its own edge).
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

# The same guard for the exchange: nbgrader's own collect believes the names students give their
# folders and follows their links (docs/exchange.md), and its release_feedback leaves pages readable
# by name. Until the course's file replaces them, `nbgrader collect` and `release_feedback` refuse.
from nbgrader.exchange.default.collect import ExchangeCollect  # noqa: E402
from nbgrader.exchange.default.release_feedback import ExchangeReleaseFeedback  # noqa: E402


class CollectNeedsCourseConfig(ExchangeCollect):
    """`nbgrader collect` while the course's nbgrader_config.py has not replaced it."""

    def start(self):
        self.fail(
            "the course's nbgrader_config.py did not load (see the error above), so nothing was "
            "collected: nbgrader's own collect would trust the names in inbound/"
        )


class ReleaseFeedbackNeedsCourseConfig(ExchangeReleaseFeedback):
    """`nbgrader release_feedback` while the course's nbgrader_config.py has not replaced it."""

    def start(self):
        self.fail(
            "the course's nbgrader_config.py did not load (see the error above), so no feedback "
            "was released"
        )


c.ExchangeFactory.collect = CollectNeedsCourseConfig
c.ExchangeFactory.release_feedback = ReleaseFeedbackNeedsCourseConfig
