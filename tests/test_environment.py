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
