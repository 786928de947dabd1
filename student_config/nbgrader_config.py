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

# `nbgrader submit`, `fetch_assignment` and `fetch_feedback` refuse a course folder in the exchange
# that anyone could have replaced (a root writable by all without the sticky bit, a link, a folder
# of another owner; exchange_problem says why that is the rule a student can check).
# `nbgrader submit` submits only in the student's own name. nbgrader's `submit --student=bob` writes
# a submission in bob's name for whoever runs it; OwnSubmit refuses that with one line. It is a
# courtesy, not the defence: a student controls their own client and can make any folder by hand,
# so the instructor's collect checks who owns each submission (docs/exchange.md). It lives here, not
# in the course package, because importing that package loads Keras.
# nbgrader leaves a submission readable by anyone who knows its folder's name (files 0444) and its
# top folder writable by all (0777, so that the instructor may delete it); when inbound/ belongs to
# root, root reads everything anyway, so the submission is made private: folders 0700, files 0400.
import stat  # noqa: E402

from nbgrader.exchange.default.fetch_assignment import ExchangeFetchAssignment  # noqa: E402
from nbgrader.exchange.default.fetch_feedback import ExchangeFetchFeedback  # noqa: E402
from nbgrader.exchange.default.submit import ExchangeSubmit  # noqa: E402
from nbgrader.utils import get_username  # noqa: E402


def exchange_problem(root: str, course_id: str, *below: str) -> str | None:
    """Why the course's folder in the exchange cannot be trusted, or None (also when it is missing:
    nbgrader then says so itself).

    A student cannot know the instructor's uid except from the exchange, so trust is anchored in
    what no other user can change. With the root sticky (1777) or closed to others, only the owner
    of ``<root>/<course>`` (and root) can rename or replace it, so whoever owns it made it before
    anyone else could: the instructor's release, which fails on a folder it does not own (a student
    making it first is caught there). Below it, ``inbound/``, ``outbound/`` and ``feedback/`` must be
    real folders owned by the same user or root, and the course folder closed to others. A root
    writable by everyone without the sticky bit (nbgrader's own 0777) proves nothing: any student
    could have renamed the instructor's folder away and made their own, which would then read what
    is submitted and decide what is fetched.
    """
    try:
        top = os.stat(root)
        course_path = os.path.join(root, course_id)
        course = os.lstat(course_path)
    except FileNotFoundError:
        return None
    if top.st_mode & stat.S_IWOTH and not top.st_mode & stat.S_ISVTX:
        return (
            f"the exchange {root} is writable by everyone without the sticky bit, so anyone could "
            f"have replaced the course's folder: ask your instructor to run `chmod 1777 {root}`"
        )
    if not stat.S_ISDIR(course.st_mode) or course.st_mode & stat.S_IWOTH:
        return f"{course_path} is not a folder closed to others: ask your instructor to check it"
    for name in below:
        path = os.path.join(course_path, name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (0, course.st_uid):
            return f"{path} is not the course's own folder: ask your instructor to check it"
    return None


class OwnSubmit(ExchangeSubmit):
    """`nbgrader submit` that submits only as the user running it, into a trusted course folder."""

    def init_dest(self):
        own = get_username()
        requested = self.coursedir.student_id
        if requested not in ("", "*", own):
            shown = requested.encode("unicode_escape").decode("ascii")
            self.fail(f"submit refused: you are {own} and can submit only as {own}, not as {shown}")
        problem = exchange_problem(self.root, self.coursedir.course_id, "inbound", "outbound")
        if problem:
            self.fail(f"submit refused: {problem}")
        super().init_dest()

    def copy_files(self):
        super().copy_files()
        if os.stat(self.inbound_path).st_uid == 0:
            entry = os.path.join(self.inbound_path, self.assignment_filename)
            self.set_perms(entry, fileperms=0o400, dirperms=0o700)


class OwnFetch(ExchangeFetchAssignment):
    """`nbgrader fetch_assignment` from a course folder no student could have replaced."""

    def init_src(self):
        problem = exchange_problem(self.root, self.coursedir.course_id, "outbound")
        if problem:
            self.fail(f"fetch_assignment refused: {problem}")
        super().init_src()


class OwnFetchFeedback(ExchangeFetchFeedback):
    """`nbgrader fetch_feedback` from a course folder no student could have replaced."""

    def init_src(self):
        problem = exchange_problem(self.root, self.coursedir.course_id, "feedback")
        if problem:
            self.fail(f"fetch_feedback refused: {problem}")
        super().init_src()

    def do_copy(self, src, dest):
        """A released page is the student's alone (mode 0400) and nbgrader's copy keeps that mode,
        so the next fetch could not overwrite the copy it had made and stopped before the feedback of
        a resubmission: each earlier copy, the student's own file, is made writable first."""
        for notebook_id, timestamp, _ in self.feedback_files:
            earlier = os.path.join(dest, timestamp, notebook_id + ".html")
            if os.path.isfile(earlier) and not os.path.islink(earlier):
                os.chmod(earlier, 0o600)
        super().do_copy(src, dest)


c.ExchangeFactory.submit = OwnSubmit
c.ExchangeFactory.fetch_assignment = OwnFetch
c.ExchangeFactory.fetch_feedback = OwnFetchFeedback

# Validating runs the whole notebook with the short grading budget (course/budget.py picks it from
# NBGRADER_EXECUTION, which nbgrader sets). nbgrader's default limit of 30 s per cell stopped a
# correct notebook in the training cell; 300 s leaves a student's slower laptop several times the
# slowest measured run (docs/measurements.md, "What the limits rest on"). A cell past it is interrupted and
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
