"""The Markdown of rule documentation as HTML, escaping first.

Rule docstrings (built in or from a plug-in) are written in a small Markdown subset:
paragraphs, ``- `` lists, code spans, ``**bold**``, ``*emphasis*``, links, fenced or
indented code. The HTML report shows them rendered, not as raw backticks. Safety comes
from the order: the text is HTML-escaped (after control characters are shown as escapes)
*before* any tag is added, and the tags added are a fixed set with no attributes except a
link's ``href``, which must be an absolute ``http(s)`` URL (quotes cannot occur in it:
they were escaped). Nothing from the text can become markup of its own.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

from bnlint.report.sanitize import printable

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_EMPHASIS = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])")
_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^\s()<>\"']+)\)")
_ITEM = re.compile(r"^\s*[-*]\s+")
_FENCE = "```"


def _inline(escaped: str) -> str:
    """Inline markup on already-escaped text; code spans are left alone inside."""
    parts = _CODE.split(escaped)
    out = []
    for position, part in enumerate(parts):
        if position % 2:
            out.append(f"<code>{part}</code>")
            continue
        part = _LINK.sub(r'<a href="\2" rel="noreferrer">\1</a>', part)
        part = _BOLD.sub(r"<strong>\1</strong>", part)
        out.append(_EMPHASIS.sub(r"<em>\1</em>", part))
    return "".join(out)


def _paragraph(lines: list[str]) -> str:
    return f"<p>{_inline(' '.join(line.strip() for line in lines))}</p>"


def _blocks(lines: list[str]) -> list[str]:
    html: list[str] = []
    paragraph: list[str] = []
    items: list[list[str]] = []
    index = 0

    def flush() -> None:
        if paragraph:
            html.append(_paragraph(paragraph))
            paragraph.clear()
        if items:
            rows = "".join(f"<li>{_inline(' '.join(item))}</li>" for item in items)
            html.append(f"<ul>{rows}</ul>")
            items.clear()

    while index < len(lines):
        line = lines[index]
        if line.strip().startswith(_FENCE):
            flush()
            end = index + 1
            while end < len(lines) and not lines[end].strip().startswith(_FENCE):
                end += 1
            html.append("<pre><code>" + "\n".join(lines[index + 1 : end]) + "</code></pre>")
            index = end + 1
            continue
        if not line.strip():
            flush()
        elif line.startswith("    ") and not paragraph and not items:
            end = index
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            code = "\n".join(text[4:] for text in lines[index:end]).rstrip("\n")
            html.append(f"<pre><code>{code}</code></pre>")
            index = end
            continue
        elif _ITEM.match(line):
            if paragraph:
                html.append(_paragraph(paragraph))
                paragraph.clear()
            items.append([_ITEM.sub("", line).strip()])
        elif items and line.startswith(" "):
            items[-1].append(line.strip())
        else:
            if items:
                flush()
            paragraph.append(line)
        index += 1
    flush()
    return html


def markdown_html(text: str) -> Markup:
    """``text`` (Markdown) as safe HTML: escaped first, then a fixed set of tags added."""
    lines = [str(escape(printable(line, None))) for line in str(text or "").split("\n")]
    return Markup("".join(_blocks(lines)))
