"""The pinned environment: one set of exact pins, reached by both install routes."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def pinned_requirements() -> list[Requirement]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [
        Requirement(line) for line in lines if line.strip() and not line.lstrip().startswith("#")
    ]


def test_every_requirement_is_an_exact_pin():
    requirements = pinned_requirements()
    assert len(requirements) > 100  # the full transitive closure, not just the top level
    for req in requirements:
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{req} is not pinned with =="
    names = [canonicalize_name(r.name) for r in requirements if r.marker is None]
    assert len(names) == len(set(names)), "a package is pinned twice"


def test_tensorflow_flavour_follows_the_platform():
    reqs = {canonicalize_name(r.name): r for r in pinned_requirements() if r.marker is not None}
    cpu, full = reqs["tensorflow-cpu"], reqs["tensorflow"]
    assert str(cpu.specifier) == str(full.specifier) == "==2.21.0"
    for env, want_cpu in (
        ({"sys_platform": "linux", "platform_machine": "x86_64"}, True),
        ({"sys_platform": "linux", "platform_machine": "aarch64"}, False),
        ({"sys_platform": "darwin", "platform_machine": "arm64"}, False),
        ({"sys_platform": "win32", "platform_machine": "AMD64"}, False),
    ):
        assert cpu.marker.evaluate(env) is want_cpu and full.marker.evaluate(env) is not want_cpu, (
            env
        )


def test_requested_versions_are_the_ones_pinned():
    pins = {canonicalize_name(r.name): str(r.specifier) for r in pinned_requirements()}
    assert pins["keras"] == "==3.15.1"
    assert pins["nbgrader"] == "==0.9.6"
    assert pins["nbval"] == "==0.11.0"
    assert re.fullmatch(r"==4\.6\.\d+", pins["jupyterlab"])
    assert re.fullmatch(r"==7\.\d+\.\d+", pins["notebook"])
    assert re.fullmatch(r"==9\.\d+\.\d+", pins["pytest"])
    for name in ("numpy", "scipy", "matplotlib"):
        assert name in pins


def test_conda_route_installs_the_same_file():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip_sections = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert pip_sections == [["-r requirements.txt", "-e ."]], (
        "environment.yml must install exactly requirements.txt and the course package"
    )
    conda_packages = [d for d in deps if isinstance(d, str)]
    assert sorted(conda_packages) == ["pip", "python=3.11"], (
        "any other conda package would bypass the pins"
    )


def test_installed_environment_matches_the_pins():
    mismatches = []
    for req in pinned_requirements():
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            mismatches.append(f"{req.name} not installed")
            continue
        if installed not in req.specifier:
            mismatches.append(f"{req.name} {installed} (pinned {req.specifier})")
    assert not mismatches, "the environment drifted from requirements.txt: " + ", ".join(mismatches)


BACKEND_FILES = {"jax": "requirements-jax.txt", "torch": "requirements-torch.txt"}


def backend_requirements(backend: str) -> tuple[list[str], list[Requirement]]:
    """The ``-r`` includes and the requirements of one backend's file."""
    lines = [
        line.strip()
        for line in (ROOT / BACKEND_FILES[backend]).read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    includes = [line for line in lines if line.startswith("-r ")]
    return includes, [Requirement(line) for line in lines if not line.startswith("-")]


def test_each_backend_file_is_the_course_environment_plus_exact_pins():
    course = {canonicalize_name(r.name) for r in pinned_requirements()}
    for backend in BACKEND_FILES:
        includes, requirements = backend_requirements(backend)
        assert includes == ["-r requirements.txt"], f"{backend}: must add to requirements.txt"
        for req in requirements:
            specs = list(req.specifier)
            assert len(specs) == 1 and specs[0].operator == "==", f"{req} is not pinned with =="
            assert canonicalize_name(req.name) not in course, f"{req.name} is pinned twice"
    _, torch = backend_requirements("torch")
    pins = {canonicalize_name(r.name): str(r.specifier) for r in torch}
    assert pins["torch"] == "==2.13.0+cpu", "the CPU build: the plain wheel pulls GPU libraries"
    _, jax = backend_requirements("jax")
    assert {canonicalize_name(r.name): str(r.specifier) for r in jax} == {
        "jax": "==0.10.2",
        "jaxlib": "==0.10.2",
    }


def test_installed_backends_match_their_pins():
    mismatches = []
    for backend in BACKEND_FILES:
        try:
            metadata.version(backend)
        except metadata.PackageNotFoundError:
            continue  # that backend is not installed here: its pins (setuptools for torch) do not apply
        for req in backend_requirements(backend)[1]:
            try:
                installed = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                continue  # not installed here: tests/test_backends.py says whether it must be
            if installed not in req.specifier:
                mismatches.append(f"{req.name} {installed} (pinned {req.specifier})")
    assert not mismatches, "the backends drifted from their files: " + ", ".join(mismatches)


def test_nbformat_starts_without_compiling_the_iri_grammars():
    """jsonschema prefers rfc3987 when installed; without it every nbgrader command and every student's
    autograde imports rfc3987-syntax, which compiles its grammars at import (docs/measurements.md,
    "Start-up of a Python process"). Checked in a fresh interpreter: this process may have imported it."""
    import subprocess
    import sys

    found = subprocess.run(
        [sys.executable, "-c", "import sys, nbformat; print('rfc3987_syntax' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert found == "False"
