"""The grading kernel, confined by bubblewrap: a jupyter_client kernel provisioner, and the refusal to grade without it.

During ``nbgrader autograde`` the student's code runs with the grader's rights, and nbgrader does
not protect against that (its FAQ: "not directly"; upstream issue #483). :class:`SandboxProvisioner`
(a jupyter_client kernel provisioner, registered by entry point as ``vae-sandbox``) starts the very
same ipykernel inside ``bwrap``, with what :class:`vae_grader.sandbox.confine.Sandbox` allows (its module
docstring lists it all, with the measurements). :class:`SandboxedKernelManager` is what
``RobustExecute`` uses; it only sets public traits. ``VAE_SANDBOX=off`` grades without the
sandbox; where ``bwrap`` is missing or does not work, ``nbgrader autograde`` refuses with one line
(:func:`refuse_unsandboxed_autograde`). ``python -m vae_grader.sandbox.kernels --show`` lists what the
kernel sees; ``python -m measure.sandbox_overhead N`` measures what the sandbox costs.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Mapping

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner
from traitlets import default

from vae_grader.sandbox.cpu_share import KernelCgroup, share_problem, thread_pools

from vae_grader.sandbox.bwrap import bwrap_problem
from vae_grader.sandbox.confine import Allowed, ETC_GENERATED, Sandbox, describe
from vae_grader.sandbox.environment import SANDBOX_ENV, sandbox_disabled


@functools.lru_cache(maxsize=None)
def _warn_once(problem: str) -> None:
    logging.getLogger(__name__).warning(
        "Kernels run without a CPU share of their own: %s. Grades still count each kernel's own "
        "CPU time; only how far one kernel can slow another is unbounded (vae_grader.sandbox.cpu_share).",
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
        env = thread_pools(self.sandbox.cpu_share, kwargs.get("env") or os.environ)
        kwargs["env"] = self.sandbox.kernel_environment(env)
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


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        description="Check the grading sandbox here (python -m measure.sandbox_overhead measures its cost)."
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
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main())
