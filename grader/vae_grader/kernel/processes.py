"""The kernel's processes, as the operating system sees them: what the student's code left running
beside the kernel, and why a kernel process ended.

``RobustExecute`` asks after every cell (a fork bomb's children, a background server: the kernel is
replaced, which ends every process in its sandbox) and after a kernel died (the reason goes into
the cell's error and the notes).
"""

from __future__ import annotations

import psutil

from vae_grader.sandbox.kernels import SandboxedKernelManager


def stray_processes(km) -> int:
    """Processes the student's code left running beside the kernel (a fork bomb's children, say)."""
    process = getattr(getattr(km, "provisioner", None), "process", None)
    if process is None or process.poll() is not None:
        return 0
    try:
        found = [
            p
            for p in psutil.Process(process.pid).children(recursive=True)
            if p.status() != psutil.STATUS_ZOMBIE
        ]
    except psutil.Error:
        return 0
    expected = (
        2 if isinstance(km, SandboxedKernelManager) else 0
    )  # bwrap's init and the kernel itself
    return max(0, len(found) - expected)


def death_reason(km) -> str:
    """Why the kernel behind ``km`` stopped, in words for the student (from its exit code and output)."""
    code = None
    provisioner = getattr(km, "provisioner", None)
    process = getattr(provisioner, "process", None)
    if process is not None:
        code = process.poll()
    tail = " ".join(km.output_tail()[-3:]) if isinstance(km, SandboxedKernelManager) else ""
    if "MemoryError" in tail or code == 128 + 9 or code == -9:
        reason = "it was killed: it ran out of memory or killed itself"
    elif code in (128 + 24, -24):
        reason = "it used up the grader's CPU time limit"
    elif code is None:
        reason = "it stopped responding"
    else:
        reason = f"the Python process exited with code {code}"
    return reason
