"""One nbgrader command in a course folder, its output kept in a log, its outcome in one line.

The class's autograding itself runs on a Dask cluster (:mod:`vae_grader.pipeline.dask_runs`); this module runs
the commands around it (``generate_assignment``, ``generate_feedback``, ``export``) and each
worker's ``nbgrader autograde --student``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from vae_grader.pipeline.cluster import PipelineError
from vae_grader.paths import nbgrader_command, tool_env

__all__ = ["log_summary", "run_nbgrader"]


def run_nbgrader(
    root: Path,
    log: Path,
    *args: str,
    check: bool = True,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> tuple[bool, str]:
    """Run one nbgrader command in ``root`` (environment ``env``, default :func:`tool_env`); keep
    its output in ``log``; return (ok, one-line summary)."""
    command = nbgrader_command(*args)
    with open(log, "w") as handle:
        handle.write("$ nbgrader " + " ".join(args) + "\n")
        handle.flush()
        process = subprocess.Popen(
            command,
            cwd=root,
            env=env or tool_env(),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # nbgrader and the kernel it started
            process.wait()
            code = None
    summary = (
        f"stopped after {timeout:.0f} s"
        if code is None
        else log_summary(log.read_text(errors="replace"))
    )
    ok = code == 0
    if check and not ok:
        raise PipelineError(f"nbgrader {args[0]} failed: {summary} (full log: {log})")
    return ok, summary


EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception|Exit|Interrupt)\w*: \S")


def log_summary(text: str) -> str:
    """The most telling line of an nbgrader log: the last exception it printed (with nbclient's
    "The message was: ..." line), else its last ERROR line, else its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for index in range(len(lines) - 1, -1, -1):
        if EXCEPTION_LINE.match(lines[index]):
            detail = (
                lines[index + 1]
                if index + 1 < len(lines) and lines[index + 1].startswith("The message was")
                else ""
            )
            return f"{lines[index]} {detail}".strip()[:300]
    errors = [line for line in lines if "| ERROR]" in line]
    return (errors or lines or ["(no output)"])[-1][:300]
