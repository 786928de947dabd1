"""nbgrader configuration for the course "Generating images with variational autoencoders".

The repository root is the course directory. Plain nbgrader commands run from here with no extra
flags (``--force`` aside): ``nbgrader generate_assignment vae``, ``nbgrader autograde vae``,
``nbgrader generate_feedback vae``, ``nbgrader export``. Every course-specific behaviour hooks in
below, so an instructor never needs a wrapper script to grade correctly.

Environment variables (all optional):
  NBGRADER_DB_URL    gradebook URL; default: SQLite file gradebook.db in this folder
                     (e.g. postgresql://user@host/vae for a shared server)
  VAE_MODE           training budget inside graded notebooks; default for the grading kernel: grading
  VAE_CELL_TIMEOUT      CPU seconds one cell may compute during autograding; default 60
  VAE_TRAINING_TIMEOUT  CPU seconds the training cell (or a student cell calling .fit) may compute; default 180
  VAE_SANDBOX           set to off to grade without the bubblewrap sandbox (not recommended);
                        `python -m measure.sandbox_overhead 5` measures what it costs
"""

import os

c = get_config()  # noqa: F821  (provided by nbgrader when it loads this file)

COURSE_ROOT = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.course_id = "vae-mnist"
c.CourseDirectory.root = COURSE_ROOT
c.CourseDirectory.db_url = (
    os.environ.get("NBGRADER_DB_URL") or f"sqlite:///{os.path.join(COURSE_ROOT, 'gradebook.db')}"
)

# Student-facing stub that replaces each solution region.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Autograding executes student notebooks with the short, calibrated training budget
# (course/budget.py): the grading kernel starts with VAE_MODE=grading unless set otherwise
# (grader/vae_grader/sandbox/environment.py). Loading this file changes no environment variable.

# Time limits per cell: the training cell (and any cell calling .fit) gets its own, longer limit,
# because at a flat 60 s it timed out in demo runs and cost correct submissions their training
# points; every other cell gets 60 s, so an endless loop costs a submission one minute, not three.
# Every limit below rests on measurements kept in one place: docs/measurements.md, "What the limits rest on".
c.Execute.timeout = int(os.environ.get("VAE_CELL_TIMEOUT", "60"))
c.RobustExecute.training_timeout = int(
    os.environ.get("VAE_TRAINING_TIMEOUT", "180")
)  # cells that call .fit(
c.Execute.interrupt_on_timeout = True

# --- Feedback pages (grader/vae_grader/preprocessors/feedback.py) -------------------------------------
# Feedback is rendered from the autograded notebooks, which hold the hidden tests; nbgrader alone
# shows their source and quotes them in tracebacks (upstream #917, #1363). StudentFeedback removes
# the hidden regions and cuts each error down to the message written for the student. It also makes
# the page safe to open: markdown and HTML outputs go through nbconvert's sanitiser
# (SanitizeHTML, bleach) and JavaScript, SVG and widget outputs are dropped, because nbgrader's
# feedback template prints them raw. Hidden-test markers (ClearHiddenTests.begin_test_delimeter /
# end_test_delimeter, nbgrader's defaults) count only in the instructor's test cells, so a student
# cell quoting them no longer stops generate_feedback for the whole class.
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import GetGrades  # noqa: E402

from vae_grader.preprocessors.feedback import FEEDBACK_TEMPLATE, StudentFeedback  # noqa: E402

c.GenerateFeedback.preprocessors = [GetGrades, StudentFeedback, CSSHTMLHeaderPreprocessor]
# nbgrader's page, its index naming each entry's part and check instead of "Test cell" (feedback.py).
c.HTMLExporter.merge(FEEDBACK_TEMPLATE)

# --- Sandboxed grading kernel and robust execution (grader/vae_grader/sandbox/kernels.py, issues 5, 10) ----
# Autograding runs student code. It runs in a bubblewrap sandbox built by allowlist on an empty
# root: read-only /usr (and the /bin, /lib... links), two files of /etc plus a generated passwd,
# the Python installation, the course package, $MNIST_NPZ; private size-limited /tmp, /dev/shm and
# working folder holding only the files the release also has; no network; an environment of
# allowlisted variables; the socket folder deleted once the kernel's sockets exist (no byte of the
# grader's disk is writable). `python -m vae_grader.sandbox.kernels --show` lists it all. Without a working
# `bwrap`, `nbgrader autograde` refuses with one line; VAE_SANDBOX=off grades without the sandbox
# (the robust executor still applies). Everything below is measured; reasons are in the modules named.
from nbconvert.preprocessors import ClearMetadataPreprocessor  # noqa: E402
from nbgrader.preprocessors import (  # noqa: E402
    AssignLatePenalties,
    CheckCellMetadata,
    ClearOutput,
    DeduplicateIds,
    IgnorePattern,
    LimitOutput,
    OverwriteCells,
    OverwriteKernelspec,
    SaveAutoGrades,
)

from vae_grader.preprocessors.execute import RobustExecute  # noqa: E402
from vae_grader.preprocessors.flags import FlagForReview  # noqa: E402
from vae_grader.preprocessors.intake import TolerantNotebookExporter, intake_hook  # noqa: E402
from vae_grader.preprocessors.require_verdicts import RequireVerdicts  # noqa: E402
from vae_grader.preprocessors.restructure import RepairSubmission  # noqa: E402
from vae_grader.sandbox.kernels import refuse_unsandboxed_autograde  # noqa: E402
from vae_grader.sandbox.confine import GiB, MiB  # noqa: E402

refuse_unsandboxed_autograde()  # only stops `nbgrader autograde`, never the other commands

# Reading submissions (grader/vae_grader/preprocessors/intake.py, restructure.py): a file that is not a notebook, or a notebook
# under another name, still gets graded as far as it can be, with a note in its feedback; the
# notebook's graded cells are put back in order from the gradebook before nbgrader's own checks.
c.Autograde.exporter_class = TolerantNotebookExporter
c.Autograde.pre_convert_hook = intake_hook
c.Autograde.sanitize_preprocessors = [
    ClearOutput,
    RepairSubmission,
    DeduplicateIds,
    OverwriteKernelspec,
    OverwriteCells,
    CheckCellMetadata,
]
# Executing (grader/vae_grader/preprocessors/execute.py; flags.py marks what it could not run): survives kernel crashes and timeouts, caps output,
# flags what it could not run. Test cells never run in the student's kernel: the judge
# (grader/vae_grader/judge/rulings.py) probes the kernel for data and scores it in this process.
c.Autograde.autograde_preprocessors = [
    RobustExecute,
    IgnorePattern,
    ClearMetadataPreprocessor,
    LimitOutput,
    RequireVerdicts,
    SaveAutoGrades,
    FlagForReview,
    AssignLatePenalties,
    CheckCellMetadata,
]
c.RobustExecute.max_restarts = 6  # new kernels per notebook before the rest is flagged
c.RobustExecute.interrupt_grace = (
    10  # s a timed-out cell gets to stop before its kernel is replaced
)
c.RobustExecute.max_output_bytes = 2 * MiB  # output kept per cell
c.RobustExecute.max_notebook_output_bytes = 16 * MiB  # output kept per notebook
c.RobustExecute.submission_seconds = 900  # CPU s of all of one submission's cells
# The limits count the CPU time of the kernel's process tree, so load cannot change a grade; past
# 10x a cell's limit in wall time it is stopped anyway (flagged if the machine starved it), and a
# submission past 3600 s of wall time is flagged (docs/load.md).
c.RobustExecute.backstop_factor = 10
c.RobustExecute.submission_wall_seconds = 3600
# The kernel's limits (grader/vae_grader/sandbox/kernels.py); 0 disables one.
c.Sandbox.memory_limit = 8 * GiB  # RLIMIT_AS
c.Sandbox.cpu_share = 1.0  # cores for the kernel's tree, by a cgroup quota where the host allows
c.Sandbox.max_processes = 256  # RLIMIT_NPROC (threads count)
c.Sandbox.max_file_size = 256 * MiB  # RLIMIT_FSIZE
c.Sandbox.cpu_seconds = 1200  # RLIMIT_CPU for the kernel
c.Sandbox.scratch_size = 512 * MiB  # each private tmpfs: /tmp, /dev/shm, the working folder
c.Sandbox.kernel_uid = 0  # grading as root: kernel's uid (0: 100000 + pid mod 50000)
c.Sandbox.socket_timeout = 120  # s for the kernel to open its sockets
# The verdict process (grader/vae_grader/judge/confined.py): unpacks answers, loads models, judges.
# Reasons for each value: docs/measurements.md, "What the limits rest on".
c.ConfinedJudge.memory_limit = 3 * GiB  # resident memory; past it the verdict scores 0
c.ConfinedJudge.address_space = 8 * GiB  # RLIMIT_AS backstop
c.ConfinedJudge.cpu_seconds = 120  # CPU s per verdict (all threads); past it the verdict scores 0
c.ConfinedJudge.wall_seconds = 600  # past it with CPU to spare: flagged, never zeroed

# --- The exchange (grader/vae_grader/exchange/, docs/exchange.md) ---------------------------------
# nbgrader's filesystem exchange believes the name a student gives an inbound folder and follows
# links when collecting as the instructor. SecureCollect takes a submission only from the Unix user
# whose student id it claims (exchange_roster.csv in this folder maps users to ids; without it the
# id is the user name), never follows a link or opens a FIFO, refuses files of another owner and
# times in the future; each refusal is one line in the log and in reports/collect-<assignment>.txt.
# PrivateReleaseFeedback gives each feedback page to its student alone when releasing as root, and
# skips (with one line) a student whose feedback folder is malformed instead of stopping for all.
# StickyReleaseAssignment leaves the exchange root sticky (1777): nbgrader's 0777 would let any
# student rename the course's folder away and put their own in its place; collect and
# release_feedback refuse an exchange where that is possible.
# Autograde copies no file of source/<assignment>/ that the release lacks (an instructor's notes
# would otherwise land in every student's autograded/ and feedback/ folders).
from vae_grader.exchange.collect import SecureCollect  # noqa: E402
from vae_grader.exchange.private_files import private_source_files  # noqa: E402
from vae_grader.exchange.release_assignment import StickyReleaseAssignment  # noqa: E402
from vae_grader.exchange.release_feedback import PrivateReleaseFeedback  # noqa: E402

c.ExchangeFactory.collect = SecureCollect
c.ExchangeFactory.release_feedback = PrivateReleaseFeedback
c.ExchangeFactory.release_assignment = StickyReleaseAssignment
c.Autograde.exclude_overwriting = private_source_files(COURSE_ROOT)
