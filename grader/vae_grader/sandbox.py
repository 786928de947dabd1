"""The grading kernel, confined by bubblewrap: student code cannot see or touch anything it should not.

During ``nbgrader autograde`` the student's code runs with the grader's rights, and nbgrader does
not protect against that (its FAQ: "not directly"; upstream issue #483). Measured with nbgrader
0.9.6 and no sandbox, a student cell can read ``source/`` (the solutions) and every other student's
submission, write the gradebook, open network connections, and kill nbgrader itself.

:class:`SandboxedKernelManager` starts the very same ipykernel, but inside ``bwrap``:

* the whole system read-only (``--ro-bind / /``), a fresh ``/dev`` and ``/proc``;
* private, size-limited tmpfs on ``/tmp``, ``/dev/shm`` and the kernel's working folder (the
  student's working copy: their own extra files, read-only, and room to write scratch files);
* invisible (an empty tmpfs over them): the course folder (``source/``, the gradebook, every
  ``submitted/``, ``autograded/``, ``feedback/``, ``tests/``, ``.git``), the repository holding
  the ``course`` package, the grader's home folder, the Jupyter runtime folder (other kernels'
  keys), nbgrader's exchange, ``/run`` (local service sockets) and ``/var/tmp``. Only what the kernel needs to
  run is put back, read-only: the Python installation, the ``course`` package and ``$MNIST_NPZ``;
* no network: new network, IPC, PID and UTS namespaces. The grader talks to the kernel over ZMQ
  ``ipc`` sockets in a folder shared with the sandbox, so no TCP port is needed at all;
* limits (``setrlimit`` inside the sandbox): address space, processes, file size, CPU time, no
  core files, no privilege gain (``PR_SET_NO_NEW_PRIVS``). A grader running as root drops the
  kernel to an unprivileged user id of its own, because Linux does not apply the process limit to
  root: measured here, a fork bomb under root reached 300 processes with the limit at 256; as an
  unprivileged user it stopped at 254.
* secrets in the environment (``NBGRADER_DB_URL``, ``*TOKEN*``, ``*PASSWORD*``, ...) are removed.

Output size is limited by the executor (``vae_grader.robust_execute``), which stops
collecting a cell's output past a configured size.

Every limit is a traitlets option of :class:`SandboxedKernelManager`, set in ``nbgrader_config.py``
with its measured default. ``VAE_SANDBOX=off`` grades without the sandbox; where ``bwrap`` is
missing or does not work, ``nbgrader autograde`` refuses with one line (:func:`refuse_unsandboxed_autograde`).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import deque
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Integer, List, Unicode, default

SANDBOX_ENV = "VAE_SANDBOX"
GiB = 2**30
MiB = 2**20

# Environment variables that may carry credentials; the kernel never needs them.
_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSW|CREDENTIAL|API_?KEY|PRIVATE|AUTH)", re.IGNORECASE)
_SECRET_VARS = {"NBGRADER_DB_URL", "DATABASE_URL", "SSH_AUTH_SOCK", "GPG_AGENT_INFO", "KRB5CCNAME"}
_SECRET_PREFIXES = ("AWS_", "AZURE_", "GOOGLE_", "GCP_", "GITHUB_", "GITLAB_", "CI_JOB_")

# Runs inside the sandbox, before the kernel: limits, no privilege gain, then (root only) drop to an
# unprivileged user, then exec the kernel. argv: AS NPROC FSIZE CPU UID GID -- kernel command...
# Kept to the standard library and a few lines so it starts in milliseconds with `python -I -S`.
_LIMITS_LAUNCHER = """\
import ctypes, os, resource as r, sys
a = sys.argv
for k, v in zip((r.RLIMIT_AS, r.RLIMIT_NPROC, r.RLIMIT_FSIZE, r.RLIMIT_CPU), a[1:5]):
    v = int(v)
    if v > 0:
        r.setrlimit(k, (v, v))
r.setrlimit(r.RLIMIT_CORE, (0, 0))
ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
uid, gid = int(a[5]), int(a[6])
if os.getuid() == 0 and uid > 0:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
os.execv(a[8], a[8:])
"""


def sandbox_disabled(environ: dict[str, str] | None = None) -> bool:
    """True when the instructor opted out explicitly with ``VAE_SANDBOX=off`` (or 0/no/false)."""
    value = (environ if environ is not None else os.environ).get(SANDBOX_ENV, "").strip().lower()
    return value in {"off", "0", "no", "false", "none"}


@functools.lru_cache(maxsize=1)
def bwrap_problem() -> str | None:
    """Why bubblewrap cannot confine the kernel here, in one line; None when it works.

    It is not enough that ``bwrap`` is installed: some systems forbid the namespaces it needs
    (e.g. unprivileged user namespaces off), so a tiny sandbox is actually started (~10 ms).
    """
    path = shutil.which("bwrap")
    if path is None:
        return "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap; or run scripts/setup.sh as root)"
    command = [path, *_namespace_flags(), "--die-with-parent", "--ro-bind", "/", "/", "--dev", "/dev",
               "--proc", "/proc", "--", "/bin/true"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not be started: {exc}"
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        return f"bubblewrap is installed but cannot create a sandbox here: {reason}"
    return None


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
        print(f"nbgrader autograde refused: {problem}. Student code would run with your rights; "
              f"set {SANDBOX_ENV}=off to grade without the sandbox anyway.", file=sys.stderr)
        raise SystemExit(2)


@functools.lru_cache(maxsize=None)
def _bwrap_supports(option: str) -> bool:
    """Whether this bwrap knows ``option`` (--size and --disable-userns came with bubblewrap 0.8)."""
    path = shutil.which("bwrap")
    if path is None:
        return False
    try:
        text = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return f"{option} " in text


def _namespace_flags() -> list[str]:
    """Namespaces to unshare.

    As root, no user namespace: the launcher must really drop to an unprivileged uid (in a user
    namespace root maps back to root, and Linux exempts root from RLIMIT_NPROC). Otherwise a user
    namespace is needed (it is how unprivileged bwrap works), and nested ones are forbidden.
    """
    common = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    if os.geteuid() == 0:
        return common
    return ["--unshare-user", *(["--disable-userns"] if _bwrap_supports("--disable-userns") else []), *common]


def scrubbed_environment(env: dict[str, str]) -> dict[str, str]:
    """The kernel's environment without anything that looks like a credential."""
    return {
        key: value for key, value in env.items()
        if key not in _SECRET_VARS and not key.startswith(_SECRET_PREFIXES) and not _SECRET_NAME.search(key)
    }


def _is_within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


class SandboxedKernelManager(AsyncKernelManager):
    """An ipykernel inside bubblewrap (see the module docstring); used by ``RobustExecute``."""

    memory_limit = Integer(
        8 * GiB,
        help="RLIMIT_AS of the kernel in bytes (0: none). Measured: the master notebook peaks at 3.6 GB "
             "of address space (TensorFlow reserves much more than it touches; 1.5 GB resident), so "
             "8 GiB leaves room while a memory bomb gets a MemoryError instead of the machine's OOM killer.",
    ).tag(config=True)
    max_processes = Integer(
        256,
        help="RLIMIT_NPROC: processes and threads of the kernel's user (0: none). The kernel runs 26 "
             "threads while training; a fork bomb stops at this count.",
    ).tag(config=True)
    max_file_size = Integer(
        256 * MiB,
        help="RLIMIT_FSIZE: largest file the kernel may write, in bytes (0: none); MNIST is 11 MB.",
    ).tag(config=True)
    cpu_seconds = Integer(
        1200,
        help="RLIMIT_CPU of the kernel process in CPU seconds (0: none). The whole master notebook "
             "uses ~60 s of CPU in grading mode; the per-cell timeout normally stops a runaway cell "
             "long before this backstop.",
    ).tag(config=True)
    scratch_size = Integer(
        512 * MiB,
        help="Size of each private tmpfs (/tmp, /dev/shm, the working folder), in bytes.",
    ).tag(config=True)
    kernel_uid = Integer(
        0,
        help="User id the kernel runs as when the grader runs as root (Linux does not limit root's processes). "
             "0: a user id of this grading process's own, 100000 + pid mod 50000, so that the process limit "
             "counts only this kernel's processes and never those of a kernel graded in parallel.",
    ).tag(config=True)
    hidden_paths = List(
        Unicode(),
        help="Extra folders or files the kernel must not see (the course folder, the repository, the "
             "home folder, Jupyter's runtime folder, nbgrader's exchange, /run and /var/tmp are always hidden).",
    ).tag(config=True)
    visible_paths = List(
        Unicode(),
        help="Extra paths inside hidden folders that the kernel needs, shown read-only.",
    ).tag(config=True)
    course_root = Unicode(
        "",
        help="The nbgrader course folder (default: CourseDirectory.root from the configuration, else the current folder).",
    ).tag(config=True)

    @default("transport")
    def _default_transport(self) -> str:
        return "ipc"  # the kernel has no network; ZMQ over Unix sockets in a shared folder

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._runtime_dir: str | None = None
        self._output_tail: deque[str] = deque(maxlen=64)
        self._reader: threading.Thread | None = None

    # --- start-up ---------------------------------------------------------------------------------

    async def _async_pre_start_kernel(self, **kw):
        problem = bwrap_problem()
        if problem:
            raise RuntimeError(f"cannot start the sandboxed grading kernel: {problem} (set {SANDBOX_ENV}=off to grade without it)")
        self._runtime_dir = tempfile.mkdtemp(prefix="vae-kernel-")
        os.chmod(self._runtime_dir, 0o700)
        self.connection_file = os.path.join(self._runtime_dir, "kernel.json")
        self.ip = os.path.join(self._runtime_dir, "zmq")
        self._workdir = os.path.realpath(kw.get("cwd") or os.getcwd())
        return await super()._async_pre_start_kernel(**kw)

    def format_kernel_cmd(self, extra_arguments=None):
        kernel_cmd = super().format_kernel_cmd(extra_arguments)
        uid, gid = self._kernel_ids()
        limits = [str(self.memory_limit), str(self.max_processes), str(self.max_file_size), str(self.cpu_seconds), str(uid), str(gid)]
        return [
            shutil.which("bwrap") or "bwrap", *self.bwrap_arguments(),
            "--", sys.executable, "-I", "-S", "-c", _LIMITS_LAUNCHER, *limits, "--", *kernel_cmd,
        ]

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        uid, gid = self._kernel_ids()
        if uid > 0 and os.geteuid() == 0 and self._runtime_dir:
            # The kernel runs as an unprivileged uid: it must create its sockets here and read the connection file.
            os.chown(self._runtime_dir, uid, gid)
            os.chown(self.connection_file, uid, gid)
        env = scrubbed_environment(dict(kw.get("env") or os.environ))
        env.update({"HOME": "/tmp", "TMPDIR": "/tmp", "PWD": self._workdir, "MPLCONFIGDIR": "/tmp/.matplotlib"})
        kw["env"] = env
        # Keep the kernel's own stdout/stderr (not cell output: ipykernel sends that over ZMQ) out of
        # the grader's log, but remember its end: it says why a kernel died.
        kw["stdout"] = subprocess.PIPE
        kw["stderr"] = subprocess.STDOUT
        await super()._async_launch_kernel(kernel_cmd, **kw)
        process = getattr(self.provisioner, "process", None)
        if process is not None and process.stdout is not None:
            self._reader = threading.Thread(target=self._drain, args=(process.stdout,), daemon=True)
            self._reader.start()

    def _drain(self, stream) -> None:
        try:
            for raw in iter(lambda: stream.readline(4096), b""):
                self._output_tail.append(raw.decode("utf-8", "replace").rstrip()[:500])
        except (OSError, ValueError):
            pass

    def output_tail(self) -> list[str]:
        """The last lines the kernel process wrote to its own stdout/stderr."""
        return list(self._output_tail)

    async def _async_interrupt_kernel(self) -> None:
        # A signal to bwrap's process group would also hit bwrap itself and end the sandbox;
        # ipykernel's interrupt_request makes the kernel send SIGINT to itself instead.
        if not self.has_kernel:
            raise RuntimeError("Cannot interrupt kernel. No kernel is running!")
        msg = self.session.msg("interrupt_request", content={})
        self._connect_control_socket()
        self.session.send(self._control_socket, msg)

    interrupt_kernel = _async_interrupt_kernel  # AsyncKernelManager binds the base method by name

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if self._runtime_dir and not restart:
            shutil.rmtree(self._runtime_dir, ignore_errors=True)
            self._runtime_dir = None

    cleanup_resources = _async_cleanup_resources

    # --- the sandbox ------------------------------------------------------------------------------

    def _kernel_ids(self) -> tuple[int, int]:
        if os.geteuid() != 0:
            return 0, 0  # already unprivileged: the user namespace keeps the kernel's processes apart
        uid = self.kernel_uid or 100000 + os.getpid() % 50000
        return uid, uid

    def _course_root(self) -> Path:
        if self.course_root:
            return Path(self.course_root)
        configured = self.config.get("CourseDirectory", {}).get("root")
        return Path(configured) if configured else Path.cwd()

    def hidden(self) -> list[Path]:
        """Folders and files replaced by an empty tmpfs (or /dev/null for files)."""
        import course
        from jupyter_core.paths import jupyter_runtime_dir

        candidates = [
            self._course_root(),
            Path(course.__file__).resolve().parents[1],  # the repository that holds the course package
            Path.home(),
            Path(jupyter_runtime_dir()),
            Path(self.config.get("Exchange", {}).get("root") or "/srv/nbgrader/exchange"),
            Path("/run"),
            Path("/var/tmp"),  # other users' scratch files
            *(Path(p) for p in self.hidden_paths),
        ]
        db = self._sqlite_path()
        if db is not None:
            candidates += [db, db.with_name(db.name + "-journal"), db.with_name(db.name + "-wal")]
        return [Path(os.path.realpath(p)) for p in candidates if os.path.lexists(p)]

    def _sqlite_path(self) -> Path | None:
        url = str(self.config.get("CourseDirectory", {}).get("db_url") or "")
        if url.startswith("sqlite:///"):
            return Path(url[len("sqlite:///"):])
        return None

    def visible(self) -> list[Path]:
        """Paths the kernel needs, shown read-only even where they lie inside a hidden folder."""
        import course

        candidates = [
            sys.prefix, sys.base_prefix, sys.exec_prefix,
            os.path.dirname(os.path.realpath(sys.executable)),
            str(Path(course.__file__).resolve().parent),
            os.environ.get("MNIST_NPZ", ""),
            *self.visible_paths,
        ]
        # The base interpreter's installation (e.g. pyenv's versions/3.11.7), not just its bin/.
        real_bin = Path(os.path.realpath(sys.executable)).parent
        if real_bin.name == "bin":
            candidates.append(str(real_bin.parent))
        return sorted({Path(os.path.realpath(p)) for p in candidates if p and os.path.exists(p)})

    def bwrap_arguments(self) -> list[str]:
        """The bwrap options (without the command); public so tests and docs can show them."""
        sized = ["--size", str(self.scratch_size)] if _bwrap_supports("--size") else []
        args = [*_namespace_flags(), "--die-with-parent",
                "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                "--perms", "1777", *sized, "--tmpfs", "/tmp",
                "--perms", "1777", *sized, "--tmpfs", "/dev/shm"]
        fonts = _matplotlib_font_cache()
        if fonts is not None:
            args += ["--perms", "1777", "--dir", "/tmp/.matplotlib", "--ro-bind", str(fonts), f"/tmp/.matplotlib/{fonts.name}"]
        workdir = Path(self._workdir) if getattr(self, "_workdir", None) else None
        runtime = Path(self._runtime_dir) if self._runtime_dir else None
        hidden = self.hidden()
        # /tmp and /dev/shm are fresh tmpfs already: anything below them is hidden too.
        applied: list[Path] = [Path("/tmp"), Path("/dev/shm")]
        for path in sorted((p for p in hidden if p.is_dir()), key=lambda p: len(p.parts)):
            if any(_is_within(path, done) for done in applied) or _is_within(Path("/tmp"), path):
                continue  # inside a folder already hidden (or "/" itself: never)
            args += ["--perms", "0555", "--tmpfs", str(path)]
            applied.append(path)
        for path in hidden:
            if not path.is_dir() and not any(_is_within(path, done) for done in applied):
                args += ["--ro-bind", "/dev/null", str(path)]
        created: set[Path] = set()

        def make_parents(target: Path) -> list[str]:
            """--dir for each folder between the hidden folder around ``target`` and ``target``.

            bwrap would create them itself, but mode 0700 and owned by root: the unprivileged
            kernel could then not reach ``target``.
            """
            out: list[str] = []
            enclosing = [h for h in applied if _is_within(target, h) and target != h]
            if not enclosing:
                return out
            top = max(enclosing, key=lambda p: len(p.parts))
            for depth in range(len(top.parts) + 1, len(target.parts)):
                folder = Path(*target.parts[:depth])
                if folder not in created:
                    out += ["--perms", "0555", "--dir", str(folder)]
                    created.add(folder)
            return out

        exposed: list[Path] = []
        for path in self.visible():
            if any(_is_within(path, done) for done in exposed):
                continue
            if not any(_is_within(path, h) for h in applied):
                continue  # visible anyway through --ro-bind / /
            args += make_parents(path) + ["--ro-bind", str(path), str(path)]
            exposed.append(path)
        if workdir is not None:
            # The student's working copy: a private, writable tmpfs with their own files read-only
            # (never the notebook itself: the autograded copy holds the hidden tests).
            own_copy = workdir not in hidden and not any(_is_within(h, workdir) for h in hidden)
            args += make_parents(workdir) + ["--perms", "1777", *sized, "--tmpfs", str(workdir)]
            if own_copy and workdir.is_dir():
                for entry in sorted(workdir.iterdir()):
                    if entry.is_file() and entry.suffix != ".ipynb" and not entry.name.startswith("."):
                        args += ["--ro-bind", str(entry), str(entry)]
            args += ["--chdir", str(workdir)]
        if runtime is not None:
            args += make_parents(runtime) + ["--bind", str(runtime), str(runtime)]
        # ipykernel exits when its parent's pid is 1, which inside a PID namespace it always is;
        # bwrap's --die-with-parent already ends the kernel with the grader.
        args += ["--unsetenv", "JPY_PARENT_PID", "--hostname", "grading-sandbox"]
        return args


def _matplotlib_font_cache() -> Path | None:
    """The grader's matplotlib font list, lent read-only to the kernel, or None where none is built.

    Keras imports matplotlib, and in a fresh private /tmp matplotlib would rebuild its font list
    for every submission (0.37 s of import time measured in the sandbox). The file only lists font
    paths, which the kernel sees anyway; where its version does not match, matplotlib rebuilds.
    """
    base = os.environ.get("MPLCONFIGDIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "matplotlib")
    found = sorted(Path(base).glob("fontlist-v*.json"))
    return found[-1] if found else None


def kernel_manager_class() -> type[AsyncKernelManager]:
    """The kernel manager autograding uses: sandboxed unless VAE_SANDBOX=off."""
    return AsyncKernelManager if sandbox_disabled() else SandboxedKernelManager


# --- measuring the sandbox's cost --------------------------------------------------------------------


def _time_kernel(manager_class: type[AsyncKernelManager], code: str, cwd: str) -> float:
    """Seconds from starting a kernel to the end of running ``code`` in it."""
    import asyncio
    import time

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


def measure_overhead(runs: int = 5, code: str = "import course, keras, numpy\nprint(keras.__version__)") -> dict[str, list[float]]:
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

    parser = argparse.ArgumentParser(description="Check the grading sandbox here, and measure what it costs.")
    parser.add_argument("--overhead", type=int, metavar="RUNS", default=0,
                        help="time a kernel start plus `import course, keras` with and without the sandbox, RUNS times each")
    args = parser.parse_args(argv)
    problem = bwrap_problem()
    print(f"sandbox: {'NOT usable: ' + problem if problem else 'bubblewrap works here'}"
          f"{' (disabled by ' + SANDBOX_ENV + '=off)' if sandbox_disabled() else ''}")
    if args.overhead and not problem:
        times = measure_overhead(args.overhead)
        for name, values in times.items():
            print(f"{name:10s} median {statistics.median(values):6.2f} s  runs: {', '.join(f'{v:.2f}' for v in values)}")
        # On a shared machine single runs swing by a factor of two; the fastest run of each kind (the
        # least disturbed) and the median of the paired differences are the robust estimates.
        paired = [s - p for s, p in zip(times["sandboxed"], times["plain"])]
        print(f"overhead   median {statistics.median(times['sandboxed']) - statistics.median(times['plain']):+6.2f} s, "
              f"fastest runs {min(times['sandboxed']) - min(times['plain']):+.2f} s, "
              f"median of paired differences {statistics.median(paired):+.2f} s per kernel start")
        from vae_grader.benchmark import load_average

        print(load_average())
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main())
