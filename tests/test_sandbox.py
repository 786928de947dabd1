"""The grading sandbox by allowlist: the kernel sees only what it needs, nothing of the host.

A red team, with the earlier sandbox (the whole system read-only, a list of folders hidden), read
another clone of the course elsewhere on the machine, environment secrets the denylist missed, and
wrote 801 MB into the kernel's socket folder on the grader's own /tmp. Here a sandboxed kernel is
started once (module fixture ``probed``) with canaries planted where that red team looked: a
sibling clone of the course, the grader's home folder, /var/tmp, and a secret in the grader's
environment. The kernel walks its whole filesystem, lists its environment, imports and trains,
tries to fill the socket folder, and lists its working folder; every test below checks one part
of that record here, in the grader's process. The tests at the end need no kernel (milliseconds).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import sys
import textwrap
import time
import zlib
from pathlib import Path

import pytest

from vae_grader.sandbox import bwrap, confine, environment
from vae_grader.sandbox import kernels as sandbox
from vae_grader.paths import COURSE_ROOT

CANARY = f"vae-canary-{os.getpid()}"
SECRET = f"secret-{CANARY}"
MiB = 2**20

# What the kernel runs. It only gathers facts; every verdict is made by the tests, outside the kernel.
_PROBE = textwrap.dedent("""
    import base64, ctypes.util, json, os, resource, sys, time, zlib
    facts = {"uid": os.getuid(), "cwd": os.getcwd()}
    entries = []
    for root, dirs, files in os.walk("/", followlinks=False):
        if root == "/":
            dirs[:] = [d for d in dirs if d not in ("proc", "sys")]
        for name in dirs + files:
            path = os.path.join(root, name)
            readable = os.path.isfile(path) and not os.path.islink(path) and os.access(path, os.R_OK)
            entries.append(("R " if readable else "- ") + path)
    facts["entries"] = base64.b64encode(zlib.compress("\\n".join(entries).encode(), 6)).decode()
    with open("/proc/self/environ", "rb") as f:  # as the kernel was started, before ipykernel added its own
        facts["environ"] = dict(item.decode().split("=", 1) for item in f.read().split(b"\\0") if b"=" in item)
    def attempt(action):
        try:
            action()
            return "allowed"
        except BaseException as exc:
            return type(exc).__name__
    facts["canary_opens"] = {path: attempt(lambda p=path: open(p).read()) for path in CANARIES}
    def fill(path, size):
        with open(path, "wb") as f:
            f.write(b"\\0" * size)
    facts["socket_folder_write"] = attempt(lambda: fill(os.path.join(SOCKETS, "big.bin"), 10 * 2**20))
    facts["socket_folder_mkdir"] = attempt(lambda: os.mkdir(os.path.join(SOCKETS, "more")))
    facts["runtime_folder_write"] = attempt(lambda: fill(os.path.join(RUNTIME, "big.bin"), 10 * 2**20))
    facts["tmp_write"] = attempt(lambda: fill("/tmp/big.bin", 10 * 2**20))
    facts["workdir_files"] = sorted(os.path.relpath(os.path.join(r, n), ".") for r, _, fs in os.walk(".") for n in fs)
    facts["solutions"] = attempt(lambda: open("solutions.py").read())
    facts["rlimits"] = [resource.getrlimit(r)[0] for r in (resource.RLIMIT_AS, resource.RLIMIT_NPROC, resource.RLIMIT_FSIZE)]
    started = time.monotonic()
    import course, keras, numpy, matplotlib, scipy
    facts["import_seconds"] = time.monotonic() - started
    facts["keras"] = keras.__version__
    (x, y), _ = course.load_mnist()
    facts["mnist_shape"] = list(x.shape)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x[:512].reshape(-1, 784).astype("float32") / 255, y[:512], epochs=1, verbose=0)
    facts["loss"] = float(history.history["loss"][-1])
    facts["find_library"] = ctypes.util.find_library("m")
    import getpass
    facts["user"] = getpass.getuser()
    print("FACTS" + json.dumps(facts))
""")


def _plant_canaries() -> list[Path]:
    """Files the kernel must not see: a sibling clone of the course, the home folder, /var/tmp."""
    planted: list[Path] = []
    for path in (
        COURSE_ROOT.parent / f"{CANARY}-clone" / "course" / "solutions.py",
        Path.home() / f".{CANARY}",
        Path("/var/tmp") / CANARY / "notes.txt",
    ):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(SECRET)
            planted.append(path)
        except OSError:
            continue  # not writable here; the home folder always is
    assert Path.home() / f".{CANARY}" in planted, "could not plant the canary in the home folder"
    return planted


def _scratch_course(base: Path) -> tuple[Path, Path]:
    """A course with a released data file, an instructor-only file, and a student's working copy."""
    course = base / "course"
    files = {
        "release/vae/vae.ipynb": "{}",
        "release/vae/data.csv": "1,2",
        "release/vae/extra/more.csv": "3",
        "release/vae/linked.csv": "4",
        "source/vae/vae.ipynb": "{}",
        "source/vae/data.csv": "1,2",
        "source/vae/solutions.py": SECRET,
        # nbgrader copies source/vae/* beside the submission: solutions.py lands in the working copy
        "autograded/alice/vae/vae.ipynb": SECRET,
        "autograded/alice/vae/data.csv": "1,2",
        "autograded/alice/vae/extra/more.csv": "3",
        "autograded/alice/vae/solutions.py": SECRET,
        "autograded/alice/vae/notes.txt": "the student's own extra file",
    }
    for relative, text in files.items():
        (course / relative).parent.mkdir(parents=True, exist_ok=True)
        (course / relative).write_text(text)
    workdir = course / "autograded" / "alice" / "vae"
    # A submitted symlink named like a released file must not be followed onto the grader's disk.
    (workdir / "linked.csv").symlink_to(course / "source" / "vae" / "solutions.py")
    return course, workdir


async def _run_kernel(course: Path, workdir: Path, canaries: list[Path]) -> dict:
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.root = str(course)
    km = sandbox.SandboxedKernelManager(kernel_name="python3", config=config)
    started = time.monotonic()
    await km.start_kernel(cwd=str(workdir))
    record: dict = {"start_seconds": time.monotonic() - started, "runtime": km._runtime_dir}
    runtime = Path(km._runtime_dir)
    record["socket_folder_after_start"] = (runtime / "sockets").exists()
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=120)
        code = (
            f"CANARIES = {[str(c) for c in canaries]!r}\nSOCKETS = {str(runtime / 'sockets')!r}\n"
            f"RUNTIME = {str(runtime)!r}\n" + _PROBE
        )
        out: list[str] = []

        def hook(msg: dict) -> None:
            content = msg["content"]
            out.append(content.get("text", "") + "\n".join(content.get("traceback", [])))

        probe_started = time.monotonic()
        reply = await kc.execute_interactive(code, timeout=600, output_hook=hook)
        record["probe_seconds"] = time.monotonic() - probe_started
        text = "".join(out)
        assert reply["content"]["status"] == "ok", (
            f"the probe failed in the sandbox:\n{text[-3000:]}"
        )
        record.update(json.loads(text[text.index("FACTS") + 5 :].splitlines()[0]))
        record["host_runtime_bytes"] = sum(
            p.stat().st_size for p in runtime.rglob("*") if p.is_file()
        )
        record["host_runtime_files"] = sorted(
            str(p.relative_to(runtime)) for p in runtime.rglob("*")
        )
        # Interrupting goes through the control channel (a signal to bwrap would end the sandbox).
        msg_id = kc.execute("import time; time.sleep(120)")
        await asyncio.sleep(1.0)
        asked = time.monotonic()
        await km.interrupt_kernel()
        while True:
            message = await kc.get_shell_msg(timeout=30)
            if message["parent_header"].get("msg_id") == msg_id:
                break
        record["interrupt"] = {
            "ename": message["content"].get("ename"),
            "seconds": time.monotonic() - asked,
        }
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
    record["runtime_removed"] = not runtime.exists()
    return record


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One sandboxed kernel, started with canaries around it; what it saw and did (see _PROBE)."""
    problem = bwrap.bwrap_problem()
    if problem:
        pytest.fail(f"the sandbox tests need bubblewrap: {problem}")
    if not os.environ.get("MNIST_NPZ"):
        pytest.fail(
            "MNIST_NPZ is not set: the sandbox must lend the offline MNIST copy (see conftest.py)"
        )
    course, workdir = _scratch_course(tmp_path_factory.mktemp("sandbox"))
    canaries = _plant_canaries()
    saved = dict(os.environ)
    os.environ.update(
        {
            "MY_DB_CONN": f"postgresql://grader:{SECRET}@db/vae",
            "SOME_HOST_SETTING": SECRET,
            "NBGRADER_DB_URL": f"postgresql://grader:{SECRET}@db/vae",
        }
    )
    os.environ.pop(environment.SANDBOX_ENV, None)
    try:
        record = asyncio.run(_run_kernel(course, workdir, canaries))
    finally:
        os.environ.clear()
        os.environ.update(saved)
        for path in canaries:
            top = path.parent if path.parent not in (Path.home(), Path("/var/tmp")) else path
            shutil.rmtree(top, ignore_errors=True) if top.is_dir() else top.unlink(missing_ok=True)
        shutil.rmtree(COURSE_ROOT.parent / f"{CANARY}-clone", ignore_errors=True)
    print(
        f"sandboxed kernel: start {record['start_seconds']:.1f} s, probe {record['probe_seconds']:.1f} s "
        f"(imports {record['import_seconds']:.1f} s), {os.getloadavg()[0]:.1f} load"
    )
    entries = zlib.decompress(base64.b64decode(record.pop("entries"))).decode().splitlines()
    record["paths"] = [line[2:] for line in entries]
    record["readable"] = [line[2:] for line in entries if line.startswith("R ")]
    record.update(course=course, workdir=workdir, canaries=canaries)
    return record


def _expected_roots(record: dict) -> list[Path]:
    """The allowlist, written out independently of the sandbox's own list."""
    import course

    roots = [
        Path(p)
        for p in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/dev", "/tmp")
    ]
    roots += [
        Path("/etc", name)
        for name in ("ld.so.cache", "localtime", "passwd", "group", "nsswitch.conf", "hosts")
    ]
    for prefix in (sys.prefix, sys.base_prefix):
        roots += [Path(os.path.abspath(prefix)), Path(os.path.realpath(prefix))]
    roots += [
        Path(course.__file__).resolve().parent,
        # lent at its given path and at its real one (a ../shared that is a link, say), as the prefixes
        Path(os.path.abspath(os.environ["MNIST_NPZ"])),
        Path(os.path.realpath(os.environ["MNIST_NPZ"])),
        Path(os.path.realpath(record["workdir"])),
        Path(record["runtime"]),
    ]
    return roots


def _within(roots: list[Path]):
    """A test for "is one of ``roots`` or inside one", on strings: 250,000 paths are checked."""
    exact = {str(r) for r in roots}
    prefixes = tuple(str(r).rstrip("/") + "/" for r in roots)
    return lambda path: str(path) in exact or str(path).startswith(prefixes)


def _under(path: Path | str, roots: list[Path]) -> bool:
    return _within(roots)(path)


@pytest.mark.sandbox
def test_the_kernel_sees_only_the_allowlisted_paths(probed):
    roots = _expected_roots(probed)
    ancestors = {parent for root in roots for parent in root.parents}
    ancestors = {str(a) for a in ancestors}
    paths = probed["paths"]
    allowed = _within(roots)
    outside = [p for p in paths if p not in ancestors and not allowed(p)]
    assert not outside, f"{len(outside)} paths outside the allowlist, e.g. {outside[:10]}"
    # The walk really covered the lent trees (it is not vacuous): numpy and the course package are readable.
    readable = set(probed["readable"])
    import course
    import numpy

    assert (
        str(Path(numpy.__file__)) in readable and str(Path(course.__file__).resolve()) in readable
    )
    assert len(readable) > 10_000, len(readable)
    # What the red team and the earlier sandbox exposed, by name.
    for forbidden in (
        "/home",
        "/srv",
        "/var",
        "/opt",
        "/run",
        "/mnt",
        "/media",
        str(COURSE_ROOT / "grader"),
        str(COURSE_ROOT / "source"),
        str(COURSE_ROOT / ".git"),
        str(COURSE_ROOT / "tests"),
        str(Path.home() / ".cache"),
        str(Path.home() / ".ssh"),
    ):
        inside = _within([Path(forbidden)])
        assert not any(inside(p) for p in paths), f"{forbidden} is visible in the sandbox"
    # /tmp is the kernel's own tmpfs: nothing of the grader's /tmp, only the kernel's files. A lent
    # path and the folders bubblewrap creates to mount it (a course cloned under /tmp has both) are
    # not leaks: they were judged above against the allowlist.
    lent = _within([root for root in roots if root != Path("/tmp")])
    tmp_names = {
        p.split("/")[2]
        for p in paths
        if p.startswith("/tmp/") and p not in ancestors and not lent(p)
    }
    expected_tmp = {".ipython", ".matplotlib", ".keras", "big.bin", Path(probed["runtime"]).name}
    if Path(probed["workdir"]).parts[1] == "tmp":
        expected_tmp.add(Path(probed["workdir"]).parts[2])
    assert tmp_names <= expected_tmp, sorted(tmp_names - expected_tmp)


@pytest.mark.sandbox
def test_canaries_on_the_host_are_invisible(probed):
    assert len(probed["canary_opens"]) == len(probed["canaries"]) >= 1
    for path, outcome in probed["canary_opens"].items():
        assert outcome == "FileNotFoundError", f"{path}: {outcome}"
    leaked = [p for p in probed["paths"] if CANARY in p]
    assert not leaked, leaked


@pytest.mark.sandbox
def test_the_kernel_environment_is_the_allowlist(probed):
    env = probed["environ"]
    outside = sorted(
        k
        for k in env
        if k not in environment.ENV_NAMES and not k.startswith(environment.ENV_PREFIXES)
    )
    assert not outside, f"variables outside the allowlist: {outside}"
    assert (
        "MY_DB_CONN" not in env and "NBGRADER_DB_URL" not in env and "SOME_HOST_SETTING" not in env
    )
    assert not [k for k, v in env.items() if SECRET in v], "a secret value reached the kernel"
    assert (
        env["HOME"] == "/tmp"
        and env["TMPDIR"] == "/tmp"
        and env["MNIST_NPZ"] == os.environ["MNIST_NPZ"]
    )
    assert env.get("VAE_MODE") == os.environ.get("VAE_MODE")
    roots = _expected_roots(probed)
    for folder in env["PATH"].split(":"):
        assert _under(Path(folder), roots), f"PATH names {folder}, which the kernel cannot see"


@pytest.mark.sandbox
def test_the_kernel_still_works(probed):
    assert probed["keras"].startswith("3.")
    assert probed["mnist_shape"] == [60000, 28, 28]
    assert (
        probed["loss"] == probed["loss"] and 0 < probed["loss"] < 10
    )  # finite: a training step ran
    assert probed["find_library"], "ctypes.util.find_library found nothing (ld.so.cache)"
    assert probed["user"] in ("student", "root") or os.geteuid() != 0
    assert probed["tmp_write"] == "allowed"  # the private tmpfs
    if os.geteuid() == 0:
        assert probed["uid"] != 0, "the kernel runs as root"
    assert probed["rlimits"] == [
        8 * 2**30,
        256,
        256 * MiB,
    ]  # the defaults (nbgrader_config.py sets the same)


@pytest.mark.sandbox
def test_the_socket_folder_takes_no_bytes(probed):
    """10 MB written where the ZMQ sockets live: refused, and nothing reached the grader's disk."""
    assert probed["socket_folder_after_start"] is False, (
        "the socket folder was not sealed after start"
    )
    assert probed["socket_folder_write"] == "FileNotFoundError"
    assert probed["socket_folder_mkdir"] == "FileNotFoundError"
    assert probed["runtime_folder_write"] != "allowed"
    # Left on the host: kernel.json, the generated /etc files and five sockets (a few kB).
    assert probed["host_runtime_bytes"] < 64 * 1024, probed["host_runtime_files"]
    assert "big.bin" not in " ".join(probed["host_runtime_files"])
    assert probed["runtime_removed"], "the runtime folder was left behind"


@pytest.mark.sandbox
def test_only_files_of_the_release_are_lent(probed):
    # data.csv and extra/more.csv are released; solutions.py is the instructor's (copied by nbgrader),
    # notes.txt the student's own, linked.csv a symlink, vae.ipynb holds the hidden tests.
    assert probed["workdir_files"] == ["data.csv", "extra/more.csv"]
    assert probed["solutions"] == "FileNotFoundError"
    assert probed["cwd"] == os.path.realpath(probed["workdir"])


@pytest.mark.sandbox
def test_interrupt_reaches_the_kernel(probed):
    assert probed["interrupt"]["ename"] == "KeyboardInterrupt"
    assert probed["interrupt"]["seconds"] < 20, probed["interrupt"]


# --- without a kernel (milliseconds) ---------------------------------------------------------------------------


def test_environment_is_filtered_by_allowlist():
    env = environment.allowed_environment(
        {
            "PATH": "/bin",
            "VAE_MODE": "grading",
            "LC_ALL": "C.UTF-8",
            "MNIST_NPZ": "/m",
            "KERAS_BACKEND": "tensorflow",
            "MY_DB_CONN": "postgresql://u:p@h/db",
            "SSL_CERT_FILE": "/x",
            "JPY_API_TOKEN": "x",
            "VAE_DB_PASSWORD": "x",
            "PYENV_ROOT": "/root/.pyenv",
            "JPY_PARENT_PID": "1",
            "SHELL": "/bin/bash",
        }
    )
    assert env == {
        "PATH": "/bin",
        "VAE_MODE": "grading",
        "LC_ALL": "C.UTF-8",
        "MNIST_NPZ": "/m",
        "KERAS_BACKEND": "tensorflow",
    }


def test_released_files_rule(tmp_path):
    release, work = tmp_path / "release", tmp_path / "work"
    for folder in (release, work):
        (folder / "sub").mkdir(parents=True)
        for name in ("a.csv", "sub/b.csv", "vae.ipynb", ".hidden", "link.csv"):
            (folder / name).write_text("x")
    (work / "only_here.py").write_text("x")
    (work / "link.csv").unlink()
    (work / "link.csv").symlink_to("/etc/hostname")
    (release / "missing.csv").write_text("x")
    # Not: the notebook, the hidden file, the symlink, a file only the release has, one only the work has.
    assert confine.released_files(work, release) == [Path("a.csv"), Path("sub/b.csv")]
    assert confine.released_files(work, tmp_path / "no-release") == []
    # A symlinked folder in the working copy is not followed either.
    shutil.rmtree(work / "sub")
    (work / "sub").symlink_to(tmp_path / "release" / "sub")
    assert confine.released_files(work, release) == [Path("a.csv")]


@pytest.mark.sandbox
def test_bwrap_builds_the_tree_from_nothing(tmp_path):
    km = sandbox.SandboxedKernelManager(kernel_name="python3")
    km._workdir = str(tmp_path)
    args = km.bwrap_arguments()
    binds = [(args[i + 1], args[i + 2]) for i, a in enumerate(args) if a in ("--ro-bind", "--bind")]
    assert ("/", "/") not in binds, "the host's root is bound"
    sources = [Path(source) for source, _ in binds]
    for secret_place in (
        COURSE_ROOT,
        COURSE_ROOT / "grader",
        Path.home(),
        Path("/etc"),
        Path("/var"),
        Path("/srv"),
    ):
        assert secret_place not in sources, f"{secret_place} is lent to the kernel"
    assert all(a.kind != "rw" for a in km.allowed_paths()), (
        "writable host path without a started kernel"
    )
