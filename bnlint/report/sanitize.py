"""Make model-controlled strings safe to show on a terminal."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
MAX_NAME = 160


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: object, limit: int | None = MAX_NAME) -> str:
    """Escape control characters (ANSI escapes included) and truncate long names."""
    value = _CONTROL.sub(_escape, str(text))
    if limit is not None and len(value) > limit:
        value = value[: limit - 1] + "…"
    return value
