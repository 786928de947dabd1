"""The grading kernel, confined by bubblewrap: a jupyter_client kernel provisioner, and the refusal to grade without it.

During ``nbgrader autograde`` the student's code runs with the grader's rights, and nbgrader does
not protect against that (its FAQ: "not directly"; upstream issue #483). :class:`SandboxProvisioner`
(a jupyter_client kernel provisioner, registered by entry point as ``vae-sandbox``) starts the very
same ipykernel inside ``bwrap``, with what :class:`vae_grader.confine.Sandbox` allows (its module
docstring lists it all, with the measurements). :class:`SandboxedKernelManager` is what
``RobustExecute`` uses; it only sets public traits. ``VAE_SANDBOX=off`` grades without the
sandbox; where ``bwrap`` is missing or does not work, ``nbgrader autograde`` refuses with one line
(:func:`refuse_unsandboxed_autograde`). ``python -m vae_grader.sandbox --show`` lists what the
kernel sees; ``--overhead N`` measures what the sandbox costs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil  # noqa: F401  (tests reach bwrap lookups through sandbox.shutil.which)
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner
from traitlets import default

from vae_grader.cpu_share import KernelCgroup, share_problem

from vae_grader.confine import (  # noqa: F401  (re-exported: the sandbox's public names)
    ENV_NAMES,
    ENV_PREFIXES,
    ETC_GENERATED,
    SANDBOX_ENV,
    Allowed,
    GiB,
    MiB,
    Sandbox,
    allowed_environment,
    bwrap_problem,
    describe,
    released_files,
    sandbox_disabled,
    scrubbed_environment,
)


@functools.lru_cache(maxsize=None)
def _warn_once(problem: str) -> None:
    logging.getLogger(__name__).warning(
        "Kernels run without a CPU share of their own: %s. Grades still count each kernel's own "
        "CPU time; only how far one kernel can slow another is unbounded (vae_grader.cpu_share).",
        problem,
    )


_CHANNELS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


def refuse_unsandboxed_autograde(argv: list[str] | None = None) -> None:
    """Stop ``nbgrader autograde`` with one line when the sandbox cannot work, unless VAE_SANDBOX=off.

    Called from ``nbgrader_config.py``, which every nbgrader command loads: only ``autograde`` runs
    student code, so the other commands (generate_assignment, feedback, export) are never refused.
    """
    argv = sys.argv if argv is None else argv
    if "autograde" not in argv[1:3] or sandbox_disabled():
        return
    problem = bwrap_problem()
    if problem:
        print(
            f"nbgrader autograde refused: {problem}. Student code would run with your rights; "
            f"set {SANDBOX_ENV}=off to grade without the sandbox anyway.",
            file=sys.stderr,
        )
        raise SystemExit(2)


PROVISIONER_NAME = (
    "vae-sandbox"  # entry point in grader/pyproject.toml (jupyter_client.kernel_provisioners)
)


class SandboxProvisioner(LocalProvisioner):
    """jupyter_client's local provisioner, launching the kernel inside the :class:`Sandbox`.

    A kernel provisioner is jupyter_client's public hook for how a kernel process is started,
    signalled and cleaned up. Registered by entry point as ``vae-sandbox``; a kernel spec selects
    it with ``metadata.kernel_provisioner.provisioner_name`` (:class:`GradingKernelSpecManager`).
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sandbox = Sandbox(parent=self)
        self.cgroup: KernelCgroup | None = None
        self._output_tail: deque[str] = deque(maxlen=64)
        # A signal to bwrap's process group would also hit bwrap itself and end the sandbox;
        # ipykernel's interrupt_request makes the kernel send SIGINT to itself instead.
        if self.kernel_spec is not None:
            self.kernel_spec.interrupt_mode = "message"

    async def pre_launch(self, **kwargs):
        km = self.parent
        km.transport = "ipc"  # the kernel has no network; ZMQ over Unix sockets in a shared folder
        km.cleanup_connection_file()  # on a restart: the file names the sealed sockets, not the new folder
        km.connection_file, km.ip = self.sandbox.prepare(kwargs.get("cwd"))
        kwargs = await super().pre_launch(**kwargs)
        kwargs["cmd"] = self._in_cgroup(self.sandbox.command(kwargs["cmd"]))
        return kwargs

    def _in_cgroup(self, cmd: list[str]) -> list[str]:
        """``cmd`` started in a cgroup of its own that caps its CPU share (``Sandbox.cpu_share``), where
        the host allows one; otherwise ``cmd`` as it is, and the log says why, once."""
        if self.cgroup is not None:  # a restart: the old kernel's cgroup goes with it
            self.cgroup.remove()
            self.cgroup = None
        if not self.sandbox.cpu_share:
            return cmd
        problem = share_problem()
        if problem:
            _warn_once(problem)
            return cmd
        try:
            self.cgroup = KernelCgroup.create(self.sandbox.cpu_share)
        except OSError as exc:
            _warn_once(f"no cgroup for this kernel: {exc}")
            return cmd
        return self.cgroup.command(cmd)

    async def launch_kernel(self, cmd: list[str], **kwargs):
        self.sandbox.lend_connection_file()
        kwargs["env"] = self.sandbox.kernel_environment(kwargs.get("env") or os.environ)
        # Keep the kernel's own stdout/stderr (not cell output: ipykernel sends that over ZMQ) out of
        # the grader's log, but remember its end: it says why a kernel died.
        kwargs["stdout"] = subprocess.PIPE
        kwargs["stderr"] = subprocess.STDOUT
        info = await super().launch_kernel(cmd, **kwargs)
        process = self.process
        if process is not None and process.stdout is not None:
            threading.Thread(target=self._drain, args=(process.stdout,), daemon=True).start()
        ip = await self.sandbox.seal(
            process, str(info["ip"]), [info[c] for c in _CHANNELS], self.output_tail
        )
        # The kernel manager loads this and rewrites its connection file; the kernel has read its copy.
        self.connection_info = {**info, "ip": ip}
        return self.connection_info

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart=restart)
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
        if not restart:
            self.sandbox.remove()

    def _drain(self, stream) -> None:
        try:
            for raw in iter(lambda: stream.readline(4096), b""):
                self._output_tail.append(raw.decode("utf-8", "replace").rstrip()[:500])
        except (OSError, ValueError):
            pass

    def output_tail(self) -> list[str]:
        """The last lines the kernel process wrote to its own stdout/stderr."""
        return list(self._output_tail)


class GradingKernelSpecManager(KernelSpecManager):
    """The installed kernel specs, each started through :class:`SandboxProvisioner`."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        spec = super().get_kernel_spec(kernel_name)
        spec.metadata = {
            **spec.metadata,
            "kernel_provisioner": {"provisioner_name": PROVISIONER_NAME},
        }
        return spec


class SandboxedKernelManager(AsyncKernelManager):
    """An ipykernel inside bubblewrap (see the module docstring); used by ``RobustExecute``.

    Only public traits: the kernel specs it reads name the sandbox provisioner, and ZMQ runs over
    ``ipc``. The rest (inspecting the sandbox) is for tests and ``--show``.
    """

    @default("transport")
    def _default_transport(self) -> str:
        return "ipc"

    @default("kernel_spec_manager")
    def _default_kernel_spec_manager(self) -> KernelSpecManager:
        return GradingKernelSpecManager(data_dir=self.data_dir)

    @property
    def sandbox(self) -> Sandbox:
        """The started kernel's sandbox, or (before a start) one built from the same configuration."""
        if isinstance(self.provisioner, SandboxProvisioner):
            return self.provisioner.sandbox
        if getattr(self, "_unstarted", None) is None:
            self._unstarted = Sandbox(parent=self)
        return self._unstarted

    @property
    def _runtime_dir(self) -> str | None:
        return self.sandbox.runtime_dir

    @property
    def _workdir(self) -> str | None:
        return self.sandbox.workdir

    @_workdir.setter
    def _workdir(self, value: str | None) -> None:
        self.sandbox.workdir = value

    def allowed_paths(self) -> list[Allowed]:
        return self.sandbox.allowed_paths()

    def bwrap_arguments(self) -> list[str]:
        return self.sandbox.bwrap_arguments()

    def kernel_environment(self, env: Mapping[str, str]) -> dict[str, str]:
        return self.sandbox.kernel_environment(env)

    def output_tail(self) -> list[str]:
        """The last lines the kernel process wrote to its own stdout/stderr."""
        return (
            self.provisioner.output_tail()
            if isinstance(self.provisioner, SandboxProvisioner)
            else []
        )


def kernel_manager_class() -> type[AsyncKernelManager]:
    """The kernel manager autograding uses: sandboxed unless VAE_SANDBOX=off."""
    return AsyncKernelManager if sandbox_disabled() else SandboxedKernelManager


# --- measuring the sandbox's cost --------------------------------------------------------------------


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
    import argparse
    import statistics

    parser = argparse.ArgumentParser(
        description="Check the grading sandbox here, and measure what it costs."
    )
    parser.add_argument(
        "--overhead",
        type=int,
        metavar="RUNS",
        default=0,
        help="time a kernel start plus `import course, keras` with and without the sandbox, RUNS times each",
    )
    parser.add_argument(
        "--show", action="store_true", help="list what the kernel sees (for the current folder)"
    )
    args = parser.parse_args(argv)
    problem = bwrap_problem()
    print(
        f"sandbox: {'NOT usable: ' + problem if problem else 'bubblewrap works here'}"
        f"{' (disabled by ' + SANDBOX_ENV + '=off)' if sandbox_disabled() else ''}"
    )
    if args.show:
        sandbox = Sandbox()
        sandbox.workdir = os.path.realpath(os.getcwd())
        print(describe(sandbox.allowed_paths()))
        print(
            f"ro       /etc/{{{','.join(ETC_GENERATED)}}}  <- generated per kernel\n"
            "ro       <runtime folder>/kernel.json  (the connection file)\n"
            "rw       <runtime folder>/sockets  (deleted once the kernel's sockets exist)"
        )
        print("environment:", " ".join(sorted(sandbox.kernel_environment(os.environ))))
    if args.overhead and not problem:
        times = measure_overhead(args.overhead)
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
        from vae_grader.benchmark import load_average

        print(load_average())
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main())
