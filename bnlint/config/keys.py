"""Configuration keys: each key's Settings field and the parser that validates its value.

Shared by configuration files, the command line and the Python API, so a value is checked
the same way wherever it comes from. Parsers raise ValueError naming the key.
"""

from __future__ import annotations

import re
from typing import Any

from bnlint.findings import Severity
from bnlint.rule import PHASES, TARGET_DTYPES

FAIL_ON = ("error", "warning", "info", "never")
FORMATS = ("text", "json", "sarif", "github", "gitlab", "junit", "markdown", "html")


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


MAX_IGNORE_PATTERNS = 1000  # each is matched per model (or per name): 40,000 globs in a 1 MB
# discovered file cost 5 s of CPU per model


def _ignore_table(value: Any, key: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be a table of pattern = [codes]")
    if len(value) > MAX_IGNORE_PATTERNS:
        raise ValueError(f"{key} has {len(value)} patterns; at most {MAX_IGNORE_PATTERNS}")
    return tuple(
        (pattern, _str_list(codes, f"{key}.{pattern}")) for pattern, codes in value.items()
    )


KEYS: dict[str, tuple[str, Any]] = {
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
PATH_KEYS = {"allowed-data-roots", "rules-dir"}

# The trust boundary (docs/security.md). These keys import or run code, or widen what bnlint
# reads: honoured from the command line and from a file named with --config, never from a
# configuration discovered next to the models nor from a report being reproduced. Each
# maps to the command-line option that sets it.
TRUST_KEYS: dict[str, str] = {
    "rules-dir": "--rules-dir DIR",
    "arch": "--arch MODULE:FACTORY",
    "allowed-data-roots": "--allowed-data-root DIR",
}
# Limits that keep a hostile file from exhausting the machine: a discovered configuration
# or a report may make them stricter, never looser than bnlint's defaults.
LIMIT_KEYS = frozenset({"max-nodes", "max-subgraph-depth"})


FIELD_PARSERS = {field_name: (key, parser) for key, (field_name, parser) in KEYS.items()}


def _listify(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_listify(item) for item in value]
    if isinstance(value, dict):
        return {key: _listify(item) for key, item in value.items()}
    return value


def coerce_value(field_name: str, value: Any) -> Any:
    """Validate a command-line or API value with the same parser as the config key.

    Raises ValueError with the problem.
    """
    if field_name not in FIELD_PARSERS or value is None:
        return value
    key, parser = FIELD_PARSERS[field_name]
    return parser(_listify(value), key)


# Rule options holding regular expressions (on node names or module paths).
REGEX_OPTIONS = frozenset({"ignore"})


def check_regexes(key: str, patterns: Any) -> None:
    """Patterns matched against model names: checked for bnlint's linear-time matcher."""
    from bnlint.config.patterns import NamePatterns, PatternError

    if not all(isinstance(pattern, str) for pattern in patterns):
        raise ValueError(f"{key} must be a list of regular expressions")
    try:
        NamePatterns(patterns)
    except PatternError as error:
        raise ValueError(f"{key}: {error}") from None


def same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, list)
    return isinstance(value, type(default))
