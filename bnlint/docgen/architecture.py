"""The architecture as data: which layer each module belongs to and which layers it may import.

``tests/test_architecture.py`` reads every import in ``bnlint/`` and ``rules/`` (at module
level and inside functions) and fails on an arrow not allowed here, on any import cycle and
on a private name imported across modules. ``docs/architecture.md`` is generated from the
same data (``python -m bnlint.docgen --docs docs``), so the picture cannot drift from the
test. A new module must be placed in a layer before the test passes.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass


@dataclass(frozen=True)
class Layer:
    name: str
    holds: str  # what the layer is responsible for, one line
    modules: tuple[str, ...]  # module globs (dotted names); the first matching layer wins
    may_import: frozenset[str]


def _layer(name: str, holds: str, modules: tuple[str, ...], *may_import: str) -> Layer:
    return Layer(name, holds, modules, frozenset(may_import))


ORDER = (
    "foundation",
    "contract",
    "config",
    "analysis",
    "onnx",
    "loaders",
    "fold",
    "drift",
    "rules",
    "engine",
    "evidence",
    "report",
    "api",
    "cli",
    "docs",
)


def _below(name: str, *but: str) -> tuple[str, ...]:
    """Every layer below ``name`` except ``but``."""
    return tuple(layer for layer in ORDER[: ORDER.index(name)] if layer not in but)


# Lowest first: a layer imports only layers listed before it (and itself).
LAYERS: tuple[Layer, ...] = (
    _layer(
        "foundation",
        "standard-library helpers: version, resources, process switches, bounded JSON and TOML, "
        "safe terminal text and output files",
        (
            "bnlint._version",
            "bnlint._perf",
            "bnlint._resources",
            "bnlint.json_data",
            "bnlint.toml_writer",
            "bnlint.evidence.digests",
            "bnlint.report.sanitize",
            "bnlint.report.write",
        ),
    ),
    _layer(
        "contract",
        "the graph contract every part shares: ModelGraph, parameters, findings, the rule "
        "contract, BN9xx diagnostics, the runtime protocol",
        (
            "bnlint.graph",
            "bnlint.graph_nx",
            "bnlint.graph_facts",
            "bnlint.params",
            "bnlint.findings",
            "bnlint.rule",
            "bnlint.diagnostics",
            "bnlint.runtime",
        ),
        "foundation",
    ),
    _layer(
        "config",
        "configuration files and keys resolved into Settings, and the name patterns they hold",
        ("bnlint.config", "bnlint.config.*"),
        "foundation",
        "contract",
    ),
    _layer(
        "analysis",
        "BN statistics and graph walks the rules share (format-neutral: they read ModelGraph)",
        ("bnlint.analysis", "bnlint.analysis.*"),
        "foundation",
        "contract",
    ),
    _layer(
        "onnx",
        "ONNX plumbing shared by the front end, fold and drift: element types, tensors in and "
        "out, atomic writes, ONNX Runtime sessions",
        ("bnlint.onnx", "bnlint.onnx.*"),
        "foundation",
        "contract",
    ),
    _layer(
        "loaders",
        "the front ends behind the loader door: model files and entry points into ModelGraph",
        ("bnlint.loaders", "bnlint.loaders.*"),
        "foundation",
        "contract",
        "config",
        "onnx",
    ),
    _layer(
        "fold",
        "folding BN into its producer, verifying and auditing folds",
        ("bnlint.fold", "bnlint.fold.*"),
        "foundation",
        "contract",
        "config",
        "analysis",
        "onnx",
        "loaders",
    ),
    _layer(
        "drift",
        "running statistics against served data (BN021, recalibrate)",
        ("bnlint.drift", "bnlint.drift.*"),
        "foundation",
        "contract",
        "config",
        "analysis",
        "onnx",
        "loaders",
    ),
    _layer(
        "rules",
        "the built-in rules, one module each, and bnlint.plugin, the facade plug-in rules "
        "import: they see ModelGraph, never a format or a report",
        ("bnlint.rules", "bnlint.rules.*", "bnlint.plugin"),
        "foundation",
        "contract",
        "config",
        "analysis",
        "fold",
        "drift",
    ),
    _layer(
        "engine",
        "the rule registry and the engine that schedules rules over a graph",
        ("bnlint.engine", "bnlint.engine.*"),
        "foundation",
        "contract",
        "config",
        "analysis",
        "fold",
    ),
    _layer(
        "evidence",
        "provenance: what a reviewer needs to reproduce and trust a report",
        ("bnlint.evidence", "bnlint.evidence.*"),
        "foundation",
        "contract",
        "config",
        "analysis",
        "fold",
        "drift",
        "engine",
    ),
    _layer(
        "report",
        "reporters: render findings and the graph's report data; they never read model files",
        ("bnlint.report", "bnlint.report.*"),
        "foundation",
        "contract",
        "config",
        "analysis",
        "fold",
        "drift",
        "engine",
        "evidence",
    ),
    _layer(
        "api",
        "the Python API (bnlint.lint) and reruns of recorded reports",
        ("bnlint", "bnlint.api", "bnlint.reproduce", "bnlint.evidence.reproduce"),
        *_below("api", "rules"),  # rules are loaded by the registry, never imported
    ),
    _layer(
        "cli",
        "the command line, a thin layer over the API",
        (
            "bnlint.__main__",
            "bnlint.cli",
            "bnlint.cli.*",
            "bnlint.fold.cli",
            "bnlint.fold.verify_cli",
            "bnlint.drift.cli",
        ),
        *_below("cli", "rules"),
    ),
    _layer(
        "docs",
        "documentation generated from the code",
        ("bnlint.docgen", "bnlint.docgen.*"),
        "foundation",
        "contract",
        "config",
        "engine",
    ),
)

# Arrows the design names as forbidden, with the reason; LAYERS never allows them.
FORBIDDEN: dict[tuple[str, str], str] = {
    ("rules", "loaders"): "rules see ModelGraph only; they never import a front end",
    ("rules", "report"): "rules produce findings; rendering them is the reporters' job",
    ("contract", "loaders"): "the graph contract knows no file format",
    ("contract", "onnx"): "the graph contract knows no file format",
    ("rules", "onnx"): "rules see ModelGraph only; they never read a format",
    ("contract", "rules"): "the graph contract knows no rule",
    ("engine", "cli"): "the engine is driven by the API and the CLI, never the reverse",
    ("engine", "report"): "the engine returns results; the API asks reporters for their data",
    ("report", "loaders"): "reporters render findings and the graph; they never read files",
}

# Packages entered only through their ``__init__``: a module outside imports the package,
# never one of its modules.
DOORS: dict[str, str] = {
    "bnlint.loaders": "the loader door: callers get load_model, LoadError and a few readers, "
    "never a format's module",
}

_BY_NAME = {layer.name: layer for layer in LAYERS}

# fold.cli, fold.verify_cli and drift.cli belong to the command line although they live in
# their packages: the most specific glob wins.
_SPECIFIC_FIRST = sorted(
    ((glob, layer.name) for layer in LAYERS for glob in layer.modules),
    key=lambda item: (item[0].count("*"), -item[0].count(".")),
)


def layer_of(module: str) -> str | None:
    """The layer ``module`` (a dotted name such as ``bnlint.fold.plan``) belongs to."""
    for glob, name in _SPECIFIC_FIRST:
        if "*" not in glob and module == glob:
            return name
    for glob, name in _SPECIFIC_FIRST:
        if fnmatch.fnmatchcase(module, glob):
            return name
    return None


def allowed(source: str, target: str) -> bool:
    """May a module of layer ``source`` import one of layer ``target``?"""
    return source == target or target in _BY_NAME[source].may_import


def through_door(source: str, target: str) -> bool:
    """False when ``source`` reaches past a door into one of the package's modules."""
    for door in DOORS:
        inside = source == door or source.startswith(door + ".")
        if target.startswith(door + ".") and not inside:
            return False
    return True


def markdown() -> str:
    """``docs/architecture.md``: the layers, what each holds and the arrows it may follow."""
    lines = [
        "<!-- generated by `make docs` from bnlint/docgen/architecture.py; do not edit -->",
        "# Architecture",
        "",
        "bnlint is built in layers. A module imports only modules of its own layer and of the "
        "layers its row allows; `tests/test_architecture.py` reads every import in `bnlint/` "
        "and `rules/` (at module level and inside functions) and fails on any other arrow, on "
        "any import cycle and on a private name (`_x`) imported from another module. This page "
        "and that test read the same data, `bnlint/docgen/architecture.py`.",
        "",
    ]
    order = [layer.name for layer in LAYERS]
    lines += [
        "## Layers",
        "",
        "Lowest first; a layer imports only layers above it in this table.",
        "",
        "| layer | holds | modules | may import |",
        "|---|---|---|---|",
    ]
    for layer in LAYERS:
        modules = ", ".join(f"`{glob}`" for glob in layer.modules)
        targets = ", ".join(sorted(layer.may_import, key=order.index)) or "nothing of bnlint"
        lines.append(f"| **{layer.name}** | {layer.holds} | {modules} | {targets} |")
    lines += [
        "",
        "## Allowed arrows",
        "",
        "A row imports the columns marked ●.",
        "",
        "| imports → | " + " | ".join(order) + " |",
        "|---|" + "---|" * len(order),
    ]
    for layer in LAYERS:
        cells = ["●" if target in layer.may_import else "" for target in order]
        lines.append(f"| **{layer.name}** | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Arrows the design forbids",
        "",
        "| from | to | why |",
        "|---|---|---|",
    ]
    for (source, target), why in FORBIDDEN.items():
        lines.append(f"| {source} | {target} | {why} |")
    lines += ["", "## Doors", ""]
    for door, why in DOORS.items():
        lines.append(f"- `{door}`: {why}.")
    lines += [
        "",
        "A plug-in rule follows the rules' row: it imports the graph contract and the shared "
        "statistics helpers, never a loader or a reporter.",
        "",
    ]
    return "\n".join(lines)
