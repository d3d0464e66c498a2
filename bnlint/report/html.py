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
# Report-wide budgets (not per model: a folder of 200 models is one report). What a budget
# leaves out is counted where it would have been, with the pointer to the JSON report.
MAX_PLAIN_ROWS = 50  # BatchNorm table rows listed of those that do not stand out
MAX_HOT_ROWS = 100  # … and of those that do (each row is about 1 KB of HTML)
MAX_GROUP_MEMBERS = 500  # layers one group's row names (JSON and SARIF list every one)
MAX_MEMBER_NAMES = 1000  # … and all groups together
MAX_DETAILED_GROUPS = 40  # groups with evidence + neighbourhood graph (~4 KB each)
MAX_FULL_GROUPS = 100  # groups with fix and layer list (~1.5 KB); then code, names, message
MAX_LISTED_GROUPS = 300  # groups with a row (compact ~0.8 KB); later models: counts only
MAX_PROVENANCE_ROWS = 10  # inputs listed under "How to reproduce" (the JSON has every one)
MAX_PROVENANCE_JSON = 64_000  # characters of the provenance record shown in full
OPEN_ROWS = 40  # page rows shown open: a model section costs 1 + its groups; the rest collapse
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


def _bn_rows(model: ModelView, budget: dict[bool, int]) -> dict[str, Any]:
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
    shown = _listed_rows(views, budget)
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


def _listed_rows(rows: list[dict[str, Any]], budget: dict[bool, int]) -> list[dict[str, Any]]:
    """The rows ``budget`` still allows, in graph order: ``budget[True]`` layers that stand
    out and ``budget[False]`` others, left for the report (first :data:`MAX_HOT_ROWS` and
    :data:`MAX_PLAIN_ROWS` across all models). A thousand rows would make the report
    megabytes long (issue 15: 2 MB for 300 layers, 3.5 MB for 200 models) and tell nobody
    more; every layer's findings are in the findings table either way."""
    listed = []
    for row in rows:
        if budget[row["hot"]] > 0:
            listed.append(row)
            budget[row["hot"]] -= 1
    return listed


def _budget_rows(context: dict[str, Any]) -> None:
    """Which groups get a full row (fix, layer list), a compact one (code, layers,
    message) or, for whole models past :data:`MAX_LISTED_GROUPS`, only their counts by rule
    (``counted``), in report order with new findings first; and how many layer names each
    group lists (:data:`MAX_MEMBER_NAMES` across the report)."""
    full = {group.index for group in context["groups"][:MAX_FULL_GROUPS]}
    listed, counted = 0, set()
    for model in context["models"]:
        listed += len(model.groups)
        if listed > MAX_LISTED_GROUPS and model.index > 0:
            counted.add(model.index)
    names_left, names = MAX_MEMBER_NAMES, {}
    for group in context["groups"]:
        names[group.index] = 0
        if group.model.index not in counted:
            names[group.index] = min(group.count, MAX_GROUP_MEMBERS, max(names_left, 1))
            names_left -= names[group.index]
    context["full_groups"], context["counted_models"], context["names"] = full, counted, names


def _rule_counts(model: ModelView) -> str:
    """``BN003 ×2, BN006 ×2`` for a model whose findings are counted, not listed."""
    counts: dict[str, int] = {}
    for item in model.findings:
        counts[item.finding.code] = counts.get(item.finding.code, 0) + 1
    return ", ".join(f"{code} ×{count}" for code, count in counts.items())


_INPUT_HASH = re.compile(r"^# [0-9a-f]{64}  ")


def _shorter_provenance(view: dict[str, Any] | None) -> dict[str, Any] | None:
    """The reproduction script names the first :data:`MAX_PROVENANCE_ROWS` inputs' sha256
    (a folder of 200 models made it 200 lines); the JSON report's provenance has all."""
    if view is None:
        return None
    lines = view["reproduce"].split("\n")
    hashes = [i for i, line in enumerate(lines) if _INPUT_HASH.match(line)]
    if len(hashes) > MAX_PROVENANCE_ROWS:
        more = len(hashes) - MAX_PROVENANCE_ROWS
        cut = set(hashes[MAX_PROVENANCE_ROWS:])
        note = f"# … and {more} more inputs: the JSON report's provenance has each sha256"
        lines = [line for i, line in enumerate(lines) if i not in cut]
        lines.insert(hashes[MAX_PROVENANCE_ROWS - 1] + 1, note)
        view = {**view, "reproduce": "\n".join(lines)}
    return view


def _open_models(models: list[ModelView]) -> int:
    """How many model sections, from the first, are shown open: while the page rows they
    cost (a heading and one row per group) stay within :data:`OPEN_ROWS`, and at least
    one. The others are collapsed so the page is as tall for 200 models as for 20; the
    filters and find-in-page open the ones that match."""
    rows = 0
    for position, model in enumerate(models):
        rows += 1 + len(model.groups)
        if rows > OPEN_ROWS and position > 0:
            return position
    return len(models)


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


def html_context(report: Report, options: RenderOptions) -> dict[str, Any]:
    context = base_context(report, options)
    context["rules"] = rule_docs(report, options)
    _budget_rows(context)
    details: dict[int, dict[str, Any] | None] = {}
    for position, group in enumerate(context["groups"]):  # a group's details: its first's
        item = group.first
        details[item.index] = None  # past the budget: "in the JSON report"
        if position < MAX_DETAILED_GROUPS:
            neighborhoods = item.model.result.report_data.neighborhood or {}
            graph = neighborhoods.get(item.finding.order) if item.finding.order >= 0 else None
            details[item.index] = {
                "evidence": _evidence(item.finding.evidence),
                "graph": neighborhood_svg(graph),
            }
    context["details"] = details
    context["max_full"] = MAX_FULL_GROUPS
    context["max_provenance_rows"] = MAX_PROVENANCE_ROWS
    context["max_provenance_json"] = MAX_PROVENANCE_JSON
    context["max_members"] = MAX_GROUP_MEMBERS
    context["max_detailed"] = MAX_DETAILED_GROUPS
    context["max_listed"] = MAX_LISTED_GROUPS
    context["rule_counts"] = {model.index: _rule_counts(model) for model in context["models"]}
    context["max_hot_rows"], context["max_plain_rows"] = MAX_HOT_ROWS, MAX_PLAIN_ROWS
    context["open_rows"] = OPEN_ROWS
    context["open_models"] = min(
        [_open_models(context["models"]), *context["counted_models"]]
    )  # counted models are a suffix, always collapsed
    context["collapsed_findings"] = sum(
        len(model.findings) for model in context["models"][context["open_models"] :]
    )
    context["rule_docs_html"] = {
        code: {heading: markdown_html(text) for heading, text in doc.sections.items()}
        for code, doc in context["rules"].items()
    }
    rows_left = {True: MAX_HOT_ROWS, False: MAX_PLAIN_ROWS}
    context["bn"] = {model.index: _bn_rows(model, rows_left) for model in context["models"]}
    context["fold"] = {model.index: _fold_rows(model) for model in context["models"]}
    context["drift"] = {
        model.index: drift_view(model.result.report_data.drift) for model in context["models"]
    }
    context["codes"] = sorted(context["rules"])
    context["provenance"] = _shorter_provenance(provenance_view(report))
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
    env.trim_blocks = env.lstrip_blocks = True  # no indentation from {% %} lines: 1.6 KB a model
    env.filters["short_path"] = short_path
    env.filters["num"] = number
    env.filters["wbr"] = break_opportunities
    style = env.get_template("report.css").render()
    script = env.get_template("report.js").render()
    context = html_context(report, options)
    context["csp"] = content_security_policy(style, script)
    return env.get_template("report.html.j2").render(**context)
