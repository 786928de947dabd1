"""Executing a student notebook so that one bad cell costs only what depends on it.

nbgrader's ``Execute`` (an nbclient ``NotebookClient``) gives up on the whole submission when the
kernel dies: measured with nbgrader 0.9.6, ``os._exit`` in one cell removes the student's
autograded notebook and makes ``autograde`` exit 1, and a cell stuck in a loop that ignores the
interrupt times out every following cell. :class:`RobustExecute` replaces it in
``Autograde.autograde_preprocessors`` and runs the cells itself:

* **Kernel death** (``os._exit``, ``exit()``, a fatal signal, the CPU limit): the cell gets an
  error that says so, a new kernel starts, the cells that had completed are run again (their
  outputs kept from the first run) so the state is back, and grading goes on after the crashing
  cell. Later parts that do not need that cell still earn their points.
* **Timeout**: a cell may compute ``timeout`` seconds (``Execute.timeout``), a cell that trains
  a model (the training answer cell, or a student cell whose parsed code calls ``.fit(``)
  ``training_timeout`` seconds; the short limit keeps an endless loop elsewhere from costing
  minutes per submission. The limits count the CPU time of the kernel's whole process tree
  (``vae_grader.kernel.clock``), so a busy machine cannot make a correct cell run out of time; a
  wall-clock backstop (``backstop_factor`` times the limit) stops whatever else runs on.
  Past its limit the kernel is interrupted; if the cell does not stop within ``interrupt_grace``
  seconds, the kernel is replaced as above. The cell gets a "ran longer than the grader's limit
  of N s of computing" (or "... while idle: it slept or waited") error: a kernel idle, neither
  computing nor waiting for a CPU, for as long as the cell's limit is stopped then. A cell stopped by
  the backstop while its kernel was waiting for a CPU (starved by the machine) is no fault of the
  student's: the rest of the submission is flagged for the instructor instead of graded.
* **Start-up is not the student's**: each new kernel imports ``warm_imports`` (Keras, the course
  package) before the first cell, so the set-up cell's imports cost it nothing.
* **Test cells are never run in the student's kernel.** For each visible or hidden test cell the
  kernel gets a probe instead (``vae_grader.judge.rulings``): it computes data from the student's code, and
  the verdict is reached in this process. So the kernel cannot fake a pass, and a test's source
  never reaches it. Tampering with the kernel only changes what the student's own code computes.
* **Time by budget**: a submission's cells have ``submission_seconds`` of CPU time in all
  (replays after a new kernel included); past it, or past ``submission_wall_seconds`` of wall
  time, the cells it could not reach are flagged with the reason.
* **Stray processes** (a fork bomb's children, a background server): the kernel is replaced as
  above, which ends every process in its sandbox, and the cell that started them is not counted.
* **Output size**: a cell's output past ``max_output_bytes`` (a notebook's past
  ``max_notebook_output_bytes``) is dropped with a note, so a print loop cannot exhaust the
  grader's memory.
* Notes for the student (``vae_grader.notes``: from intake, the sanitize step in ``vae_grader.preprocessors.restructure`` and from here) go
  into a Markdown cell at the top of the autograded notebook, which the feedback page shows.
  Where a graded cell could not be run at all (the kernel kept dying), it is flagged for manual
  grading with the reason (``vae_grader.preprocessors.flags.FlagForReview``), never silently zeroed.

The kernel itself is the sandboxed one from ``vae_grader.sandbox.kernels`` unless ``VAE_SANDBOX=off``.

This module runs the notebook and decides what each cell's outcome means. It drives the kernel through
one collaborator, ``vae_grader.kernel.session.KernelSession`` (send a cell, wait, interrupt, a new kernel
with the state replayed, the submission's run state), asks ``vae_grader.kernel.output_limits.OutputCap``
what output to keep, and scores test cells with ``vae_grader.kernel.judged_cells.judge_cell``;
``vae_grader.kernel.time_limits``, ``vae_grader.kernel.processes`` (stray processes, why a kernel died)
and ``vae_grader.kernel.cell_messages`` (what a cell is told) are plain functions. The options stay
``RobustExecute``'s traits, since ``nbgrader_config.py`` sets them by its name.
"""

from __future__ import annotations

import time

from jupyter_core.utils import run_sync
from nbclient.client import NotebookClient
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import Execute
from traitlets import Enum, Float, Integer, List, Unicode

from vae_grader.cells import grade_id
from vae_grader.judge import rulings as judge
from vae_grader.judge.confined import ConfinedJudge
from vae_grader.kernel import time_limits
from vae_grader.kernel.cell_messages import add_error, drop_interrupt_errors, flag_not_run, label
from vae_grader.kernel.clock import SLEPT
from vae_grader.kernel.judged_cells import judge_cell
from vae_grader.kernel.output_limits import OutputCap
from vae_grader.kernel.processes import death_reason, stray_processes
from vae_grader.kernel.session import DEAD, TIMEOUT, KernelSession, RunState
from vae_grader.notes import add_note, render_notes
from vae_grader.sandbox.environment import SANDBOX_ENV, grading_kernel_environment, sandbox_disabled
from vae_grader.sandbox.kernels import kernel_manager_class

__all__ = ["RobustExecute"]

_RESTARTED = "the grader started a new kernel, re-ran the cells above and went on without this cell"
_STOPPED = f"ended the kernel (exit(), quit() or os._exit() stop the Python process); {_RESTARTED}"


def asked_to_exit(reply: dict | None) -> bool:
    """Whether the cell called IPython's ``exit()``/``quit()``: its execute_reply carries the
    messaging protocol's ``ask_exit`` payload, and the kernel stops about 0.1 s after replying.

    Waiting for the death instead is a race: a kernel that answers one more request before it
    stops looks alive, the cell joins the replay list, and every later restart dies replaying it
    (measured: without this check, test_exit_in_a_cell_costs_only_that_cell failed 3 runs of 3)."""
    payload = ((reply or {}).get("content") or {}).get("payload") or []
    return any(
        isinstance(p, dict) and p.get("source") == "ask_exit" and not p.get("keepkernel")
        for p in payload
    )


class RobustExecute(Execute):
    """nbgrader's ``Execute`` that survives crashes, timeouts and tampering (see the module docstring)."""

    max_restarts = Integer(
        6,
        help="New kernels one notebook may need before the remaining cells are flagged instead of run.",
    ).tag(config=True)
    interrupt_grace = Integer(
        10,
        help="Seconds a timed-out cell gets to stop after the interrupt before its kernel is replaced.",
    ).tag(config=True)
    training_timeout = Integer(
        180,
        help="CPU seconds a training cell may use (every other cell gets Execute.timeout); at 60 s correct "
        "submissions lost points (measured times: docs/measurements.md, 'What the limits rest on').",
    ).tag(config=True)
    limit_clock = Enum(
        ("cpu", "wall"),
        "cpu",
        help="What the cell and submission limits count: 'cpu', the CPU time of the kernel's process "
        "tree (the same idle and loaded); 'wall', wall-clock time, which a busy machine stretches "
        "(kept to show that: python -m measure.load_test).",
    ).tag(config=True)
    backstop_factor = Integer(
        10,
        help="A cell may take this many times its CPU limit in wall time before it is stopped anyway "
        "(it sleeps or blocks, or the machine starves it: docs/load.md).",
    ).tag(config=True)
    starved_fraction = Float(
        0.25,
        help="A cell stopped by the wall-clock backstop whose kernel waited for a CPU at least this "
        "fraction of the time was starved by the machine: flagged, never zeroed (docs/load.md).",
    ).tag(config=True)
    warm_imports = List(
        Unicode(),
        ["course", "course.checks", "course.plotting", "course.selfcheck", "keras", "scipy.stats"],
        help="Modules each new kernel imports before the first cell, so that the set-up cell's "
        "imports (seconds of CPU, minutes on a loaded machine) are never charged to the student.",
    ).tag(config=True)
    warm_timeout = Integer(
        600,
        help="Wall seconds the warm-up imports may take; past them grading goes on without.",
    ).tag(config=True)
    training_cells = List(
        Unicode(),
        ["training"],
        help="grade_ids of the cells that train; any other cell whose code calls .fit( counts too.",
    ).tag(config=True)
    max_output_bytes = Integer(
        2 * 2**20,
        help="Output kept per cell, in bytes (the master's largest: docs/measurements.md, 'What the limits rest on').",
    ).tag(config=True)
    max_notebook_output_bytes = Integer(
        16 * 2**20,
        help="Output kept per notebook, in bytes.",
    ).tag(config=True)
    alive_timeout = Integer(
        30,
        help="Seconds the kernel gets to answer a kernel_info request after a cell before it counts as stuck.",
    ).tag(config=True)
    submission_seconds = Integer(
        900,
        help="CPU seconds one submission's cells may use in all (test probes and replays after a new "
        "kernel included); past it the remaining cells are flagged, not run (README, 'What the limits "
        "rest on').",
    ).tag(config=True)
    submission_wall_seconds = Integer(
        3600,
        help="Wall-clock backstop of one submission: past it the remaining cells are flagged, not run "
        "(a machine this busy grades nothing fairly; docs/load.md).",
    ).tag(config=True)

    def __init__(self, **kw):
        kw.setdefault("kernel_manager_class", kernel_manager_class())
        super().__init__(**kw)
        if sandbox_disabled():
            self.log.warning(
                "%s=off: student code runs WITHOUT the sandbox, with your rights", SANDBOX_ENV
            )

        self.timeout_func = self.cell_limit  # nbclient's public hook for per-cell time limits

    async def async_start_new_kernel(self, **kwargs) -> None:
        """nbclient's kernel start, with the grading defaults in the kernel's environment (``vae_grader.sandbox.environment``)."""
        kwargs.setdefault("env", grading_kernel_environment())
        await super().async_start_new_kernel(**kwargs)

    def cell_limit(self, cell: NotebookNode | None) -> int | None:
        """Seconds ``cell`` may run: ``training_timeout`` for a training cell, ``Execute.timeout`` for any other."""
        return time_limits.cell_limit(
            cell, self.timeout, self.training_timeout, self.training_cells
        )

    # --- the whole notebook -----------------------------------------------------------------------------

    def preprocess(self, nb: NotebookNode, resources=None, km=None):
        """Run every code cell (nbconvert's ``ExecutePreprocessor.preprocess``, made robust)."""
        # The verdict process imports Keras (seconds) while the kernel starts and runs the first cells.
        self.verdicts = ConfinedJudge(parent=self)
        self.verdicts.start()
        # As ExecutePreprocessor.preprocess does (re-initialising the client per notebook, and its
        # private _check_assign_resources): the way to reuse one preprocessor for many notebooks.
        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        self.session = KernelSession(self, RunState())
        self.output_cap = OutputCap(
            self.nb, self.session.state, self.max_output_bytes, self.max_notebook_output_bytes
        )
        started = time.monotonic()
        try:
            run_sync(self._run_notebook)()
        finally:
            self.verdicts.stop()
        render_notes(self.nb)
        self._log_timings(time.monotonic() - started)
        return self.nb, self.resources

    def _log_timings(self, seconds: float) -> None:
        """One log line on where the time went, so a slow submission can be told from a slow grader."""
        spent = ", ".join(f"{k} {v:.1f} s" for k, v in self.session.state.seconds.items())
        verdicts = self.verdicts
        self.log.info(
            "Verdict process: %.1f CPU s (longest verdict %.1f s), peak %.0f MB resident",
            verdicts.cpu_used,
            verdicts.cpu_longest,
            verdicts.peak_rss / 2**20,
        )
        slowest = ", ".join(
            f"cell {i} {t:.1f} s ({c:.1f} CPU s)"
            for t, i, c in sorted(self.session.state.slowest, reverse=True)[:3]
        )
        self.log.info(
            "Executed %d cells in %.1f s (%s; cells and probes %.1f CPU s; slowest: %s; %d new kernel(s))",
            self.code_cells_executed,
            seconds,
            spent,
            self.session.state.charged,
            slowest,
            self.session.state.restarts,
        )

    async def _run_notebook(self) -> None:
        """Start the kernel and run the cells; a failure of the grader's own flags what was not run."""
        self.session.kernel_started = time.monotonic()
        try:
            async with self.async_setup_kernel():
                await self.session.ready()
                for index, cell in enumerate(self.nb.cells):
                    if cell.cell_type == "code" and cell.source.strip():
                        await self._run_cell(index, cell)
                self.set_widgets_metadata()
        except Exception as exc:  # e.g. no kernel could be started: nothing the student did
            reason = (
                f"the grader could not run the notebook ({type(exc).__name__}: {str(exc)[:200]})"
            )
            self.log.exception("%s", reason)
            self._flag_unattempted(reason)

    def _flag_unattempted(self, reason: str) -> None:
        """Flag every code cell no kernel was sent, so none of them is silently zeroed."""
        for index, cell in enumerate(self.nb.cells):
            if (
                cell.cell_type == "code"
                and cell.source.strip()
                and index not in self.session.state.attempted
            ):
                flag_not_run(self.nb, cell, reason)

    def new_cell_output(self) -> None:
        """A cell starts (``KernelSession.execute``): its output count begins at zero."""
        self.output_cap.new_cell()

    def output(self, outs, msg, display_id, cell_index):
        """nbclient's public output hook: an output message is recorded only if ``OutputCap`` keeps it."""
        cap = getattr(self, "output_cap", None)  # set per notebook by preprocess
        if cap is not None and not cap.admit(outs, msg):
            return None
        return super().output(outs, msg, display_id, cell_index)

    # --- one cell -----------------------------------------------------------------------------------------

    async def _run_cell(self, index: int, cell: NotebookNode) -> None:
        """Run one code cell (judge it, if a test cell), then check what it did to the kernel."""
        state = self.session.state
        if state.given_up is None:
            state.given_up = time_limits.out_of_time(
                state.charged, state.started, self.submission_seconds, self.submission_wall_seconds
            )
        if state.given_up:
            flag_not_run(self.nb, cell, state.given_up)
            return
        state.attempted.add(index)
        is_test = utils.is_grade(cell) and not utils.is_solution(cell)
        test = judge.judged(grade_id(cell)) if is_test else None
        if (
            is_test and test is None
        ):  # fail closed: a test cell is never run in the student's kernel
            flag_not_run(
                self.nb, cell, f"the grader has no check for the test cell {grade_id(cell)!r}"
            )
            return
        started = time.monotonic()
        reply = None
        if test is not None:
            outcome = await judge_cell(
                self.session, self.verdicts, self.output_cap, self.resources, index, cell, test
            )
        else:
            outcome, reply = await self.session.execute(index, cell)
        took = time.monotonic() - started
        cpu = self.session.last_clock.charged if self.session.last_clock is not None else took
        state.charged += cpu
        state.spend("tests" if test is not None else "cells", took)
        state.slowest.append((took, index, cpu))
        if outcome in ("ok", "timeout") and await self._left_processes(index, cell, outcome):
            return
        if outcome == "ok" and asked_to_exit(reply):
            await self._incident(index, cell, "KernelStopped", _STOPPED, restart=True)
            return
        if outcome == "ok":
            if await self._kernel_answers(index, cell) and test is None:
                state.timeline.append(index)
            return
        await self._report_failure(index, cell, outcome)

    async def _left_processes(self, index: int, cell: NotebookNode, outcome: str) -> bool:
        """Whether the cell left processes running; if so the kernel (and its sandbox) is replaced."""
        strays = stray_processes(self.km)
        if not strays:
            return False
        if outcome == "timeout":
            drop_interrupt_errors(cell)
        await self._incident(
            index,
            cell,
            "StrayProcesses",
            f"left {strays} process(es) running (os.fork or "
            f"subprocess); the grader stopped them: {_RESTARTED}",
            restart=True,
        )
        return True

    async def _kernel_answers(self, index: int, cell: NotebookNode) -> bool:
        """Whether the kernel still answers after a cell that completed; if not, it is replaced."""
        assert self.kc is not None
        alive = await self.session.answers(self.alive_timeout)
        if alive == DEAD:
            await self._incident(index, cell, "KernelStopped", _STOPPED, restart=True)
            return False
        if alive == TIMEOUT:
            await self._incident(
                index,
                cell,
                "KernelUnresponsive",
                f"left the kernel unable to answer within {self.alive_timeout} s; {_RESTARTED}",
                restart=True,
            )
            return False
        return True

    async def _report_failure(self, index: int, cell: NotebookNode, outcome: str) -> None:
        """A cell that timed out, got stuck or killed its kernel: say so; replace the kernel unless it stopped."""
        if outcome == "starved":
            drop_interrupt_errors(cell)
            self._starved(index, cell)
        elif outcome == "timeout":
            drop_interrupt_errors(cell)
            await self._incident(
                index,
                cell,
                "CellTimeoutError",
                f"{self._past_limit(cell)} and was stopped; the cells after it still ran",
                restart=False,
            )
        elif outcome == "stuck":
            await self._incident(
                index,
                cell,
                "CellTimeoutError",
                f"{self._past_limit(cell)} and did not stop when interrupted; {_RESTARTED}",
                restart=True,
            )
        else:  # "dead"
            await self._incident(
                index,
                cell,
                "KernelDied",
                f"stopped the kernel ({death_reason(self.km)}); {_RESTARTED}",
                restart=True,
            )

    def _past_limit(self, cell: NotebookNode) -> str:
        """Which of the cell's limits it ran past, in words for the student."""
        limit = self.cell_limit(cell)
        clock = self.session.last_clock
        if self.limit_clock == "wall":
            return f"ran longer than the grader's limit of {limit} s"
        if clock is not None and clock.verdict == SLEPT:
            return (
                f"ran longer than the grader's limit of {limit} s while idle: it slept or waited "
                f"for {clock.idle:.0f} s of its {clock.wall:.0f} s, computing only "
                f"{clock.cpu_used:.1f} s"
            )
        return f"ran longer than the grader's limit of {limit} s of computing (CPU time)"

    def _starved(self, index: int, cell: NotebookNode) -> None:
        """The machine gave the cell too little CPU to finish within the backstop: nothing the
        student did, so the submission is flagged for the instructor and the rest is not run."""
        clock = self.session.last_clock
        got = (
            f"{clock.cpu_used:.1f} s of computing in {clock.wall:.0f} s" if clock else "too little"
        )
        reason = (
            f"the grading machine was too busy: {label(index, cell)} got only {got} "
            f"(its limit is {self.cell_limit(cell)} s of computing)"
        )
        add_error(
            cell, "NotGraded", f"this cell was stopped: {reason}; your instructor will grade it"
        )
        add_note(self.nb, f"{reason}; your instructor will grade this submission.", flag=reason)
        self.session.state.given_up = reason

    async def _incident(
        self, index: int, cell: NotebookNode, ename: str, what: str, *, restart: bool
    ) -> None:
        """Tell the student what happened (in the cell and in the notes at the top), then go on."""
        add_error(cell, ename, f"this cell {what}")
        add_note(self.nb, f"{ename}: {label(index, cell)} {what}.", cell=grade_id(cell))
        if restart:
            await self.session.recover(f"{ename} in cell {index}")
