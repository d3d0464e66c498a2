"""Configuration: ``[tool.bnlint]`` in pyproject.toml, ``bnlint.toml`` or ``.bnlint.toml``.

Semantics follow ruff: the nearest configuration file wins (found by walking up from the
model's folder, no implicit merging; ``extend = "path"`` inherits explicitly); in one folder
``.bnlint.toml`` beats ``bnlint.toml`` beats ``pyproject.toml``; globs and paths are
relative to the file that declares them; ``--config`` overrides discovery; unknown keys are
an error. Command-line values override file values.

A discovered file is data (it may arrive in a pull request): it cannot set the keys that
import code or widen reads, nor loosen a limit (:func:`check_discovered`); a file named with
``--config`` can.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bnlint.config.files import ConfigReadError, read_text, read_toml
from bnlint.config.keys import (
    FAIL_ON,
    FORMATS,
    KEYS,
    LIMIT_KEYS,
    PATH_KEYS,
    REGEX_OPTIONS,
    TRUST_KEYS,
    check_regexes,
    coerce_value,
    parse_shape,
    same_kind,
)
from bnlint.config.patterns import NamePatterns, PatternError
from bnlint.findings import Severity
from bnlint.rule import DEFAULT_DOCS_URL

__all__ = [
    "FAIL_ON",
    "FORMATS",
    "ConfigError",
    "FileConfig",
    "Settings",
    "find_config",
    "load_file_config",
    "parse_shape",
    "resolve_settings",
    "validate_against_rules",
]

CONFIG_FILES = (".bnlint.toml", "bnlint.toml", "pyproject.toml")
DEFAULT_INCLUDE = ("*.onnx", "*.pt2", "*.pt", "*.pth", "*.ckpt", "*.safetensors")
DEFAULT_EXCLUDE = (
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "node_modules",
    "site-packages",
)


class ConfigError(Exception):
    """A configuration file or option is invalid; ``path`` names where."""

    def __init__(self, path: str | Path | None, message: str) -> None:
        super().__init__(message)
        self.path = str(path) if path is not None else None
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass(frozen=True)
class Settings:
    """The resolved settings for one model. ``origins`` says where each value came from."""

    select: tuple[str, ...] = ("ALL",)
    extend_select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    severity: Mapping[str, Severity] = field(default_factory=dict)
    fail_on: str = "warning"
    format: str = "text"
    phase: str | None = None
    train_batch_size: int | None = None
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    target_dtype: str | None = None
    per_model_ignores: tuple[tuple[str, tuple[str, ...]], ...] = ()
    per_node_ignores: tuple[tuple[str, tuple[str, ...]], ...] = ()
    allowed_data_roots: tuple[str, ...] = ()
    docs_url: str = DEFAULT_DOCS_URL
    include: tuple[str, ...] = DEFAULT_INCLUDE
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    rules_dirs: tuple[str, ...] = ()
    rule_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    max_nodes: int = 2_000_000
    max_subgraph_depth: int = 32
    trust_model_code: bool = False
    arch: str | None = None  # module:factory building the architecture of a bare checkpoint
    verify: bool = False
    sample_data: str | None = None  # --sample-data FILE: served inputs for BN021
    jobs: int = 1  # worker processes for several models; 0 = one per CPU
    config_path: str | None = None
    origins: Mapping[str, str] = field(default_factory=dict)

    @property
    def effective_select(self) -> tuple[str, ...]:
        return self.select + self.extend_select

    def as_dict(self) -> dict[str, Any]:
        """The resolved values in configuration-key spelling (for --show-settings)."""
        result: dict[str, Any] = {}
        for item in fields(self):
            if item.name in ("origins", "config_path"):
                continue
            value = getattr(self, item.name)
            if isinstance(value, Mapping):
                value = {k: _plain(v) for k, v in value.items()}
            result[item.name.replace("_", "-")] = _plain(value)
        return result


def _plain(value: Any) -> Any:
    if isinstance(value, Severity):
        return value.label
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def find_config(start: Path) -> Path | None:
    """The nearest configuration file at or above ``start`` (a folder)."""
    folder = start.resolve()
    for candidate_dir in (folder, *folder.parents):
        for name in CONFIG_FILES:
            candidate = candidate_dir / name
            if candidate.is_file() and (name != "pyproject.toml" or _has_tool_table(candidate)):
                return candidate
    return None


def _has_tool_table(path: Path) -> bool:
    try:
        return "bnlint" in _read_toml(path).get("tool", {})
    except ConfigError:
        return False


def _read_toml(path: Path) -> dict[str, Any]:
    try:  # a regular file of at most 1 MiB: an `extend` may name /dev/zero or a FIFO
        return read_toml(path)
    except ConfigReadError as error:
        raise ConfigError(path, str(error)) from None


def read_config_table(path: Path) -> dict[str, Any]:
    data = _read_toml(path)
    if path.name == "pyproject.toml":
        table = data.get("tool", {}).get("bnlint")
        if table is None:
            raise ConfigError(path, "no [tool.bnlint] table")
        return dict(table)
    return data


@dataclass
class FileConfig:
    """The parsed values of one configuration file (after ``extend``)."""

    path: Path
    values: dict[str, Any] = field(default_factory=dict)  # Settings field -> value
    rule_tables: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_file_config(
    path: Path, _seen: tuple[Path, ...] = (), *, discovered: bool = False
) -> FileConfig:
    """Parse one configuration file (and what it ``extend``s).

    ``discovered``: the file was found next to the models, not named with ``--config``. It
    then counts as data (docs/security.md): the keys that import code or widen reads
    (:data:`TRUST_KEYS`) are refused, and limits may only be made stricter.
    """
    path = path.resolve()
    if path in _seen:
        raise ConfigError(path, "circular `extend`")
    table = read_config_table(path)
    if discovered:
        check_discovered(path, table, extended_by=_seen[0] if _seen else None)
    base = FileConfig(path)
    if "extend" in table:
        target = table.pop("extend")
        if not isinstance(target, str):
            raise ConfigError(path, "extend must be a path string")
        parent = load_file_config((path.parent / target), (*_seen, path), discovered=discovered)
        base = FileConfig(path, dict(parent.values), dict(parent.rule_tables))
    for key, value in table.items():
        if isinstance(value, dict) and key not in KEYS:
            base.rule_tables[key] = value  # checked against the rule set later
            continue
        if key not in KEYS:
            raise ConfigError(path, unknown_key_message(path, key))
        field_name, parser = KEYS[key]
        try:
            parsed = parser(value, key)
        except ValueError as error:
            raise ConfigError(path, str(error)) from None
        if key in PATH_KEYS:
            parsed = tuple(str((path.parent / item).resolve()) for item in parsed)
        if key == "per-model-ignores":
            parsed = tuple((str(path.parent / glob), codes) for glob, codes in parsed)
        if key == "jobs" and discovered:  # workers beyond the CPUs only cost memory: a
            parsed = min(parsed, os.cpu_count() or 1)  # planted jobs = 1000 forked 1,000
        base.values[field_name] = parsed
    return base


def check_discovered(path: Path, table: Mapping[str, Any], extended_by: Path | None = None) -> None:
    """Refuse what a discovered configuration may not set, naming the key and the flag."""
    named = f"name {extended_by} with --config" if extended_by else "name this file with --config"
    found = f" (extended by {extended_by})" if extended_by else ""
    for key, option in TRUST_KEYS.items():
        if key in table:
            raise ConfigError(
                path,
                f"{key} imports code or widens what bnlint reads, so a configuration found "
                f"next to the models{found} cannot set it; pass {option} on the command line "
                f"or {named}",
            )
    defaults = Settings()
    for key in sorted(LIMIT_KEYS):
        value = table.get(key)
        default = getattr(defaults, KEYS[key][0])
        if isinstance(value, int) and not isinstance(value, bool) and value > default:
            raise ConfigError(
                path,
                f"{key} = {value} is looser than the default {default}; a configuration "
                f"found next to the models{found} may only tighten limits ({named})",
            )


def key_line(path: Path, key: str) -> int | None:
    """The line of ``path`` where bnlint's table sets ``key`` (``key = …`` or a ``[….key]``
    table header), found in the text since TOML parsers do not keep positions."""
    try:
        lines = read_text(path).splitlines()
    except ConfigReadError:
        return None
    spelled = rf"(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')"
    assignment = re.compile(rf"^\s*{spelled}\s*=")
    header = re.compile(rf"^\s*\[\s*(?:tool\s*\.\s*bnlint\s*\.\s*)?{spelled}\s*\]")
    inside = path.name != "pyproject.toml"  # pyproject: only inside [tool.bnlint]
    for number, line in enumerate(lines, start=1):
        table = re.match(r"^\s*\[+\s*([^\]]+?)\s*\]", line)
        if table and path.name == "pyproject.toml":
            inside = table.group(1).replace(" ", "").startswith("tool.bnlint")
        if inside and (assignment.match(line) or header.match(line)):
            return number
    return None


def unknown_key_message(path: Path, key: str, rule_names: Sequence[str] = ()) -> str:
    """``line 3: unknown configuration key 'fail_on' (did you mean 'fail-on'?); valid …``."""
    import difflib

    line = key_line(path, key)
    where = f"line {line}: " if line else ""
    valid = sorted(KEYS)
    close = difflib.get_close_matches(key, [*valid, *rule_names], 1, 0.7)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    tables = "; rule tables: [tool.bnlint.RULE-NAME] (see `bnlint rules`)" if rule_names else ""
    return f"{where}unknown configuration key {key!r}{hint}; valid keys: {', '.join(valid)}{tables}"


def resolve_settings(
    file_config: FileConfig | None,
    cli_values: Mapping[str, Any],
) -> Settings:
    """Combine defaults, one configuration file and command-line values."""
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    if file_config is not None:
        values.update(file_config.values)
        origins.update({key: str(file_config.path) for key in file_config.values})
        values["rule_options"] = file_config.rule_tables
        if file_config.rule_tables:
            origins["rule_options"] = str(file_config.path)
    for key, raw in cli_values.items():
        try:
            value = coerce_value(key, raw)
        except ValueError as error:
            raise ConfigError(None, str(error)) from None
        if key == "extend_select" or key == "ignore":
            values[key] = tuple(values.get(key, ())) + tuple(value)
        elif key == "input_shapes":
            values[key] = {**values.get(key, {}), **value}
        else:
            values[key] = value
        origins[key] = "command line"
    settings = Settings(**values)
    return replace(
        settings,
        config_path=str(file_config.path) if file_config else None,
        origins={item.name: origins.get(item.name, "default") for item in fields(Settings)},
    )


def validate_against_rules(settings: Settings, ruleset: Any) -> Settings:
    """Check selectors, severity overrides and rule tables against the known rules."""
    where = settings.config_path or "command line"
    try:
        ruleset.check_selectors(settings.select, where)
        ruleset.check_selectors(settings.extend_select, where)
        ruleset.check_selectors(settings.ignore, where)
        for _, codes in (*settings.per_model_ignores, *settings.per_node_ignores):
            ruleset.check_selectors(codes, where)
    except ValueError as error:
        raise ConfigError(None, str(error)) from None
    for code in settings.severity:
        if ruleset.get(code) is None:
            raise ConfigError(where, f"severity override for unknown rule {code!r}")
    # Keyed by the current code, so an override written under a renamed code still applies.
    settings = replace(
        settings,
        severity={ruleset.get(code).code: level for code, level in settings.severity.items()},
    )
    options: dict[str, dict[str, Any]] = {}
    for key, table in settings.rule_options.items():
        rule = ruleset.get(key)
        if rule is None:
            names = [rule.name for rule in ruleset]
            if settings.config_path:
                raise ConfigError(where, unknown_key_message(Path(where), key, names))
            raise ConfigError(where, f"unknown configuration key or rule table {key!r}")
        for option, value in table.items():
            if option not in rule.spec.options:
                known = ", ".join(rule.spec.options) or "none"
                raise ConfigError(
                    where, f"unknown option {option!r} for {rule.name} (known: {known})"
                )
            default = rule.spec.options[option]
            if default is not None and not same_kind(default, value):
                raise ConfigError(where, f"{rule.name}.{option} must be {type(default).__name__}")
            if option in REGEX_OPTIONS:
                try:
                    check_regexes(f"{rule.name}.{option}", value)
                except ValueError as error:
                    raise ConfigError(where, str(error)) from None
        options[rule.name] = dict(table)
    try:  # matched by a linear-time automaton: patterns and node names may be hostile
        NamePatterns([pattern for pattern, _ in settings.per_node_ignores])
    except PatternError as error:
        raise ConfigError(where, f"per-node-ignores: {error}") from None
    return replace(settings, rule_options=options)
