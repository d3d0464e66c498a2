"""Make model-controlled strings safe to show on a terminal.

Every name, message and path a reporter prints to a terminal goes through
:func:`printable`: control characters (so ANSI escape sequences and carriage returns),
line and paragraph separators, bidirectional overrides and marks (Trojan Source), zero
width and other invisible format characters, tag characters and lone surrogates are shown
as ``\\xNN`` / ``\\uNNNN`` / ``\\UNNNNNNNN`` escapes, and long names are truncated.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(
    "["
    "\x00-\x1f\x7f-\x9f"  # C0, DEL, C1 (ESC starts every ANSI sequence; CR rewrites lines)
    "\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069"  # bidi marks, embeddings, isolates
    "\u2028\u2029"  # line and paragraph separators
    "\u2060-\u2064\u206a-\u206f\ufeff\ufff9-\ufffb"  # invisible format characters
    "\ud800-\udfff"  # lone surrogates cannot be encoded, so cannot be printed
    "\U000e0000-\U000e007f"  # tag characters
    "]"
)
MAX_NAME = 160


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def printable(text: object, limit: int | None = MAX_NAME) -> str:
    """Escape control characters (ANSI escapes included) and truncate long names."""
    value = _CONTROL.sub(_escape, str(text))
    if limit is not None and len(value) > limit:
        value = value[: limit - 1] + "…"
    return value
