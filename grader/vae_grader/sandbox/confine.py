"""What the grading kernel may see and use, by allowlist, and the bubblewrap command line that confines it to that.

During ``nbgrader autograde`` the student's code runs with the grader's rights, and nbgrader does
not protect against that (its FAQ: "not directly"; upstream issue #483). Measured with nbgrader
0.9.6 and no sandbox, a student cell can read ``source/`` (the solutions) and every other student's
submission, write the gradebook, open network connections, and kill nbgrader itself.

:class:`SandboxProvisioner` (a jupyter_client kernel provisioner, registered by entry point) starts
the very same ipykernel, but inside ``bwrap``, on an EMPTY
root that bubblewrap fills with exactly these paths (:meth:`Sandbox.allowed_paths`
lists them; a test walks the kernel's whole filesystem against that list):

* read-only: the system's programs and libraries (``/usr``; ``/bin``, ``/sbin``, ``/lib``,
  ``/lib64`` as the symlinks or folders they are here); from ``/etc`` only the dynamic linker's
  cache and configuration and ``localtime``, plus a generated ``passwd``, ``group``,
  ``nsswitch.conf`` and ``hosts`` that name only root and the kernel's own user; the Python
  installation (``sys.prefix`` and ``sys.base_prefix``: the virtual environment and the
  interpreter it was made from), the ``course`` package's own folder (not the repository around
  it), ``$MNIST_NPZ`` and the grader's matplotlib font list;
* fresh: ``/proc`` and ``/dev``; private, size-limited tmpfs on ``/tmp``, ``/dev/shm`` and the
  kernel's working folder. Into the working folder go, read-only, only the files the released
  assignment also has (``release/<assignment>/``, compared by relative path): nbgrader copies every
  file the instructor keeps beside the master (``source/<assignment>/``, e.g. ``solutions.py``)
  next to the submission, and those must not reach the kernel; the notebook never does either;
* the folder of the ZMQ ``ipc`` sockets, writable only while ipykernel starts (see
  :meth:`Sandbox.seal`): once the kernel has created its five sockets,
  and before any student code can run, the grader moves them out and deletes the folder. Linux
  refuses to create anything in a deleted folder (measured: ``No such file or directory`` for
  files, folders and sockets alike), so student code can write zero bytes to the grader's disk
  there, whatever its size or number of files.

Nothing else of the host exists in the sandbox: not ``/root``, ``/home``, ``/work``, ``/srv``,
``/var``, ``/opt`` or ``/run``, not the course folder, not the grader package, not other clones.

The environment is an allowlist too (:func:`allowed_environment`): the variables Python, Keras,
TensorFlow, matplotlib, ipykernel and the course package read, and nothing else whatever its name.

Also: no network (new network, IPC, PID and UTS namespaces; the grader talks to the kernel over
ZMQ ``ipc`` sockets, so no TCP port is needed); limits set with ``setrlimit`` inside the sandbox
(address space, processes, file size, CPU time, no core files) and no privilege gain
(``PR_SET_NO_NEW_PRIVS``). A grader running as root drops the kernel to an unprivileged user id of
its own, because Linux does not apply the process limit to root: measured here, a fork bomb under
root reached 300 processes with the limit at 256; as an unprivileged user it stopped at 254.
Output size is limited by the executor (``vae_grader.preprocessors.execute``).

Every limit is a traitlets option of :class:`Sandbox` (``c.Sandbox.<name>``), set in ``nbgrader_config.py``
with its measured default. ``VAE_SANDBOX=off`` grades without the sandbox; where ``bwrap`` is
missing or does not work, ``nbgrader autograde`` refuses with one line (:func:`refuse_unsandboxed_autograde`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from traitlets import Float, Integer, List, Unicode
from traitlets.config import LoggingConfigurable

from vae_grader.sandbox.bwrap import SYSTEM_PATHS, bwrap_problem, bwrap_supports, namespace_flags
from vae_grader.sandbox.environment import SANDBOX_ENV, allowed_environment, student_package

GiB = 2**30
MiB = 2**20

# --- what the kernel may see ---------------------------------------------------------------------------

# From the host's /etc, only two files. Measured: with no /etc at all the kernel still imports
# course, keras, numpy, matplotlib and scipy, loads MNIST, trains and saves a plot. ld.so.cache is lent
# because ctypes.util.find_library asks `ldconfig -p`, which reads it; localtime so that times in
# the kernel are in the grader's zone. The linker's configuration (ld.so.conf*) is only read to
# rebuild that cache, and lists host-specific folders.
ETC_FILES = ("ld.so.cache", "localtime")
# Generated instead of lent (the host's name its users and machines); getpass.getuser() and the
# like need the kernel's own user: see _generated_etc().
ETC_GENERATED = ("passwd", "group", "nsswitch.conf", "hosts")

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


def _is_within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def released_files(workdir: Path, release: Path) -> list[Path]:
    """Relative paths of the files in ``workdir`` that the released assignment ``release`` also has.

    Only regular files count, in both folders: never a notebook (the autograded copy holds the
    hidden tests), a hidden name, or a symlink (a submitted link named like a data file could point
    anywhere on the grader's machine, and bwrap would follow it).
    """
    if not release.is_dir() or not workdir.is_dir():
        return []
    found: list[Path] = []
    for folder, dirs, files in os.walk(release):
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and not os.path.islink(os.path.join(folder, d))
        )
        for name in sorted(files):
            relative = Path(folder, name).relative_to(release)
            if name.startswith(".") or name.endswith(".ipynb") or not _regular(release / relative):
                continue
            # Every component inside the working copy must be a real folder/file, never a link.
            parts = [workdir.joinpath(*relative.parts[:i]) for i in range(1, len(relative.parts))]
            if all(p.is_dir() and not p.is_symlink() for p in parts) and _regular(
                workdir / relative
            ):
                found.append(relative)
    return found


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


@dataclass(frozen=True)
class Allowed:
    """One path of the sandbox: what it is, where it comes from on the host, where the kernel sees it."""

    kind: str  # "ro" (read-only bind), "rw" (writable bind), "symlink", "tmpfs", "dir" (empty, writable), "dev", "proc"
    target: str
    source: str = ""


class _Tree:
    """Builds bwrap's options for an empty root, creating each mount point's parents readable for all.

    bwrap would create missing parents itself, but mode 0700 and owned by root: a kernel running
    as an unprivileged uid could not reach what is below them.
    """

    def __init__(self) -> None:
        self.args: list[str] = []
        self.mounts: list[tuple[Path, bool]] = [
            (Path("/"), False)
        ]  # (target, shows the same host path)
        self.made: set[Path] = set()

    def host_backed(self, path: Path) -> bool:
        """Whether ``path`` lies in a bind of the very same host path (no tmpfs mounted over it since)."""
        deepest = max(
            (m for m in self.mounts if _is_within(path, m[0])), key=lambda m: len(m[0].parts)
        )
        return deepest[1]

    def _parents(self, target: Path) -> None:
        for depth in range(2, len(target.parts)):
            folder = Path(*target.parts[:depth])
            if folder in self.made or self.host_backed(folder):
                continue
            self.args += ["--perms", "0555", "--dir", str(folder)]
            self.made.add(folder)

    def add(
        self,
        option: str,
        target: Path,
        source: str | None = None,
        *,
        perms: str | None = None,
        size: int | None = None,
    ) -> None:
        self._parents(target)
        if perms:
            self.args += ["--perms", perms]
        if size and bwrap_supports("--size"):
            self.args += ["--size", str(size)]
        self.args += [option, *([source] if source is not None else []), str(target)]
        if option == "--dir":
            self.made.add(target)
        else:
            self.mounts.append(
                (target, option in ("--ro-bind", "--bind") and source == str(target))
            )


class Sandbox(LoggingConfigurable):
    """What one grading kernel may see and use: its filesystem, environment and limits (module docstring).

    Plain policy, no Jupyter: :class:`SandboxProvisioner` asks it for the bwrap command line and
    the kernel's environment, and to seal the socket folder once the kernel is up. Its options
    are set in ``nbgrader_config.py`` as ``c.Sandbox.<name>``.
    """

    memory_limit = Integer(
        8 * GiB,
        help="RLIMIT_AS of the kernel in bytes (0: none): room for the master's peak (README, 'What "
        "the limits rest on'; TensorFlow reserves much more than it touches), while a memory bomb "
        "gets a MemoryError instead of the machine's OOM killer.",
    ).tag(config=True)
    max_processes = Integer(
        256,
        help="RLIMIT_NPROC: processes and threads of the kernel's user (0: none), well above the "
        "threads of a training kernel (docs/measurements.md, 'What the limits rest on'); a fork bomb stops here.",
    ).tag(config=True)
    max_file_size = Integer(
        256 * MiB,
        help="RLIMIT_FSIZE: largest file the kernel may write, in bytes (0: none); MNIST is 11 MB.",
    ).tag(config=True)
    cpu_seconds = Integer(
        1200,
        help="RLIMIT_CPU of the kernel process in CPU seconds (0: none), many times what the master "
        "uses in grading mode (docs/measurements.md, 'What the limits rest on'); the per-cell timeout normally "
        "stops a runaway cell long before this backstop.",
    ).tag(config=True)
    cpu_share = Float(
        1.0,
        help="CPUs' worth of time the kernel's whole process tree may use at once, enforced by a cgroup "
        "of its own where the host allows one (vae_grader.sandbox.cpu_share; 0: none). One core: the master's "
        "training cell needs no more to stay within its limits (docs/load.md).",
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
    socket_timeout = Integer(
        120,
        help="Seconds the kernel gets to create its ZMQ sockets before the grader gives up on it "
        "(measured start times: docs/measurements.md, 'What the limits rest on').",
    ).tag(config=True)
    visible_paths = List(
        Unicode(),
        help="Extra host paths lent to the kernel read-only (everything not listed by the sandbox is invisible).",
    ).tag(config=True)
    course_root = Unicode(
        "",
        help="The nbgrader course folder (default: CourseDirectory.root from the configuration, else the current folder).",
    ).tag(config=True)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.runtime_dir: str | None = None
        """Host folder of kernel.json, the generated /etc files and (until sealed) the sockets."""
        self.workdir: str | None = None
        """The kernel's working folder (the submission's folder), a private tmpfs in the sandbox."""

    @property
    def connection_file(self) -> str | None:
        return os.path.join(self.runtime_dir, "kernel.json") if self.runtime_dir else None

    @property
    def socket_folder(self) -> Path | None:
        return Path(self.runtime_dir, "sockets") if self.runtime_dir else None

    # --- one kernel's life --------------------------------------------------------------------------

    def prepare(self, cwd: str | None) -> tuple[str, str]:
        """Create the host side for a kernel in ``cwd``; returns (connection file, ZMQ ip to bind).

        ``<runtime>/kernel.json`` and the generated /etc files are lent read-only,
        ``<runtime>/sockets/`` writable until sealed, and the sealed sockets live in ``<runtime>/``.
        """
        problem = bwrap_problem()
        if problem:
            raise RuntimeError(
                f"cannot start the sandboxed grading kernel: {problem} (set {SANDBOX_ENV}=off to grade without it)"
            )
        uid, gid = self.kernel_ids()
        if self.runtime_dir is None:
            self.runtime_dir = tempfile.mkdtemp(prefix="vae-kernel-")
            os.chmod(self.runtime_dir, 0o700)
            etc = Path(self.runtime_dir, "etc")
            etc.mkdir(mode=0o755)
            for name, text in _generated_etc(uid, gid).items():
                (etc / name).write_text(text)
                os.chmod(etc / name, 0o444)
        sockets = Path(self.runtime_dir, "sockets")
        shutil.rmtree(sockets, ignore_errors=True)  # left by a start that failed before the seal
        sockets.mkdir(mode=0o700)  # again on a restart: the previous one was sealed (deleted)
        if uid > 0:
            os.chown(sockets, uid, gid)
        self.workdir = os.path.realpath(cwd or os.getcwd())
        return os.path.join(self.runtime_dir, "kernel.json"), str(sockets / "zmq")

    def command(self, kernel_cmd: list[str]) -> list[str]:
        """``kernel_cmd`` run by the limits launcher inside bwrap."""
        uid, gid = self.kernel_ids()
        limits = [
            str(self.memory_limit),
            str(self.max_processes),
            str(self.max_file_size),
            str(self.cpu_seconds),
            str(uid),
            str(gid),
        ]
        return [
            shutil.which("bwrap") or "bwrap",
            *self.bwrap_arguments(),
            "--",
            sys.executable,
            "-I",
            "-S",
            "-c",
            _LIMITS_LAUNCHER,
            *limits,
            "--",
            *kernel_cmd,
        ]

    def lend_connection_file(self) -> None:
        """Let the unprivileged kernel read its connection file."""
        uid, gid = self.kernel_ids()
        if uid > 0 and self.connection_file and os.path.exists(self.connection_file):
            os.chown(self.connection_file, uid, gid)

    async def seal(self, process, ip: str, ports: Iterable[int], output_tail) -> str:
        """Move the kernel's sockets out of the folder it shares with the grader, then delete that folder.

        ipykernel creates its five sockets before it reads a single request, so no student code
        has run yet. A Unix socket is found by its inode, so the moved sockets keep working (the
        clients are made after this and connect to the new paths); the kernel's view of the
        deleted folder stays mounted but Linux refuses every new file in it. This is the whole
        bound on what the kernel can write to the grader's disk: nothing. Returns the new ip.
        """
        sockets = Path(ip).parent
        names = [f"{Path(ip).name}-{port}" for port in ports]
        deadline = time.monotonic() + self.socket_timeout
        while not all((sockets / name).exists() for name in names):
            if process is not None and process.poll() is not None:
                tail = " | ".join(output_tail()[-3:]) or "no output"
                raise RuntimeError(
                    f"the sandboxed kernel exited before it was ready (exit code {process.returncode}): {tail}"
                )
            if time.monotonic() > deadline:
                if process is not None:
                    process.kill()  # bwrap: its --die-with-parent child goes with it
                raise RuntimeError(
                    f"the sandboxed kernel did not open its sockets within {self.socket_timeout} s"
                )
            await asyncio.sleep(0.02)
        runtime = Path(self.runtime_dir or sockets.parent)
        for name in names:
            os.replace(sockets / name, runtime / name)
        for _ in range(5):
            shutil.rmtree(sockets, ignore_errors=True)
            if not sockets.exists():
                break
            await asyncio.sleep(0.05)
        else:
            if process is not None:
                process.kill()
            raise RuntimeError(f"could not seal the kernel's socket folder {sockets}")
        return str(runtime / Path(ip).name)

    def remove(self) -> None:
        """Delete the host side (the kernel is gone)."""
        if self.runtime_dir:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None

    # --- the sandbox ------------------------------------------------------------------------------

    def kernel_environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """The kernel's whole environment: the allowlisted part of ``env`` plus the sandbox's own paths."""
        kept = allowed_environment(env)
        visible = [Path(a.target) for a in self.allowed_paths() if a.kind in ("ro", "symlink")]
        path = [
            p
            for p in env.get("PATH", os.defpath).split(os.pathsep)
            if p and os.path.isabs(p) and any(_is_within(Path(p), v) for v in visible)
        ]
        kept.update(
            {
                "PATH": os.pathsep.join(dict.fromkeys(path)) or "/usr/bin:/bin",
                "HOME": "/tmp",
                "TMPDIR": "/tmp",
                "MPLCONFIGDIR": "/tmp/.matplotlib",
            }
        )
        if self.workdir:
            kept["PWD"] = self.workdir
        return kept

    def kernel_ids(self) -> tuple[int, int]:
        if os.geteuid() != 0:
            return (
                os.getuid(),
                os.getgid(),
            )  # already unprivileged: the user namespace maps us to ourselves
        uid = self.kernel_uid or 100000 + os.getpid() % 50000
        return uid, uid

    def _course_root(self) -> Path:
        if self.course_root:
            return Path(self.course_root)
        configured = self.config.get("CourseDirectory", {}).get("root")
        return Path(configured) if configured else Path.cwd()

    def release_folder(self) -> Path | None:
        """``release/<assignment>/`` of the course for the working folder being graded (``.../<assignment>``)."""
        if not self.workdir:
            return None
        release = self.config.get("CourseDirectory", {}).get("release_directory") or "release"
        return self._course_root() / release / Path(self.workdir).name

    @staticmethod
    def _python_paths() -> list[str]:
        """The interpreter and its installations: the virtual environment and the Python it was made from."""
        paths = [
            sys.prefix,
            sys.base_prefix,
            sys.exec_prefix,
            sys.base_exec_prefix,
            os.path.dirname(os.path.realpath(sys.executable)),
        ]
        real_bin = Path(os.path.realpath(sys.executable)).parent
        if real_bin.name == "bin":
            paths.append(str(real_bin.parent))  # e.g. pyenv's versions/3.11.7
        return paths

    def allowed_paths(self) -> list[Allowed]:
        """Every path of the sandbox's filesystem, in mount order (the single source of bwrap_arguments)."""
        allowed: list[Allowed] = []
        for path in SYSTEM_PATHS:
            if os.path.islink(path):
                allowed.append(Allowed("symlink", path, os.readlink(path)))
            elif os.path.isdir(path):
                allowed.append(Allowed("ro", path, path))
        allowed += [
            Allowed("dev", "/dev"),
            Allowed("proc", "/proc"),
            Allowed("tmpfs", "/tmp"),
            Allowed("tmpfs", "/dev/shm"),
        ]
        for name in ETC_FILES:
            if os.path.exists(f"/etc/{name}"):
                allowed.append(Allowed("ro", f"/etc/{name}", os.path.realpath(f"/etc/{name}")))
        if self.runtime_dir:
            for name in ETC_GENERATED:
                allowed.append(
                    Allowed("ro", f"/etc/{name}", os.path.join(self.runtime_dir, "etc", name))
                )
        lent: list[str] = [*self._python_paths(), *self.visible_paths]
        package = student_package()
        if package is not None:
            lent.append(str(package))
        mnist = os.environ.get("MNIST_NPZ", "").strip()
        if mnist:
            lent.append(mnist)
        seen: set[str] = set()
        for path in sorted(lent, key=lambda p: len(Path(os.path.abspath(p)).parts)):
            if not path or not os.path.exists(path):
                continue
            for target in dict.fromkeys([os.path.abspath(path), os.path.realpath(path)]):
                if target not in seen:
                    seen.add(target)
                    allowed.append(Allowed("ro", target, os.path.realpath(path)))
        allowed.append(Allowed("dir", "/tmp/.matplotlib"))  # MPLCONFIGDIR, writable
        fonts = _matplotlib_font_cache()
        if fonts is not None:
            allowed.append(Allowed("ro", f"/tmp/.matplotlib/{fonts.name}", str(fonts)))
        if self.workdir:
            workdir = Path(self.workdir)
            allowed.append(Allowed("tmpfs", str(workdir)))
            release = self.release_folder()
            for relative in released_files(workdir, release) if release else []:
                allowed.append(Allowed("ro", str(workdir / relative), str(workdir / relative)))
        if self.runtime_dir:
            allowed.append(Allowed("ro", self.connection_file, self.connection_file))
            allowed.append(Allowed("rw", str(self.socket_folder), str(self.socket_folder)))
        return allowed

    def bwrap_arguments(self) -> list[str]:
        """The bwrap options (without the command); public so tests and docs can show them."""
        tree = _Tree()
        tree.args += [*namespace_flags(), "--die-with-parent"]
        # Parents before children (stable otherwise), so that a tmpfs never covers a path lent inside it.
        for item in sorted(self.allowed_paths(), key=lambda a: len(Path(a.target).parts)):
            target = Path(item.target)
            if item.kind == "symlink":
                tree.args += ["--symlink", item.source, item.target]
            elif item.kind == "dev":
                tree.add("--dev", target)
            elif item.kind == "proc":
                tree.add("--proc", target)
            elif item.kind == "tmpfs":
                tree.add("--tmpfs", target, perms="1777", size=self.scratch_size)
            elif item.kind == "dir":
                tree.add("--dir", target, perms="1777")
            elif item.kind == "ro":
                if item.source == item.target and tree.host_backed(target):
                    continue  # inside a folder lent already (e.g. the interpreter's bin/ in its prefix)
                tree.add("--ro-bind", target, item.source)
            elif item.kind == "rw":
                tree.add("--bind", target, item.source)
        if self.workdir:
            tree.args += ["--chdir", self.workdir]
        # jupyter_client's launcher adds JPY_PARENT_PID after the environment was filtered; ipykernel
        # exits when its parent's pid is 1, which inside a PID namespace it always is.
        # bwrap's --die-with-parent already ends the kernel with the grader.
        tree.args += ["--unsetenv", "JPY_PARENT_PID", "--hostname", "grading-sandbox"]
        return tree.args


def _generated_etc(uid: int, gid: int) -> dict[str, str]:
    """Minimal /etc files naming only root and the kernel's user (some libraries look the user up)."""
    users = {0: "root", uid: "student"} if uid else {0: "root"}
    return {
        "passwd": "".join(
            f"{name}:x:{u}:{gid if u else 0}:{name}:/tmp:/usr/sbin/nologin\n"
            for u, name in users.items()
        ),
        "group": "".join(f"{name}:x:{gid if u else 0}:\n" for u, name in users.items()),
        "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
        "hosts": "127.0.0.1 localhost grading-sandbox\n::1 localhost\n",
    }


def _matplotlib_font_cache() -> Path | None:
    """The grader's matplotlib font list, lent read-only to the kernel, or None where none is built.

    Keras imports matplotlib, and in a fresh private /tmp matplotlib would rebuild its font list
    for every submission (0.37 s of import time measured in the sandbox). The file only lists font
    paths under /usr, which the kernel sees anyway; where its version does not match, matplotlib rebuilds.
    """
    base = os.environ.get("MPLCONFIGDIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "matplotlib"
    )
    found = sorted(Path(base).glob("fontlist-v*.json"))
    return found[-1] if found else None


def describe(paths: Iterable[Allowed]) -> str:
    """The sandbox's filesystem in words, one path a line (``--show``)."""
    return "\n".join(
        f"{a.kind:8s} {a.target}"
        + (f"  <- {a.source}" if a.source and a.source != a.target else "")
        for a in paths
    )
