"""The HTML report (``--report-html FILE``, ``--format html``): one self-contained file.

``templates/report.html.j2`` with the CSS and JavaScript partials inlined. The Jinja2
environment autoescapes everything (``autoescape=True``: the template names end in ``.j2``,
which ``select_autoescape`` would not escape), so every string from a model is text; the
only markup built in Python escapes its text first and adds a fixed set of tags (``<wbr>``
break opportunities in names, the Markdown of rule documentation:
:mod:`bnlint.report.html_markdown`); before escaping, :func:`visible` shows control and bidi
characters as escapes, so a name cannot recolour a terminal that prints the file or
reorder what a reader sees. A Content-Security-Policy meta tag forbids any network load
and allows only the report's own style and script, by hash. The findings table is plain
HTML: with JavaScript off every finding is listed; the script adds sorting, filtering and
search. Per-model data computed while the graph was alive comes from ``ModelResult.report_data``:
``bn_table``, ``neighborhood`` and, when verification ran, ``fold``. The "How to reproduce"
section shows ``Report.provenance`` (:mod:`bnlint.report.provenance_view`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from markupsafe import Markup, escape

from bnlint.findings import Report, json_safe, nonfinite_text
from bnlint.report import RenderOptions
from bnlint.report.catalog import rule_docs
from bnlint.report.drift_chart import drift_view
from bnlint.report.html_markdown import markdown_html
from bnlint.report.html_svg import (
    log_domain,
    neighborhood_svg,
    number,
    range_chart,
    typical_level,
)
from bnlint.report.provenance_view import provenance_view
from bnlint.report.sanitize import printable
from bnlint.report.summary import checked, fold_sentence, summary_line
from bnlint.report.view import ModelView, base_context, environment, short_path

BN_COLUMNS = (("gamma", "γ (scale)", False), ("var", "running variance", True))
BN_COLUMNS += (("scale", "folded scale γ/√(var+ε)", False),)
FOLD_LEVELS = ("algebraic", "numeric")
GOOD_VERDICTS = frozenset({"folded", "folded-correctly", "verified", "ok", "pass", "passed"})
MAX_PLAIN_ROWS = 200  # BatchNorm table rows listed of those that do not stand out
MAX_HOT_ROWS = 200  # … and of those that do (each row is about 1 KB of HTML)
MAX_GROUP_MEMBERS = 500  # layers a group's row lists by name (JSON and SARIF list every one)
BAD_VERDICTS = frozenset({"folded-wrongly", "unmatched", "mismatch", "error", "outputs-differ"})


def csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def content_security_policy(style: str, script: str) -> str:
    return (
        "default-src 'none'; "
        f"style-src {csp_hash(style)}; script-src {csp_hash(script)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )


def _evidence(evidence: dict[str, Any]) -> list[tuple[str, str]]:
    items = []
    for key, value in json_safe(evidence, nonfinite_text).items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        items.append((str(key), text if len(text) <= 400 else text[:399] + "…"))
    return items


def _cell_text(summary: dict[str, Any] | None) -> str:
    """``min … max`` of the finite channels, and how many are NaN or infinite: a range
    that leaves out NaN channels without saying so would look healthy."""
    if not summary:
        return "unreadable"
    count, bad = summary.get("count") or 0, summary.get("nonfinite") or 0
    if summary.get("min") is None:
        return f"all {count} NaN/Inf" if bad else "—"
    text = f"{number(summary.get('min'))} … {number(summary.get('max'))}"
    return f"{text}; {bad} of {count} NaN/Inf" if bad else text


def _bn_rows(model: ModelView) -> dict[str, Any]:
    """The per-BatchNorm table. A layer *stands out* for its statistics only (non-finite
    values, variance <= 0, a median two decades from the other layers): a finding on the
    layer is listed in its own column, not counted as an anomaly."""
    rows = model.result.report_data.bn_table or []
    codes_by_node: dict[int, list[str]] = {}
    for item in model.findings:
        if item.finding.order >= 0:
            codes = codes_by_node.setdefault(item.finding.order, [])
            if item.finding.code not in codes:
                codes.append(item.finding.code)
    charts: dict[str, list[Any]] = {}
    for key, _, positive in BN_COLUMNS:
        summaries = [row.get(key) for row in rows]
        domain, typical = log_domain(summaries), typical_level(summaries)
        charts[key] = [range_chart(s, domain, typical, positive=positive) for s in summaries]
    views = []
    for position, row in enumerate(rows):
        cells = []
        for key, label, _ in BN_COLUMNS:
            summary = row.get(key) or {}
            cells.append(
                {
                    "label": label,
                    "chart": charts[key][position],
                    "text": _cell_text(summary),
                    "nonfinite": bool(summary.get("nonfinite")),
                }
            )
        views.append(
            {
                "name": row.get("scope") or row.get("node") or f"#{row.get('id')}",
                "op": row.get("op") or "",
                "channels": number(row.get("channels")),
                "eps": number(row.get("eps")),
                "training": row.get("training", False),
                "cells": cells,
                "codes": codes_by_node.get(row.get("id", -1), []),
                "hot": any(cell["chart"] and cell["chart"]["hot"] for cell in cells),
                "fold": row.get("fold"),
            }
        )
    shown = _listed_rows(views)
    hidden_hot = sum(row["hot"] for row in views) - sum(row["hot"] for row in shown)
    return {
        "rows": shown,
        "total": len(views),
        "hidden": len(views) - len(shown) - hidden_hot,
        "hidden_hot": hidden_hot,
        "labels": [label for _, label, _ in BN_COLUMNS],
        "stand_out": sum(1 for row in views if row["hot"]),
        "foldable": model.result.foldable,
        "missing": model.result.report_data.bn_table is None,
    }


def _listed_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first :data:`MAX_HOT_ROWS` layers that stand out and the first
    :data:`MAX_PLAIN_ROWS` of the others, in graph order: a thousand rows would make the
    report megabytes long (issue 15: 2 MB for 300 layers) and tell nobody more; every
    layer's findings are in the findings table either way."""
    listed, hot, plain = [], 0, 0
    for row in rows:
        if (hot if row["hot"] else plain) < (MAX_HOT_ROWS if row["hot"] else MAX_PLAIN_ROWS):
            listed.append(row)
            hot, plain = hot + row["hot"], plain + (not row["hot"])
    return listed


def _verdict_class(verdict: str) -> str:
    word = verdict.lower().replace("_", "-").replace(" ", "-")
    if word in BAD_VERDICTS or word.startswith("fail"):
        return "bad"
    return "good" if word in GOOD_VERDICTS else "neutral"


def _fold_rows(model: ModelView) -> list[dict[str, Any]] | None:
    """The verification table from the model's verification section (one row per BN:
    verdict, target or reason, and error / bound / margin of each level), if present."""
    section = model.result.verification
    data = section.get("bns") if isinstance(section, dict) else None
    if not isinstance(data, list) or not data:
        return None
    rows = []
    for entry in data:
        if not isinstance(entry, dict):
            continue
        row = {key: entry.get(key) for key in ("bn", "verdict", "into", "kind")}
        row["reason"] = entry.get("problem") or entry.get("reason")
        row["cls"] = _verdict_class(str(row["verdict"] or ""))
        for level in FOLD_LEVELS:
            check = entry.get(level) if isinstance(entry.get(level), dict) else {}
            for key in ("error", "bound", "margin"):
                value = check.get(key)
                row[f"{level}_{key}"] = number(value) if value is not None else "—"
        rows.append(row)
    return rows


def _search_text(item: Any) -> str:
    finding = item.finding
    parts = (
        finding.code,
        finding.name,
        finding.severity.label,
        finding.node,
        finding.scope,
        finding.op,
        finding.message,
        finding.fix,
        short_path(item.model.path),
    )
    return " ".join(str(part or "") for part in parts).lower()


def html_context(report: Report, options: RenderOptions) -> dict[str, Any]:
    context = base_context(report, options)
    context["rules"] = rule_docs(report, options)
    details = {}
    group_search = {}
    for group in context["groups"]:  # the details of a group are its first finding's
        item = group.first
        neighborhoods = item.model.result.report_data.neighborhood or {}
        graph = neighborhoods.get(item.finding.order) if item.finding.order >= 0 else None
        details[item.index] = {
            "evidence": _evidence(item.finding.evidence),
            "graph": neighborhood_svg(graph),
        }
        names = " ".join(member.where for member in group.items[1:]).lower()
        group_search[group.index] = f"{_search_text(item)} {names}".strip()
        if group.state:
            group_search[group.index] += f" {group.state}"
    context["details"] = details
    context["group_search"] = group_search
    context["max_members"] = MAX_GROUP_MEMBERS
    context["rule_docs_html"] = {
        code: {heading: markdown_html(text) for heading, text in doc.sections.items()}
        for code, doc in context["rules"].items()
    }
    context["bn"] = {model.index: _bn_rows(model) for model in context["models"]}
    context["fold"] = {model.index: _fold_rows(model) for model in context["models"]}
    context["drift"] = {
        model.index: drift_view(model.result.report_data.drift) for model in context["models"]
    }
    context["codes"] = sorted(context["rules"])
    context["provenance"] = provenance_view(report)
    context["title"] = options.extra.get("title", "bnlint report")
    seen = checked(report)
    context["checked"] = seen
    context["summary"] = summary_line(report)
    sentence = fold_sentence(seen)  # its commands in code spans; the Fold column says why not
    context["fold_html"] = markdown_html(sentence) if sentence else None
    return context


_BREAK_AFTER = re.compile(r"([./_:\\-])")


def break_opportunities(value: Any) -> Markup:
    """A name that may wrap at its separators (``layer1.0.bn1`` after each dot) instead of
    mid-word: shown printable, escaped, then ``<wbr>`` added after ``. / _ : - \\``."""
    escaped = str(escape(printable(str(value), None)))
    return Markup(_BREAK_AFTER.sub(r"\1<wbr>", escaped))


def visible(value: Any) -> Any:
    """Jinja ``finalize``: every printed string keeps its newlines, but control characters
    (ANSI escapes, carriage returns), bidi overrides and invisible characters from model
    names or paths are shown as ``\\xNN``/``\\uNNNN`` escapes (then HTML-escaped)."""
    if isinstance(value, Markup):  # built escaped by this module (break_opportunities, docs)
        return value
    if isinstance(value, str):
        return "\n".join(printable(line, None) for line in value.split("\n"))
    return value


def render(report: Report, options: RenderOptions) -> str:
    env = environment(autoescape=True)
    env.finalize = visible  # set before any template is compiled
    env.filters["short_path"] = short_path
    env.filters["num"] = number
    env.filters["wbr"] = break_opportunities
    style = env.get_template("report.css").render()
    script = env.get_template("report.js").render()
    context = html_context(report, options)
    context["csp"] = content_security_policy(style, script)
    return env.get_template("report.html.j2").render(**context)
