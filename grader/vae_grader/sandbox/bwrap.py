"""Whether bubblewrap can confine a kernel on this host, and the options that depend on the host.

Kept apart from the allowlist (:mod:`vae_grader.sandbox.confine`) because these answers come from the
machine, not from the course: which system folders are links (Debian 12 merges ``/bin``, ``/sbin``
and ``/lib*`` into ``/usr``), which options this bwrap knows, and whether the kernel may unshare
the namespaces it needs (``bwrap_problem`` starts a tiny sandbox to find out, ~10 ms, once).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

# The system: bound read-only where they are folders, recreated where they are symlinks (Debian 12
# merges /bin, /sbin, /lib* into /usr, so here only /usr is a folder).
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


def system_arguments() -> list[str]:
    """bwrap options for the system folders, as they are on this host (symlink or folder)."""
    args: list[str] = []
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


@functools.lru_cache(maxsize=1)
def bwrap_problem() -> str | None:
    """Why bubblewrap cannot confine the kernel here, in one line; None when it works.

    It is not enough that ``bwrap`` is installed: some systems forbid the namespaces it needs
    (e.g. unprivileged user namespaces off), so a tiny sandbox is actually started (~10 ms).
    """
    path = shutil.which("bwrap")
    if path is None:
        return "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap; or run scripts/setup.sh as root)"
    true = shutil.which("true") or "/bin/true"
    command = [
        path,
        *namespace_flags(),
        "--die-with-parent",
        *system_arguments(),
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--",
        true,
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not be started: {exc}"
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        return f"bubblewrap is installed but cannot create a sandbox here: {reason}"
    return None


@functools.lru_cache(maxsize=None)
def bwrap_supports(option: str) -> bool:
    """Whether this bwrap knows ``option`` (--size and --disable-userns came with bubblewrap 0.8)."""
    path = shutil.which("bwrap")
    if path is None:
        return False
    try:
        text = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return f"{option} " in text


def namespace_flags() -> list[str]:
    """Namespaces to unshare.

    As root, no user namespace: the launcher must really drop to an unprivileged uid (in a user
    namespace root maps back to root, and Linux exempts root from RLIMIT_NPROC). Otherwise a user
    namespace is needed (it is how unprivileged bwrap works), and nested ones are forbidden.
    """
    common = [
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
    ]
    if os.geteuid() == 0:
        return common
    return [
        "--unshare-user",
        *(["--disable-userns"] if bwrap_supports("--disable-userns") else []),
        *common,
    ]
