"""A static look at the code a student wrote, for tampering with the grading tools or with processes.

:func:`scan_source` finds code that tampers with the grading tools (``checks.expect = ...``,
``np.testing...`` assignments, ``builtins``, IPython hooks) or with processes (``os.kill``); the
findings become notes for the student (``RepairSubmission`` adds them). Nothing is refused on
its strength alone: the executor (``vae_grader.preprocessors.execute``) and the judge catch what takes effect.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass

from nbformat.notebooknode import NotebookNode

from vae_grader.cells import grade_id

# --- static scan ----------------------------------------------------------------------------------------

TOOL_NAMES = {
    "checks",
    "np",
    "numpy",
    "course",
    "keras",
    "ops",
    "layers",
    "norm",
    "scipy",
    "builtins",
    "sys",
    "math",
    "random",
    "tf",
    "tensorflow",
    "plotting",
}
"""Names whose attributes the tests rely on: assigning to them changes what the tests check."""
PROCESS_CALLS = {
    ("os", "kill"),
    ("os", "killpg"),
    ("os", "_exit"),
    ("os", "abort"),
    ("signal", "pthread_kill"),
    ("os", "fork"),
    ("os", "forkpty"),
    ("sys", "exit"),
}


@dataclass(frozen=True)
class Finding:
    cell: str | None
    line: int
    what: str
    kind: str  # "tamper" | "process" | "unparsable"

    def message(self) -> str:
        where = f"{self.cell}" if self.cell else "one of your own cells"
        if self.kind == "tamper":
            return (
                f"In {where} (line {self.line}) your code {self.what}. Code that changes the tools the tests use "
                "is not run for grading when it takes effect; the tests then grade your notebook without it."
            )
        if self.kind == "process":
            return (
                f"In {where} (line {self.line}) your code {self.what}. The notebook is graded in a sandbox; "
                "this cannot affect anything outside it, and if the kernel stops, the grader restarts it."
            )
        return f"In {where}: {self.what}."


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _target_leaves(node: ast.AST) -> list[ast.AST]:
    """What an assignment target binds: ``a.b``, ``a[0]`` or each element of ``a.b, c = ...``."""
    if isinstance(node, (ast.Tuple, ast.List)):
        return [leaf for element in node.elts for leaf in _target_leaves(element)]
    if isinstance(node, ast.Starred):
        return _target_leaves(node.value)
    return [node]


def _dotted(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except Exception:
        return "an attribute"


def scan_source(source: str, cell: str | None = None) -> list[Finding]:
    """Tampering and process-control patterns in one cell's code (IPython magics are skipped)."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except (SyntaxError, RecursionError, MemoryError):
        return []  # the kernel reports it, with the line, when the cell runs
    found: list[Finding] = []

    def add(node: ast.AST, what: str, kind: str) -> None:
        found.append(Finding(cell, getattr(node, "lineno", 0), what, kind))

    for node in ast.walk(tree):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = list(node.targets)
        for target in targets:
            for leaf in _target_leaves(target):
                if isinstance(leaf, ast.Attribute) and _root_name(leaf) in TOOL_NAMES:
                    add(node, f"replaces {_dotted(leaf)}", "tamper")
                elif isinstance(leaf, ast.Subscript) and _dotted(leaf.value) in (
                    "sys.modules",
                    "__builtins__",
                ):
                    add(node, f"replaces an entry of {_dotted(leaf.value)}", "tamper")
        if isinstance(node, ast.Call):
            func = node.func
            name = _dotted(func)
            if (
                name in ("setattr", "delattr")
                and node.args
                and _root_name(node.args[0]) in TOOL_NAMES
            ):
                add(node, f"calls {name} on {_dotted(node.args[0])}", "tamper")
            elif name in (
                "get_ipython",
                "sys.settrace",
                "sys.setprofile",
                "threading.settrace",
                "importlib.reload",
            ):
                add(node, f"calls {name}()", "tamper")
            elif (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and (func.value.id, func.attr) in PROCESS_CALLS
            ):
                add(node, f"calls {func.value.id}.{func.attr}()", "process")
            elif name in ("exit", "quit"):
                add(node, f"calls {name}()", "process")
        if isinstance(node, ast.Name) and node.id == "__builtins__":
            add(node, "uses __builtins__", "tamper")
    unique: dict[tuple[int, str], Finding] = {}
    for finding in found:
        unique.setdefault((finding.line, finding.what), finding)
    return sorted(unique.values(), key=lambda f: f.line)


def scan_notebook(nb: NotebookNode, graded_locked: Iterable[str] = ()) -> list[Finding]:
    """Findings in every cell a student wrote (locked cells are the instructor's and skipped)."""
    locked = set(graded_locked)
    findings: list[Finding] = []
    for cell in nb.cells:
        if cell.cell_type != "code" or grade_id(cell) in locked:
            continue
        findings.extend(scan_source(cell.source, grade_id(cell)))
    return findings
