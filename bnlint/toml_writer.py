"""A small TOML writer for bnlint's own configuration values.

Values are what configuration files hold: strings, numbers, booleans, lists and one level
of tables (plus inline tables below that). Strings are written as JSON strings, whose
escapes are TOML's too.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class TomlError(ValueError):
    """A value TOML cannot hold (None inside a list, an arbitrary object)."""


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _string(text: str) -> str:
    # JSON escapes are TOML escapes; DEL is the one control character JSON leaves raw.
    return json.dumps(text).replace("\x7f", "\\u007f")


def toml_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_literal(item) for item in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{_key(str(k))} = {toml_literal(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise TomlError(f"cannot write {type(value).__name__} value {value!r} as TOML")


def toml_text(
    settings: Mapping[str, Any], comment: str = "", notes: Mapping[str, str] | None = None
) -> str:
    """A ``bnlint.toml`` body: top-level keys first, then one table per mapping value.

    ``notes`` (key -> text) become end-of-line comments on the key's line or table header.
    """
    notes = notes or {}
    lines = [f"# {line}" for line in comment.split("\n")] if comment else []
    tables = []

    def note(key: str) -> str:
        text = " ".join(str(notes[key]).split()) if key in notes else ""
        return f"  # {text}" if text else ""

    for key, value in settings.items():
        if value is None:
            continue  # TOML has no null: an unset value is its default
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{_key(key)} = {toml_literal(value)}{note(key)}")
    for key, table in tables:
        lines += ["", f"[{_key(key)}]{note(key)}"]
        lines += [f"{_key(str(k))} = {toml_literal(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"
