"""What the grading sandbox costs: a kernel start plus ``import course, keras``, with and without it.

    python -m measure.sandbox_overhead 5     # five runs of each, alternating

Prints each kind's median and runs, the median overhead, the fastest runs' difference and the
median of the paired differences, with the load average. Results: docs/measurements.md.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time

from jupyter_client.manager import AsyncKernelManager

from measure.benchmark import load_average
from vae_grader.sandbox.bwrap import bwrap_problem
from vae_grader.sandbox.kernels import SandboxedKernelManager


def _time_kernel(manager_class: type[AsyncKernelManager], code: str, cwd: str) -> float:
    """Seconds from starting a kernel to the end of running ``code`` in it."""

    async def run() -> float:
        started = time.monotonic()
        km = manager_class(kernel_name="python3")
        await km.start_kernel(cwd=cwd)
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=300)
            reply = await kc.execute_interactive(code, timeout=300, output_hook=lambda msg: None)
            if reply["content"]["status"] != "ok":
                raise RuntimeError(f"the timing cell failed: {reply['content'].get('evalue')}")
            return time.monotonic() - started
        finally:
            kc.stop_channels()
            await km.shutdown_kernel(now=True)

    return asyncio.run(run())


def measure_overhead(
    runs: int = 5, code: str = "import course, keras, numpy\nprint(keras.__version__)"
) -> dict[str, list[float]]:
    """Kernel start + ``code`` with and without the sandbox, alternating so load changes hit both."""
    times: dict[str, list[float]] = {"sandboxed": [], "plain": []}
    with tempfile.TemporaryDirectory(prefix="vae-overhead-") as cwd:
        for _ in range(runs):
            times["plain"].append(_time_kernel(AsyncKernelManager, code, cwd))
            times["sandboxed"].append(_time_kernel(SandboxedKernelManager, code, cwd))
    return times


def main(argv: list[str] | None = None) -> int:
    runs = int((argv if argv is not None else sys.argv[1:] or ["5"])[0])
    problem = bwrap_problem()
    if problem:
        print(f"sandbox: NOT usable: {problem}")
        return 1
    times = measure_overhead(runs)
    for name, values in times.items():
        print(
            f"{name:10s} median {statistics.median(values):6.2f} s  runs: {', '.join(f'{v:.2f}' for v in values)}"
        )
    # On a shared machine single runs swing by a factor of two; the fastest run of each kind (the
    # least disturbed) and the median of the paired differences are the robust estimates.
    paired = [s - p for s, p in zip(times["sandboxed"], times["plain"])]
    print(
        f"overhead   median {statistics.median(times['sandboxed']) - statistics.median(times['plain']):+6.2f} s, "
        f"fastest runs {min(times['sandboxed']) - min(times['plain']):+.2f} s, "
        f"median of paired differences {statistics.median(paired):+.2f} s per kernel start"
    )
    print(load_average())
    return 0


if __name__ == "__main__":
    sys.exit(main())
