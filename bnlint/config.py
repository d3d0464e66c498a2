"""Configuration: ``[tool.bnlint]`` in pyproject.toml, ``bnlint.toml`` or ``.bnlint.toml``.

Semantics follow ruff: the nearest configuration file wins (found by walking up from the
model's folder, no implicit merging; ``extend = "path"`` inherits explicitly); in one folder
``.bnlint.toml`` beats ``bnlint.toml`` beats ``pyproject.toml``; globs and paths are
relative to the file that declares them; ``--config`` overrides discovery; unknown keys are
an error. Command-line values override file values.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bnlint.findings import Severity
from bnlint.rule import DEFAULT_DOCS_URL, PHASES, TARGET_DTYPES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

CONFIG_FILES = (".bnlint.toml", "bnlint.toml", "pyproject.toml")
FAIL_ON = ("error", "warning", "info", "never")
FORMATS = ("text", "json", "sarif", "github", "gitlab", "junit", "markdown", "html")
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


# key in file -> (Settings field, parser)
def _str_list(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{key} must be a list of strings")
    return tuple(value)


def _choice(options: tuple[str, ...]):
    def parse(value: Any, key: str) -> str:
        if value not in options:
            raise ValueError(f"{key} must be one of {', '.join(options)}, not {value!r}")
        return value

    return parse


def _positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be a positive integer, not {value!r}")
    return value


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def _non_negative_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a non-negative integer, not {value!r}")
    return value


def _absolute_url(value: Any, key: str) -> str:
    # Reports are read as CI artifacts and job summaries, where relative links break.
    if not isinstance(value, str) or not re.match(r"^https?://[^\s/]+", value):
        raise ValueError(f"{key} must be an absolute http(s) URL, not {value!r}")
    return value


def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``NAME:1x3x224x224`` (or a bare ``1x3x224x224`` for the first input)."""
    name, _, dims = text.rpartition(":")
    parts = [part for part in re.split(r"[x,×]", dims.strip()) if part]
    if not parts or not all(part.isdigit() for part in parts):
        raise ValueError(f"input shape {text!r} is not NAME:1x3x224x224")
    return name.strip(), tuple(int(part) for part in parts)


def _shapes(value: Any, key: str) -> dict[str, tuple[int, ...]]:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return dict(parse_shape(item) for item in _str_list(value, key))
    if isinstance(value, dict):
        shapes = {}
        for name, dims in value.items():
            if isinstance(dims, str):
                shapes[name] = parse_shape(f"{name}:{dims}")[1]
            elif isinstance(dims, list) and all(isinstance(d, int) and d > 0 for d in dims):
                shapes[name] = tuple(dims)
            else:
                raise ValueError(f"{key}.{name} must be a list of positive integers")
        return shapes
    raise ValueError(f"{key} must be a list of NAME:1x3x224x224 strings or a table")


def _severities(value: Any, key: str) -> dict[str, Severity]:
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be a table of CODE = severity")
    return {code.upper(): Severity.parse(level) for code, level in value.items()}


def _ignore_table(value: Any, key: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be a table of pattern = [codes]")
    return tuple(
        (pattern, _str_list(codes, f"{key}.{pattern}")) for pattern, codes in value.items()
    )


_KEYS: dict[str, tuple[str, Any]] = {
    "select": ("select", _str_list),
    "extend-select": ("extend_select", _str_list),
    "ignore": ("ignore", _str_list),
    "severity": ("severity", _severities),
    "fail-on": ("fail_on", _choice(FAIL_ON)),
    "format": ("format", _choice(FORMATS)),
    "phase": ("phase", _choice(PHASES)),
    "train-batch-size": ("train_batch_size", _positive_int),
    "input-shape": ("input_shapes", _shapes),
    "target-dtype": ("target_dtype", _choice(TARGET_DTYPES)),
    "per-model-ignores": ("per_model_ignores", _ignore_table),
    "per-node-ignores": ("per_node_ignores", _ignore_table),
    "allowed-data-roots": ("allowed_data_roots", _str_list),
    "docs-url": ("docs_url", _absolute_url),
    "include": ("include", _str_list),
    "exclude": ("exclude", _str_list),
    "rules-dir": ("rules_dirs", _str_list),
    "max-nodes": ("max_nodes", _positive_int),
    "max-subgraph-depth": ("max_subgraph_depth", _positive_int),
    "arch": ("arch", _string),
    "jobs": ("jobs", _non_negative_int),
}
_PATH_KEYS = {"allowed-data-roots", "rules-dir"}


_FIELD_PARSERS = {field_name: (key, parser) for key, (field_name, parser) in _KEYS.items()}


def _listify(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_listify(item) for item in value]
    if isinstance(value, dict):
        return {key: _listify(item) for key, item in value.items()}
    return value


def coerce_value(field_name: str, value: Any) -> Any:
    """Validate a command-line or API value with the same parser as the config key."""
    if field_name not in _FIELD_PARSERS or value is None:
        return value
    key, parser = _FIELD_PARSERS[field_name]
    try:
        return parser(_listify(value), key)
    except ValueError as error:
        raise ConfigError(None, str(error)) from None


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
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as error:
        raise ConfigError(path, f"cannot read configuration: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(path, f"invalid TOML: {error}") from None


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


def load_file_config(path: Path, _seen: tuple[Path, ...] = ()) -> FileConfig:
    path = path.resolve()
    if path in _seen:
        raise ConfigError(path, "circular `extend`")
    table = read_config_table(path)
    base = FileConfig(path)
    if "extend" in table:
        target = table.pop("extend")
        if not isinstance(target, str):
            raise ConfigError(path, "extend must be a path string")
        parent = load_file_config((path.parent / target), (*_seen, path))
        base = FileConfig(path, dict(parent.values), dict(parent.rule_tables))
    for key, value in table.items():
        if isinstance(value, dict) and key not in _KEYS:
            base.rule_tables[key] = value  # checked against the rule set later
            continue
        if key not in _KEYS:
            raise ConfigError(path, f"unknown configuration key {key!r}")
        field_name, parser = _KEYS[key]
        try:
            parsed = parser(value, key)
        except ValueError as error:
            raise ConfigError(path, str(error)) from None
        if key in _PATH_KEYS:
            parsed = tuple(str((path.parent / item).resolve()) for item in parsed)
        if key == "per-model-ignores":
            parsed = tuple((str(path.parent / glob), codes) for glob, codes in parsed)
        base.values[field_name] = parsed
    return base


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
    for key, raw in cli_values.items():
        value = coerce_value(key, raw)
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
            raise ConfigError(where, f"unknown configuration key or rule table {key!r}")
        for option, value in table.items():
            if option not in rule.spec.options:
                known = ", ".join(rule.spec.options) or "none"
                raise ConfigError(
                    where, f"unknown option {option!r} for {rule.name} (known: {known})"
                )
            default = rule.spec.options[option]
            if default is not None and not _same_kind(default, value):
                raise ConfigError(where, f"{rule.name}.{option} must be {type(default).__name__}")
            if option in REGEX_OPTIONS:
                _check_regexes(where, f"{rule.name}.{option}", value)
        options[rule.name] = dict(table)
    for pattern, _ in settings.per_node_ignores:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ConfigError(where, f"per-node-ignores: bad regex {pattern!r}: {error}") from None
    return replace(settings, rule_options=options)


# Rule options holding regular expressions (on node names or module paths).
REGEX_OPTIONS = frozenset({"ignore"})


def _check_regexes(where: str, key: str, patterns: Any) -> None:
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise ConfigError(where, f"{key} must be a list of regular expressions")
        try:
            re.compile(pattern)
        except re.error as error:
            raise ConfigError(where, f"{key}: bad regex {pattern!r}: {error}") from None


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, list)
    return isinstance(value, type(default))
