"""The public extension points the grader plugs into, and the shared helpers; seconds, no kernel."""

from __future__ import annotations

import ast
import os
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import nbformat
import pytest
from setuptools import find_packages
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from vae_grader import cells

from vae_grader.sandbox import environment

from vae_grader import paths

from vae_grader.sandbox import kernels as sandbox
from vae_grader.preprocessors.intake import SubmittedNotebook, TolerantNotebookExporter
from vae_grader.preprocessors.restructure import _visible_lines

ROOT = Path(__file__).resolve().parents[1]


def test_the_sandbox_is_a_registered_kernel_provisioner():
    found = {ep.name: ep.value for ep in entry_points(group="jupyter_client.kernel_provisioners")}
    assert found.get(sandbox.PROVISIONER_NAME) == "vae_grader.sandbox.kernels:SandboxProvisioner", (
        found
    )


def test_sandboxed_kernels_are_chosen_through_the_kernel_spec():
    km = sandbox.SandboxedKernelManager(kernel_name="python3")
    assert km.transport == "ipc"
    assert km.kernel_spec.metadata["kernel_provisioner"] == {
        "provisioner_name": sandbox.PROVISIONER_NAME
    }


def test_loading_the_course_config_changes_no_environment_variable():
    before = dict(os.environ)
    config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    assert dict(os.environ) == before
    assert config.Sandbox.memory_limit > 0  # the sandbox's limits are the Sandbox's options


def test_grading_defaults_never_override_the_instructor():
    assert environment.grading_kernel_environment({})["VAE_MODE"] == "grading"
    assert environment.grading_kernel_environment({"VAE_MODE": "student"})["VAE_MODE"] == "student"


def test_the_kernel_backend_is_chosen_apart_from_the_graders():
    kernel = environment.grading_kernel_environment
    assert kernel({})["KERAS_BACKEND"] == "tensorflow"
    assert kernel({"KERAS_BACKEND": "jax"})["KERAS_BACKEND"] == "jax"
    assert (
        kernel({"KERAS_BACKEND": "tensorflow", "VAE_KERNEL_BACKEND": "torch"})["KERAS_BACKEND"]
        == "torch"
    )
    # the verdicts load the kernel's files on the grader's own backend, whatever the kernel ran
    verdicts = environment.verdict_environment({"VAE_KERNEL_BACKEND": "jax"})
    assert verdicts["KERAS_BACKEND"] == "tensorflow"
    with pytest.raises(environment.BackendError, match="the course runs on tensorflow, jax, torch"):
        kernel({"VAE_KERNEL_BACKEND": "mxnet"})


def test_markers_come_from_nbgrader_settings():
    config = Config()
    config.ClearHiddenTests.begin_test_delimeter = "START SECRET"
    config.ClearHiddenTests.end_test_delimeter = "STOP SECRET"
    markers = cells.hidden_test_markers(config)
    source = "a = 1\n# START SECRET\nassert a == 1\n# STOP SECRET\nb = 2"
    assert markers.inside(source) == ["assert a == 1"]
    assert _visible_lines(source, markers) == {"a = 1", "b = 2"}
    assert cells.hidden_test_markers() == cells.Markers("BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


def test_cells_are_found_by_grade_id():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x"), nbformat.v4.new_code_cell("y")]
    nb.cells[1].metadata["nbgrader"] = {"grade_id": "encoder"}
    nb.cells[0].metadata["nbgrader"] = "not a dict"
    assert cells.cell_by_id(nb, "encoder") is nb.cells[1]
    assert cells.grade_id(nb.cells[0]) is None and cells.cell_by_id(nb, "decoder") is None
    assert cells.require_cell(nb, "encoder") is nb.cells[1]
    with pytest.raises(KeyError, match="no cell with grade_id 'decoder'"):
        cells.require_cell(nb, "decoder")


def test_only_the_submitted_file_is_read_tolerantly(tmp_path):
    exporter = TolerantNotebookExporter()
    assert exporter.is_submitted(SubmittedNotebook(str(tmp_path / "vae.ipynb"), None))
    assert not exporter.is_submitted(str(tmp_path / "autograded" / "vae.ipynb"))


def _distributed_packages(project: Path) -> set[str]:
    """The packages a distribution's wheel holds, as its pyproject.toml finds them."""
    with open(project / "pyproject.toml", "rb") as file:
        find = tomllib.load(file)["tool"]["setuptools"]["packages"]["find"]
    return set(find_packages(str(project), include=find["include"]))


def test_sample_submissions_are_test_data_not_package_code():
    """The demo set, the corpus and the manifest live under tests/, in no distribution."""
    students = _distributed_packages(ROOT)
    grader = _distributed_packages(ROOT / "grader")
    assert "course" in students and "vae_grader" in grader, (students, grader)
    assert "vae_grader.judge.hidden" in grader, (
        "the hidden verdicts (a subpackage) must ship in the grader wheel"
    )
    assert not any(name.split(".")[0] == paths.SAMPLES for name in students | grader)
    samples = ROOT / "tests" / paths.SAMPLES
    assert {"demo.py", "adversarial.py", "kit.py", "demo_manifest.md"} <= {
        p.name for p in samples.iterdir()
    }
    package = ROOT / "grader" / "vae_grader"
    assert not list(package.glob("*.md")), "the demo manifest belongs in tests/vae_samples/"
    for module in package.rglob("*.py"):
        tree = ast.parse(module.read_text(), str(module))
        assert "SUBMISSIONS" not in {
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name)
        }, f"{module.name} defines sample submissions"
        imported = {
            name
            for node in tree.body  # module level only: the demo and benchmark commands load samples late
            if isinstance(node, ast.Import | ast.ImportFrom)
            for name in (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
            )
        }
        assert not any(name.split(".")[0] == paths.SAMPLES for name in imported), (
            f"{module.name} imports the sample submissions when it is imported"
        )


def test_the_grader_commands_load_the_samples_from_tests(monkeypatch, tmp_path):
    kit = paths.samples("kit")
    assert Path(kit.__file__).resolve() == ROOT / "tests" / paths.SAMPLES / "kit.py"
    monkeypatch.setattr(paths, "TESTS", tmp_path / "tests")  # an installed course without tests/
    with pytest.raises(ModuleNotFoundError, match="sample submissions .* are missing"):
        paths.samples("demo")


def test_import_course_chooses_no_backend():
    """The backend is the student's visible choice (the set-up cell), never set by the package."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    code = "import os, course; print(os.environ.get('KERAS_BACKEND'))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "None"


# The grader's folders, lowest layer first: a module may import from its own layer or a lower one.
LAYERS = ("base", "sandbox", "judge", "kernel", "preprocessors", "pipeline", "apps")


def _grader_imports() -> dict[str, set[str]]:
    """Every vae_grader module and the vae_grader or measure modules it imports, at any depth of
    the file (the late imports inside functions included)."""
    package = ROOT / "grader"
    modules = {}
    for path in (package / "vae_grader").rglob("*.py"):
        parts = list(path.relative_to(package).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {d for d in deps if d.split(".")[0] in ("vae_grader", "measure")} - {name}
    return graph


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 2 and parts[1] in LAYERS else 0


def test_the_grader_imports_only_downwards_and_never_in_a_cycle():
    graph = _grader_imports()
    assert len(graph) > 50 and sum(map(len, graph.values())) > 100  # the graph was really read
    upward = [
        f"{m} ({LAYERS[_layer(m)]}) imports {d} ({LAYERS[_layer(d)]})"
        for m, deps in graph.items()
        for d in deps
        if d in graph and _layer(d) > _layer(m)
    ]
    assert not upward, "\n".join(upward)
    measuring = [
        f"{m} imports {d}" for m, deps in graph.items() for d in deps if d.startswith("measure")
    ]
    assert not measuring, "the grader wheel must not need the measuring tools: " + "; ".join(
        measuring
    )
    cycles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dep in graph[module] & graph.keys():
            if state.get(dep) == "open":
                cycles.append(" -> ".join(path[path.index(dep) :] + [module, dep]))
            elif dep not in state:
                visit(dep, path + [module])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [])
    assert not cycles, "\n".join(cycles)


def test_a_layer_check_that_can_fail():
    """The check above sees an upward import and a cycle when there is one."""
    assert _layer("vae_grader.preprocessors.execute") > _layer("vae_grader.kernel.session")
    assert _layer("vae_grader.paths") == 0 and _layer("vae_grader.apps.demo") == len(LAYERS) - 1
    graph = _grader_imports()
    assert "vae_grader.kernel.session" in graph["vae_grader.preprocessors.execute"]
