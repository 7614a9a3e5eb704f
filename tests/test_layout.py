"""The package's architecture, checked on its source: layers import only downwards, no import cycle, and
no module outside ``controls/`` names a specific control (what a control does lives on the control)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from volprobe.controls import CONTROLS

PACKAGE = Path(__file__).resolve().parents[1] / "volprobe"

#: Layer of each top-level part (a module may import its own layer and any lower one); ``stats`` reads
#: records and may import only the shared contracts; ``viewer`` (report.html, probe figure) shows records
#: beside the volumes, masks and controls behind them, so it sits above both ``probes`` and ``stats``.
CONTRACTS = {"__init__", "errors", "seeding", "fileio", "jsonio", "manifest", "outputs", "registry", "items",
             "records", "scoring_rules"}
LAYERS = {"contracts": 0, "segmentation": 1, "controls": 2, "probes": 3, "stats": 3, "viewer": 4, "demo": 5,
          "cli": 6}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """volprobe modules ``path`` imports anywhere in its code (module level or inside functions)."""
    tree = ast.parse(path.read_text(), str(path))
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name.startswith("volprobe") and name != here:
                found.add(name)
    return found


def _part(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in CONTRACTS:
        return "contracts"
    return parts[1]


def test_every_import_points_down_the_layers():
    modules = _modules()
    upward = []
    for name, path in modules.items():
        for target in _imports(path, modules):
            a, b = _part(name), _part(target)
            allowed = LAYERS[a] >= LAYERS[b] and (a != "stats" or b in ("stats", "contracts")) \
                and (b != "stats" or a in ("stats", "viewer", "demo", "cli")) and not (a == "probes" and b == "stats")
            if not allowed:
                upward.append(f"{name} -> {target}")
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_contracts_import_only_each_other_in_one_direction():
    order = ["errors", "seeding", "fileio", "jsonio", "registry", "manifest", "outputs", "items", "records",
             "scoring_rules"]
    modules = _modules()
    for i, name in enumerate(order):
        targets = {t.split(".")[-1] for t in _imports(modules[f"volprobe.{name}"], modules)} - {"volprobe"}
        assert targets <= set(order[:i]), f"volprobe.{name} imports {sorted(targets - set(order[:i]))}"


def test_no_import_cycle():
    modules = _modules()
    graph = {name: _imports(path, modules) for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def _string_constants(path: Path) -> list[tuple[int, str]]:
    """String constants of a module's code, docstrings left out."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def test_no_module_outside_controls_names_a_control():
    names = set(CONTROLS.names())
    assert {"full", "text_only", "mirror_lr"} <= names
    found = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("controls/") or rel == "cli.py":
            continue
        for line, text in _string_constants(path):
            if text in names or text.partition(":")[0] in names and ":" in text:
                found.append(f"{rel}:{line}: {text!r}")
    assert not found, "control names in code outside controls/:\n" + "\n".join(found)


@pytest.mark.parametrize("folder", ["segmentation", "controls", "probes", "stats", "viewer"])
def test_module_docstrings_stand_on_their_own(folder):
    """No module docstring cites an issue number or a file outside the repository."""
    for path in (PACKAGE / folder).rglob("*.py"):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert not re.search(r"\bissues?\b|shared/", doc, flags=re.IGNORECASE), path
