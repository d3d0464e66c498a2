"""The benchmark scripts name bnlint modules that exist.

Benchmarks are not run by the test suite, so a module moved by a refactor only showed up
when someone ran `make bench` (``bnlint.onnx.runtime.make_feeds`` moved to ``bnlint.runtime``
and broke the report step after eight minutes of measuring).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _bnlint_imports(path: Path) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bnlint"):
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names if alias.name.startswith("bnlint")]
    return found


@pytest.mark.parametrize("script", sorted(BENCHMARKS.glob("*.py")), ids=lambda p: p.name)
def test_every_bnlint_name_a_benchmark_imports_exists(script: Path) -> None:
    for module_name, name in _bnlint_imports(script):
        module = importlib.import_module(module_name)
        if name is not None and not hasattr(module, name):
            importlib.import_module(f"{module_name}.{name}")  # a submodule


def test_the_check_sees_the_benchmarks() -> None:
    assert any(_bnlint_imports(script) for script in BENCHMARKS.glob("*.py"))
