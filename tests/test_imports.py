"""The package's import structure: every module imports on its own, imports run one way (no cycle, even
through imports inside functions), and the inference entry points start without TensorFlow."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tfdeepfake"


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """``{module: in-package modules it imports}``, counting imports anywhere in the file (inside
    functions too) and ``from package import module`` as importing that module."""
    known = set(module_names())
    graph: dict[str, set[str]] = {}
    for name in known:
        package_init = ROOT / name.replace(".", "/") / "__init__.py"
        is_package = package_init.is_file()
        path = package_init if is_package else (ROOT / name.replace(".", "/")).with_suffix(".py")
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node)
                targets.add(base)
                targets.update(f"{base}.{a.name}" for a in node.names)
        # importing a.b.c runs a/__init__ and a/b/__init__ too, but those are the parents' own edges
        graph[name] = {t for t in targets if t in known and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[m1, m2, ..., m1]``, else ``None`` (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "tfdeepfake.models.fusion" in graph["tfdeepfake.scoring"]
    assert "tfdeepfake.scorer" in graph["tfdeepfake.predict"]


def test_no_import_cycle_among_package_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def design_rows() -> dict[str, int]:
    """``{module or package prefix: row}`` from the module map in ``docs/DESIGN.md``."""
    text = (ROOT / "docs" / "DESIGN.md").read_text()
    rows: dict[str, int] = {}
    for line in text.split("### Direction of imports", 1)[1].split("```")[1].splitlines():
        if len(line) > 6 and line[:6].strip().isdigit():
            tokens = line[6:].split()  # the modules, then examples "a -> b, c"
            names = tokens[:tokens.index("->") - 1] if "->" in tokens else tokens
            for name in names:
                module = "tfdeepfake" if name == "__init__" else f"tfdeepfake.{name.rstrip('/')}"
                rows[module] = int(line[:6])
    return rows


def _row(rows: dict[str, int], module: str) -> int:
    """The row of ``module``, or of the package it is in (``tfdeepfake.models.fusion``: ``models/``)."""
    while module not in rows and "." in module:
        module = module.rsplit(".", 1)[0]
    return rows[module]


def test_imports_run_down_the_rows_of_the_design_doc():
    rows = design_rows()
    graph = import_graph()
    packages = [r for r in rows if r != "tfdeepfake"]
    missing = [m for m in graph if m != "tfdeepfake"
               and not any(m == r or m.startswith(r + ".") for r in packages)]
    assert not missing, f"modules missing from the module map in docs/DESIGN.md: {missing}"
    wrong = [f"{a} (row {_row(rows, a)}) -> {b} (row {_row(rows, b)})"
             for a, targets in graph.items() for b in targets
             if b != "tfdeepfake" and _row(rows, b) >= _row(rows, a)
             and not (a.startswith("tfdeepfake.models") and b.startswith("tfdeepfake.models"))]
    assert not wrong, "imports against the rows of docs/DESIGN.md: " + "; ".join(wrong)


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_every_module_imports_in_a_fresh_interpreter():
    # A fresh interpreter, and before each module every tfdeepfake module is dropped from sys.modules, so
    # each one is imported as if it came first (a missing or circular import fails). TensorFlow and Keras
    # stay loaded between them: their start-up is paid once.
    names = module_names()
    code = ("import importlib, sys\nimport keras\nfailed = []\n"
            f"for name in {names!r}:\n"
            "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'tfdeepfake']:\n"
            "        del sys.modules[loaded]\n"
            "    try:\n        importlib.import_module(name)\n"
            "    except Exception as exc:\n        failed.append(f'{name}: {exc!r}')\n"
            "print('\\n'.join(failed))\nsys.exit(1 if failed else 0)\n")
    result = _run(code)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]


@pytest.mark.parametrize("module", ["tfdeepfake.predict", "tfdeepfake.serve", "tfdeepfake.explain"])
def test_inference_entry_points_start_without_tensorflow(module):
    # predict and serve set TF_ONEDNN_ASSUME_FROZEN_WEIGHTS before TensorFlow loads (hardware.py)
    result = _run(f"import sys, {module}; print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["False", "False"]
