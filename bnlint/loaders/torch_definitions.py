"""Where a module was constructed: the statement in the user's code that built it.

A finding about a BatchNorm's momentum, epsilon, running-statistics switch or channel
count, or about the bias of the convolution before it, is caused by a constructor call
(``nn.BatchNorm2d(64, momentum=0.9)``), not by the ``forward`` line that calls the layer,
which is all an exporter or tracer records. The statement is found by parsing Python
source with :mod:`ast` (nothing is imported or run) and searching the owner class for
``self.<name> = …``. A child of ``nn.Sequential``/``nn.ModuleList`` is located at its
element when the container is written out (``nn.Sequential(conv, nn.BatchNorm2d(8), …)``),
else at the statement that built the container. A module made some other way (``setattr``,
``add_module``, a loop) keeps the ``forward`` line.

Two sources of that code:

- a live module of a ``module:factory`` entry point (already run under
  ``--trust-model-code``): the source of the owner module's class, read with :mod:`inspect`;
- a model file (``.pt2``, TorchScript, exported ONNX), which records only the ``forward``
  call: the recorded Python file, when it is a regular file of at most
  :data:`MAX_SOURCE_BYTES` inside the repository, reached without a symbolic link. The
  owner is the innermost class with a method spanning the recorded line, and that line
  must use ``self.<name>`` (else the recorded frame is not the owner's and nothing moves).

The ``forward`` line is kept as ``location.call_line``. Any failure leaves the location
as it was: a better line is a nicety, never a reason to fail the lint.
"""

from __future__ import annotations

import ast
import inspect
import os
import stat
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from bnlint.findings import Finding

# Rules whose finding is fixed in the constructor call of the module it names.
CONSTRUCTOR_CAUSED = frozenset({"BN004", "BN007", "BN010", "BN014", "BN015", "BN019"})
MAX_SOURCE_BYTES = 1 << 20  # a model's Python source file read from the repository
Site = tuple[str, int, ast.AST]


def _assigned(scope: ast.AST, name: str) -> ast.expr | None:
    """The value of the first ``self.<name> = …`` under ``scope``."""
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(_is_self_attribute(target, name) for target in targets):
            return value
    return None


def _is_self_attribute(node: ast.AST, name: str) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == name
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    )


def _element(value: ast.AST, index: int) -> ast.expr | None:
    """Element ``index`` of ``nn.Sequential(a, b, …)`` or ``nn.ModuleList([a, b, …])``."""
    if not isinstance(value, ast.Call) or any(isinstance(a, ast.Starred) for a in value.args):
        return None
    elements = value.args
    if len(elements) == 1 and isinstance(elements[0], ast.List | ast.Tuple):
        elements = elements[0].elts
    return elements[index] if index < len(elements) else None


def _classes(text: str) -> list[ast.ClassDef]:
    """Every class in Python source ``text`` (parsed, never run)."""
    return [node for node in ast.walk(ast.parse(text)) if isinstance(node, ast.ClassDef)]


def _owner_class(classes: list[ast.ClassDef], line: int) -> ast.ClassDef | None:
    """The innermost class with a method whose body spans ``line``."""
    owners = [
        node
        for node in classes
        if any(
            isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            and item.lineno <= line <= (item.end_lineno or item.lineno)
            for item in node.body
        )
    ]
    return max(owners, key=lambda node: node.lineno, default=None)  # nested: the inner


def _uses_self_attribute(owner: ast.ClassDef, line: int, name: str) -> bool:
    """Does the smallest statement spanning ``line`` in ``owner`` use ``self.<name>``?"""
    statements = [
        node
        for node in ast.walk(owner)
        if isinstance(node, ast.stmt)
        and not isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.lineno <= line <= (node.end_lineno or node.lineno)
    ]
    if not statements:
        return False
    smallest = min(statements, key=lambda node: (node.end_lineno or node.lineno) - node.lineno)
    return any(_is_self_attribute(node, name) for node in ast.walk(smallest))


def _constructor_line(classes: list[ast.ClassDef], scope: str, call_line: int) -> int | None:
    """The line constructing the layer ``scope`` among the ``classes`` of a source file,
    given the line of the ``forward`` call that an exporter recorded for it."""
    parts = scope.split(".")
    name, index = parts[-1], None
    if name.isdigit() and len(parts) > 1:  # an element of a Sequential / ModuleList
        name, index = parts[-2], int(name)
    if not name.isidentifier():
        return None
    owner = _owner_class(classes, call_line)
    if owner is None or not _uses_self_attribute(owner, call_line, name):
        return None
    value = _assigned(owner, name)
    if value is None:
        return None
    element = _element(value, index) if index is not None else None
    return (element or value).lineno


def _class_assignment(cls: type, name: str) -> Site | None:
    """``self.<name> = …`` in the source of ``cls`` (user code only): file, line, value."""
    if cls.__module__.split(".")[0] == "torch":
        return None
    try:
        file = inspect.getsourcefile(cls)
        lines, start = inspect.getsourcelines(cls)
        value = _assigned(ast.parse(textwrap.dedent("".join(lines))), name)
    except (OSError, TypeError, SyntaxError):
        return None
    if file is None or value is None:
        return None
    return file, start + value.lineno - 1, value


def definition_site(root: Any, path: str) -> tuple[str, int] | None:
    """File and line of the statement that constructed ``root.get_submodule(path)``."""
    site = _site(root, path.split("."))
    return (site[0], site[1]) if site is not None else None


def _site(root: Any, parts: list[str]) -> Site | None:
    if not parts or not all(parts):
        return None
    try:  # a ScriptModule raises RuntimeError: its classes are torch's, nothing to find
        owner = root.get_submodule(".".join(parts[:-1])) if len(parts) > 1 else root
    except (AttributeError, TypeError, RuntimeError):
        return None
    found = _class_assignment(type(owner), parts[-1])
    if found is not None or len(parts) == 1:
        return found
    container = _site(root, parts[:-1])  # a torch container: where it was built
    if container is None or not parts[-1].isdigit():
        return container
    file, line, value = container
    element = _element(value, int(parts[-1]))
    if element is not None:
        return file, line + element.lineno - value.lineno, element
    return container


def _moved(
    findings: Iterable[Finding], site_of: Callable[[Finding], tuple[str, int] | None]
) -> list[Finding]:
    """``findings`` with each constructor-caused one pointed at ``site_of(finding)``."""
    sites: dict[tuple[str, Any, Any], tuple[str, int] | None] = {}
    out = []
    for finding in findings:
        if finding.code in CONSTRUCTOR_CAUSED and finding.scope:
            location = finding.location
            key = (finding.scope, location.get("source_file"), location.get("source_line"))
            if key not in sites:
                try:
                    sites[key] = site_of(finding)
                except Exception:  # a better line is a nicety: never fail the lint over it
                    sites[key] = None
            site = sites[key]
            if site is not None:
                moved = {**location, "source_file": site[0], "source_line": site[1]}
                call = location.get("source_line")
                if location.get("source_file") == site[0] and isinstance(call, int):
                    moved["call_line"] = call
                finding = replace(finding, location=moved)
        out.append(finding)
    return out


def locate_constructor_causes(root: Any, findings: Iterable[Finding]) -> list[Finding]:
    """``findings`` of the live module ``root`` with the source location of each
    constructor-caused finding moved from the ``forward`` call to the statement that
    built its module, where that is known."""
    return _moved(findings, lambda finding: definition_site(root, finding.scope or ""))


def read_repository_source(root: Path, relative: str) -> str | None:
    """The text of the Python file ``relative`` inside ``root``: None unless it is a
    regular ``.py`` file of at most :data:`MAX_SOURCE_BYTES` reached without a symbolic
    link (checked with ``lstat`` before it is opened, and again on the open file)."""
    path = PurePosixPath(relative)
    if path.is_absolute() or path.suffix != ".py" or not path.parts or ".." in path.parts:
        return None
    current = root
    for part in path.parts:
        current = current / part
        if stat.S_ISLNK(os.lstat(current).st_mode):
            return None
    info = os.lstat(current)
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SOURCE_BYTES:
        return None
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    descriptor = os.open(current, flags)
    with os.fdopen(descriptor, "rb") as handle:
        opened = os.fstat(handle.fileno())
        if not stat.S_ISREG(opened.st_mode) or opened.st_size > MAX_SOURCE_BYTES:
            return None
        data = handle.read(MAX_SOURCE_BYTES + 1)
    if len(data) > MAX_SOURCE_BYTES:
        return None
    return data.decode("utf-8")


def locate_in_repository(findings: Iterable[Finding], root: Path) -> list[Finding]:
    """``findings`` of a model file whose source locations are relative to ``root``
    (:mod:`bnlint.evidence.source_paths`), constructor-caused ones moved to the statement
    that built their layer where the recorded source file shows it."""
    parsed: dict[str, list[ast.ClassDef] | None] = {}  # each file read and parsed once

    def site_of(finding: Finding) -> tuple[str, int] | None:
        source, call = finding.location.get("source_file"), finding.location.get("source_line")
        if not isinstance(source, str) or not isinstance(call, int) or call < 1:
            return None
        if source not in parsed:
            try:
                text = read_repository_source(root, source)
                parsed[source] = _classes(text) if text is not None else None
            except (OSError, UnicodeDecodeError, ValueError, SyntaxError, RecursionError):
                parsed[source] = None
        classes = parsed[source]
        if classes is None:
            return None
        line = _constructor_line(classes, finding.scope or "", call)
        return (source, line) if line is not None else None

    return _moved(findings, site_of)
