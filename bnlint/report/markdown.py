"""Markdown (``--report-md FILE``, ``--format markdown``) for job summaries and PR comments.

Rendered from ``templates/report.md.j2`` with autoescape off and an explicit ``md`` filter
on every model string: Markdown and HTML specials are neutralised (``\\ ` * _ [ ] | ~ $``
are backslash-escaped, ``& < >`` become entities), mention, reference and autolink
triggers (``@``, ``#``, ``://``, ``www.``) sit in code spans, control, bidi and invisible
characters are shown as escapes, newlines become ``<br>`` so a table row never breaks. A
report longer than ``MAX_CHARS`` (a pull-request comment holds 65,536) keeps as many
findings as fit and says how many it left out. A collapsed "Provenance" block closes the
report: command line, versions, configuration and each model's sha256
(:mod:`bnlint.report.provenance_view`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from bnlint.findings import Report
from bnlint.report import RenderOptions
from bnlint.report.catalog import rule_docs
from bnlint.report.provenance_view import provenance_view
from bnlint.report.sanitize import printable
from bnlint.report.view import base_context, environment, short_path

MAX_CHARS = 60_000
_SPECIAL = re.compile(r"([\\`*_\[\]|~$#])")
_NEWLINE = re.compile(r"\r\n|\r|\n")
# Mentions, issue references, scheme and www autolinks (GitHub Flavored Markdown); the
# capture group makes re.split keep each trigger at the odd positions.
_TRIGGER = re.compile(r"(@|#|:/+|(?i:www)\.)")


def _md_text(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SPECIAL.sub(r"\\\1", text)


def md(value: Any, limit: int | None = 2000) -> str:
    """Escape any string for a Markdown table cell (GitHub Flavored Markdown).

    What GitHub turns into a notification or a link when it reads a comment (``@user``
    mentions, ``#123`` and ``org/repo#123`` references, ``https://`` and ``www.`` autolinks,
    e-mail autolinks) is defused by putting its trigger in a code span: inside code nothing
    is linked or mentioned (CommonMark code spans are literal), and the text still reads
    the same.
    """
    if value is None:
        return ""
    lines = [printable(line, limit) for line in _NEWLINE.split(str(value))]
    parts = _TRIGGER.split("\n".join(lines))
    text = "".join(
        f"`{part}`" if position % 2 else _md_text(part) for position, part in enumerate(parts)
    )
    return text.replace("\n", "<br>")


def md_url(url: str) -> str:
    """A link target that cannot close the Markdown link early."""
    return quote(str(url), safe=":/?#=&%~.-_+,;@!$'*")


def _environment():
    env = environment(autoescape=False)
    env.filters["md"] = md
    env.filters["md_url"] = md_url
    env.filters["short_path"] = short_path
    return env


def render(report: Report, options: RenderOptions) -> str:
    limit = int(options.extra.get("markdown_max_chars", MAX_CHARS))
    template = _environment().get_template("report.md.j2")
    context = base_context(report, options)
    context["rules"] = rule_docs(report, options)
    context["provenance"] = provenance_view(report)
    context["md_place"] = lambda name: md(name, 160)
    groups = context["groups"]
    total = len(context["findings"])

    def attempt(shown: int) -> str:
        hidden = total - sum(group.count for group in groups[:shown])
        return template.render(**{**context, "groups": groups[:shown], "hidden": hidden})

    text = attempt(len(groups))
    if len(text) <= limit:
        return text
    low, high = 0, len(groups)  # the largest number of groups that fits, by bisection
    while low < high:
        middle = (low + high + 1) // 2
        if len(attempt(middle)) <= limit:
            low = middle
        else:
            high = middle - 1
    return attempt(low)
