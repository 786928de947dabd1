"""A real PostgreSQL server for the tests, from Debian's package, in a temporary folder.

A large course keeps its gradebook on a PostgreSQL server (``NBGRADER_DB_URL=postgresql://...``).
The tests prove that path on the real thing, not on SQLite pretending: ``initdb`` and ``pg_ctl``
from the machine's PostgreSQL installation create a cluster in a scratch folder, listening on
127.0.0.1 on a free port and on a socket in that folder only, and remove it afterwards. Nothing of
a PostgreSQL service the machine may run is touched.

PostgreSQL refuses to run as root. Run as root (CI, this machine), the cluster belongs to the
``postgres`` system user that Debian's package creates; run as anyone else, to that user.

Where no server binaries exist, :func:`postgres_problem` says why, and the tests that need one skip
with that line (``scripts/setup.sh`` installs the package wherever it can).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SERVER_USER = "postgres"  # the system user Debian's postgresql package creates
SUPERUSER = "grader"  # the cluster's own superuser; authentication is "trust" on loopback only


def server_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4])
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def postgres_problem() -> str | None:
    """Why no server can be started here, or None."""
    if server_bin() is None:
        return "PostgreSQL's server (initdb, pg_ctl) is not installed: apt-get install postgresql"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and there is no '{SERVER_USER}' user to run the server as"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class PostgresServer:
    folder: Path
    port: int

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        psql = shutil.which("psql") or str(server_bin() / "psql")
        subprocess.run(
            [psql, "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres"]
            + ["-c", f'CREATE DATABASE "{name}"'],
            check=True,
            capture_output=True,
            text=True,
        )
        return self.url(name)


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["setpriv", f"--reuid={SERVER_USER}", f"--regid={SERVER_USER}", "--clear-groups", *argv]


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throwaway cluster; stop it and delete its folder on exit."""
    problem = postgres_problem()
    if problem:
        raise RuntimeError(problem)
    bin_dir = server_bin()
    folder = Path(tempfile.mkdtemp(prefix="vae-postgres-"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SERVER_USER)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    data, log = folder / "data", folder / "server.log"
    port = _free_port()
    subprocess.run(
        _as_server_user(
            [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", SUPERUSER, "--no-sync"]
        ),
        check=True,
        capture_output=True,
        text=True,
    )
    options = f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off"
    started = subprocess.run(
        _as_server_user(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w"]
            + ["-t", "60", "start"]
        ),
        capture_output=True,
        text=True,
    )
    try:
        if started.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else started.stderr
            raise RuntimeError(f"PostgreSQL did not start on port {port}: {tail}")
        yield PostgresServer(folder, port)
    finally:
        subprocess.run(
            _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)
