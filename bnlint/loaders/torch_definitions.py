"""Where a live module was constructed: the statement in the user's code that built it.

A finding about a BatchNorm's momentum, epsilon, running-statistics switch or channel
count, or about the bias of the convolution before it, is caused by a constructor call
(``nn.BatchNorm2d(64, momentum=0.9)``), not by the ``forward`` line that calls the layer,
which is all an exporter or tracer records. For a model built by a ``module:factory``
entry point (already run under ``--trust-model-code``) bnlint holds the module objects, so
it can name that statement: the source of the owner module's class is read with
:mod:`inspect` and parsed with :mod:`ast` (nothing is run again), and the class is searched
for ``self.<name> = …``. A child of ``nn.Sequential``/``nn.ModuleList`` is located at its
element when the container is written out (``nn.Sequential(conv, nn.BatchNorm2d(8), …)``),
else at the statement that built the container. A module made some other way (``setattr``,
``add_module``, a loop) keeps the ``forward`` line.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from bnlint.findings import Finding

# Rules whose finding is fixed in the constructor call of the module it names.
CONSTRUCTOR_CAUSED = frozenset({"BN004", "BN007", "BN010", "BN014", "BN015", "BN019"})
Site = tuple[str, int, ast.AST]


def _class_assignment(cls: type, name: str) -> Site | None:
    """``self.<name> = …`` in the source of ``cls`` (user code only): file, line, value."""
    if cls.__module__.split(".")[0] == "torch":
        return None
    try:
        file = inspect.getsourcefile(cls)
        lines, start = inspect.getsourcelines(cls)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return None
    if file is None:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and target.attr == name
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
            ):
                return file, start + value.lineno - 1, value
    return None


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
    index = int(parts[-1])
    if isinstance(value, ast.Call) and not any(isinstance(a, ast.Starred) for a in value.args):
        elements = value.args
        if len(elements) == 1 and isinstance(elements[0], ast.List | ast.Tuple):
            elements = elements[0].elts  # nn.ModuleList([...])
        if index < len(elements):
            return file, line + elements[index].lineno - value.lineno, elements[index]
    return container


def locate_constructor_causes(root: Any, findings: Iterable[Finding]) -> list[Finding]:
    """``findings`` with the source location of each constructor-caused finding moved from
    the ``forward`` call to the statement that built its module, where that is known."""
    sites: dict[str, tuple[str, int] | None] = {}
    out = []
    for finding in findings:
        if finding.code in CONSTRUCTOR_CAUSED and finding.scope:
            if finding.scope not in sites:
                try:
                    sites[finding.scope] = definition_site(root, finding.scope)
                except Exception:  # a better line is a nicety: never fail the lint over it
                    sites[finding.scope] = None
            site = sites[finding.scope]
            if site is not None:
                location = {**finding.location, "source_file": site[0], "source_line": site[1]}
                finding = replace(finding, location=location)
        out.append(finding)
    return out
