"""JSON that someone else wrote (baselines, reports to reproduce): parsed as bounded data.

``json.loads`` recurses once per nesting level, so a file of a few KB of ``[`` raises
RecursionError, and a structure just under the interpreter's limit still overflows any
later recursive walk. :func:`load_json` turns both into :class:`JsonDataError` with one
line, and refuses nesting deeper than ``max_depth`` (bnlint's own files nest fewer than ten
levels).
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 64


class JsonDataError(ValueError):
    """Not JSON, or JSON nested deeper than allowed; the message says which."""


def depth(value: Any) -> int:
    """The nesting depth of a parsed JSON value, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item if isinstance(child, (dict, list)))
    return deepest


def load_json(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    import json

    try:
        value = json.loads(text)
    except RecursionError:
        raise JsonDataError(f"JSON nested deeper than {max_depth} levels") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise JsonDataError(f"invalid JSON: {error}") from None
    if depth(value) > max_depth:
        raise JsonDataError(f"JSON nested deeper than {max_depth} levels")
    return value
