"""The layers of bnlint/docgen/architecture.py, enforced on every import the code makes.

Imports are read with ``ast`` (module level, inside functions, under TYPE_CHECKING), so an
import hidden in a function body counts like any other: a cycle closed that way is still a
cycle. Imports only a type checker sees obey the layers but close no cycle. ``python -m tests.test_architecture`` prints the figures.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import pytest

from bnlint.docgen.architecture import (
    FORBIDDEN,
    LAYERS,
    ORDER,
    allowed,
    layer_of,
    markdown,
    through_door,
)

ROOT = Path(__file__).resolve().parent.parent
# Where each import name's source lives in a checkout (rules/ ships as bnlint.rules).
PACKAGES = {"bnlint": ROOT / "bnlint", "bnlint.rules": ROOT / "rules"}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (a package when a name comes from its __init__)
    name: str | None  # the name imported from ``target``, None for the module itself
    in_function: bool
    line: int
    typing_only: bool = False  # under ``if TYPE_CHECKING:``: never executed


def _is_type_checking(test: ast.expr) -> bool:
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", None)
    return name == "TYPE_CHECKING"


def modules(packages: dict[str, Path]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under each package folder."""
    found = {}
    for package, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(known: dict[str, Path]) -> list[Import]:
    """Every import of one known module by another (self-imports left out)."""
    found = []
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        in_function = {
            id(node)
            for function in ast.walk(tree)
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            for node in ast.walk(function)
        }
        typing_only = {
            id(node)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and _is_type_checking(block.test)
            for statement in block.body
            for node in ast.walk(statement)
        }
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(tree):
            nested = id(node) in in_function
            if isinstance(node, ast.Import):
                targets = [(_resolve(alias.name, known), None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                targets = []
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    if submodule in known:
                        targets.append((submodule, None))
                    else:
                        targets.append((_resolve(base, known), alias.name))
            else:
                continue
            for target, name in targets:
                if target is not None and target != module:
                    typing = id(node) in typing_only
                    found.append(Import(module, target, name, nested, node.lineno, typing))
    return found


def cycles(edges: list[Import]) -> list[list[str]]:
    """The import cycles, one per strongly connected group of modules (imports made only for
    type checkers never run, so they close no cycle; they still obey the layers)."""
    graph = nx.DiGraph((e.source, e.target) for e in edges if not e.typing_only)
    return [sorted(group) for group in nx.strongly_connected_components(graph) if len(group) > 1]


def forbidden(edges: list[Import]) -> list[str]:
    bad = []
    for edge in edges:
        source, target = layer_of(edge.source), layer_of(edge.target)
        if source and target and not allowed(source, target):
            why = FORBIDDEN.get((source, target), f"{source} may not import {target}")
            bad.append(f"{edge.source}:{edge.line} imports {edge.target} ({why})")
        elif not through_door(edge.source, edge.target):
            bad.append(f"{edge.source}:{edge.line} imports {edge.target} (past its package's door)")
    return bad


def private_imports(edges: list[Import]) -> list[str]:
    return [
        f"{edge.source}:{edge.line} imports {edge.name} from {edge.target}"
        for edge in edges
        if edge.name and edge.name.startswith("_") and not edge.name.startswith("__")
    ]


@pytest.fixture(scope="module")
def edges() -> list[Import]:
    return imports(modules(PACKAGES))


def test_every_module_has_a_layer() -> None:
    unplaced = [name for name in modules(PACKAGES) if layer_of(name) is None]
    assert not unplaced, f"place these modules in bnlint/docgen/architecture.py: {unplaced}"


def test_no_import_cycles(edges: list[Import]) -> None:
    assert cycles(edges) == []


def test_no_forbidden_arrows(edges: list[Import]) -> None:
    assert forbidden(edges) == []


def test_no_private_name_is_imported_across_modules(edges: list[Import]) -> None:
    assert private_imports(edges) == []


def test_the_layers_form_a_hierarchy() -> None:
    order = [layer.name for layer in LAYERS]
    assert len(set(order)) == len(order) and tuple(order) == ORDER
    for index, layer in enumerate(LAYERS):
        assert layer.may_import <= set(order[:index]), f"{layer.name} may only import below it"
    for source, target in FORBIDDEN:
        assert not allowed(source, target), f"{source} -> {target} is forbidden yet allowed"


def test_specific_globs_win() -> None:
    assert layer_of("bnlint.fold.cli") == "cli"
    assert layer_of("bnlint.fold.plan") == "fold"
    assert layer_of("bnlint.rules.bn003_training_mode_at_inference") == "rules"
    assert layer_of("bnlint") == "api"


def test_the_architecture_page_is_generated_from_the_layers() -> None:
    page = markdown()
    order = [layer.name for layer in LAYERS]
    matrix = [line for line in page.splitlines() if line.startswith("| **") and "●" in line]
    for layer, row in zip(LAYERS[1:], matrix, strict=True):  # foundation imports nothing
        cells = [cell.strip() for cell in row.split("|")[2:-1]]
        assert row.startswith(f"| **{layer.name}** |")
        assert {order[i] for i, cell in enumerate(cells) if cell} == layer.may_import
    committed = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert committed.endswith(page), "docs/architecture.md is stale: run `make docs`"


def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for relative, text in files.items():
        path = tmp_path / "bnlint" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return modules({"bnlint": tmp_path / "bnlint"})


def test_the_checks_see_imports_hidden_in_functions(tmp_path: Path) -> None:
    known = _package(
        tmp_path,
        {
            "__init__.py": "",
            "graph.py": "def later():\n    from bnlint.loaders.onnx import load\n",
            "loaders/__init__.py": "",
            "loaders/onnx.py": "from ..graph import later\nfrom bnlint.engine import _hidden\n",
            "engine.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import bnlint.report\n",
            "report.py": "import bnlint.engine\n",
            "api.py": "from bnlint.loaders.onnx import load\nfrom bnlint.loaders import load\n",
        },
    )
    found = imports(known)
    assert {(e.source, e.target, e.in_function) for e in found} == {
        ("bnlint.graph", "bnlint.loaders.onnx", True),
        ("bnlint.loaders.onnx", "bnlint.graph", False),
        ("bnlint.loaders.onnx", "bnlint.engine", False),
        ("bnlint.engine", "bnlint.report", False),
        ("bnlint.report", "bnlint.engine", False),
        ("bnlint.api", "bnlint.loaders.onnx", False),
        ("bnlint.api", "bnlint.loaders", False),
    }
    assert cycles(found) == [["bnlint.graph", "bnlint.loaders.onnx"]]  # not engine <-> report
    assert sorted(text.split(" (")[0] for text in forbidden(found)) == [
        "bnlint.api:1 imports bnlint.loaders.onnx",
        "bnlint.engine:3 imports bnlint.report",
        "bnlint.graph:2 imports bnlint.loaders.onnx",
        "bnlint.loaders.onnx:2 imports bnlint.engine",
    ]
    assert private_imports(found) == ["bnlint.loaders.onnx:2 imports _hidden from bnlint.engine"]


def figures() -> dict[str, int]:
    """The numbers a closing note quotes (``python -m tests.test_architecture``)."""
    found = imports(modules(PACKAGES))
    statements = {(edge.source, edge.line) for edge in found}
    return {
        "internal import statements": len(statements),
        "inside functions": len({(e.source, e.line) for e in found if e.in_function}),
        "cycles": len(cycles(found)),
        "forbidden arrows": len(forbidden(found)),
        "private names imported across modules": len(private_imports(found)),
    }


if __name__ == "__main__":
    for label, value in figures().items():
        print(f"{label}: {value}")
    found = imports(modules(PACKAGES))
    for group in cycles(found):
        print("cycle:", " ".join(group))
    for line in forbidden(found) + private_imports(found):
        print(line)
