"""The Markdown of the generated rule pages (see :mod:`bnlint.docgen`).

A rule page is the rule's docstring (``bnlint explain`` prints the same text) framed by
what the ``RuleSpec`` declares: default severity, phases, what the model must provide,
the version that introduced it, and the options with their defaults as configuration.
"""

from __future__ import annotations

from collections.abc import Sequence

from bnlint.rule import PHASES, REQUIRED_SECTIONS, Rule
from bnlint.toml_writer import toml_literal

SOURCE_URL = "https://github.com/bnlint/bnlint/blob/main/"
EDIT_URL = "https://github.com/bnlint/bnlint/edit/main/"
NEEDS = {
    "edges": "the graph's edges (which node feeds which)",
    "producer_edges": "which layer feeds each BatchNorm (read, or inferred from "
    "parameter names and shapes in state dicts)",
    "parameters": "parameter values (weights, running statistics)",
    "modules": "PyTorch module attributes (requires_grad, train/eval flags)",
    "samples": "served inputs (`--sample-data FILE`) and a runnable model",
    "runtime": "a runnable model; it runs with `--verify` only",
}
PHASE_NOTES = {
    "inference": "inference (the default for ONNX, `.pt2`, TorchScript and eval-mode models)",
    "training": "training (the default for a `module:factory` model in train mode)",
    "finetune": "finetune (`--phase finetune`)",
}


def _generated(source: str) -> str:
    return (
        f"<!-- Generated from {source} by `make docs` (python -m bnlint.docgen --docs docs). "
        "Edit the docstring there, not this page. -->"
    )


def front_matter(source: str) -> list[str]:
    """mkdocs page metadata: "edit this page" opens the file the page is generated from."""
    return ["---", f"edit_url: {EDIT_URL}{source}", "---", ""]


def source_path(rule: Rule) -> str:
    """The repository path of the module that defines ``rule``."""
    if rule.origin == "diagnostic":
        return "bnlint/diagnostics.py"
    return "rules/" + rule.module.rsplit(".", 1)[-1] + ".py"


def _phases(rule: Rule) -> str:
    if rule.origin == "diagnostic":
        return "all (bnlint reports it itself)"
    text = "; ".join(PHASE_NOTES[phase] for phase in PHASES if phase in rule.spec.phases)
    if runs_without_phase(rule):
        text += "; also on bare weights without a phase (state dicts, safetensors)"
    return text


def runs_without_phase(rule: Rule) -> bool:
    return not rule.spec.needs_phase


def _needs(rule: Rule) -> str:
    if not rule.spec.needs:
        return "only the BatchNorm's own attributes and inputs (runs on every format)"
    return "; ".join(NEEDS[need] for need in sorted(rule.spec.needs))


def _facts(rule: Rule) -> list[str]:
    source = source_path(rule)
    rows = [
        "| | |",
        "|---|---|",
        f"| Code | `{rule.code}` |",
        f"| Name | `{rule.name}` |",
        f"| Default severity | {rule.spec.severity.label} |",
        "| Enabled by default | "
        + (
            "yes"
            if rule.spec.enabled_by_default
            else f"no (opt-in): `--select {rule.code}` or `--extend-select {rule.name}`"
        )
        + " |",
        f"| Phases | {_phases(rule)} |",
    ]
    if rule.origin != "diagnostic":
        rows.append(f"| Needs | {_needs(rule)} |")
    rows += [
        f"| Since | {rule.spec.since} |",
        f"| Source | [`{source}`]({SOURCE_URL}{source}) |",
    ]
    return rows


def _options(rule: Rule, text: str) -> list[str]:
    lines = ["## Options", "", "| Option | Default |", "|---|---|"]
    for option, default in rule.spec.options.items():
        lines.append(f"| `{option}` | `{toml_literal(default)}` |")
    return [*lines, "", text, ""]


def _configuration(rule: Rule) -> list[str]:
    toml = [
        "[tool.bnlint]",
        f'ignore = ["{rule.code}"]  # turn it off (the name works too: "{rule.name}")',
        "",
        "[tool.bnlint.severity]",
        f'{rule.code} = "{_other_severity(rule)}"  # or keep it, at another severity',
    ]
    if rule.spec.options:
        toml += ["", f"[tool.bnlint.{rule.name}]  # its options, at their defaults"]
        toml += [f"{k} = {toml_literal(v)}" for k, v in rule.spec.options.items()]
    always = (
        "Diagnostics are always on unless ignored."
        if rule.origin == "diagnostic"
        else f"`--select {rule.code}` runs it alone; `--ignore {rule.code}` skips it."
    )
    return [
        "## Configuration",
        "",
        "In `pyproject.toml` (or the same keys at the top level of `bnlint.toml`):",
        "",
        "```toml",
        *toml,
        "```",
        "",
        f"{always} Per-model and per-node ignores take the code or the name "
        "([configuration](../configuration.md)). `bnlint explain "
        f"{rule.code}` prints this documentation in a terminal; every {rule.code} finding "
        "links to this page.",
        "",
    ]


def _other_severity(rule: Rule) -> str:
    return "warning" if rule.spec.severity.label != "warning" else "error"


def rule_page(rule: Rule) -> str:
    """The reference page of one rule or diagnostic."""
    sections = rule.sections()
    lines = [
        *front_matter(source_path(rule)),
        f"# {rule.code} {rule.name}",
        "",
        _generated(source_path(rule)),
        "",
        rule.summary,
        "",
        *_facts(rule),
        "",
    ]
    for heading in (*REQUIRED_SECTIONS, *(h for h in sections if h not in REQUIRED_SECTIONS)):
        if heading == "Options":
            continue
        if heading in sections:
            lines += [f"## {heading}", "", sections[heading], ""]
    if rule.spec.options or "Options" in sections:
        lines += _options(rule, sections.get("Options", ""))
    lines += _configuration(rule)
    return "\n".join(lines)


def _index_rows(rules: Sequence[Rule], with_phases: bool) -> list[str]:
    header = "| Code | Name | Severity | Phases | Since | Summary |" if with_phases else ""
    rows = [header or "| Code | Name | Severity | Since | Summary |"]
    rows.append("|---" * (6 if with_phases else 5) + "|")
    for rule in rules:
        phases = ", ".join(p for p in PHASES if p in rule.spec.phases)
        severity = rule.spec.severity.label + ("" if rule.spec.enabled_by_default else " (opt-in)")
        cells = [f"[{rule.code}]({rule.code}.md)", f"`{rule.name}`", severity]
        cells += [phases] if with_phases else []
        cells += [rule.spec.since, rule.summary.replace("|", "\\|")]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def rules_index(rules: Sequence[Rule]) -> str:
    """The rules overview page: every rule, then every diagnostic."""
    checks = [rule for rule in rules if rule.origin != "diagnostic"]
    diagnostics = [rule for rule in rules if rule.origin == "diagnostic"]
    return "\n".join(
        [
            *front_matter("bnlint/docgen/pages.py"),
            "# Rules",
            "",
            _generated("the rule modules"),
            "",
            "Every rule has a stable code that is never reused and a kebab-case name; either "
            "selects it (`--select`, `--ignore`, `per-model-ignores`, `per-node-ignores`). "
            "The phase decides which rules apply ([Batch Normalization](../batchnorm.md) "
            "explains why); renamed codes keep working ([versioning](../versioning.md)).",
            "",
            *_index_rows(checks, with_phases=True),
            "",
            "## Diagnostics",
            "",
            "Codes BN9xx are bnlint's own: what it could not read, run or verify. They are "
            "always on unless ignored.",
            "",
            *_index_rows(diagnostics, with_phases=False),
            "",
        ]
    )


def redirect_page(old: str, new: str) -> str:
    """The page left at a renamed code's URL: old links keep working."""
    return "\n".join(
        [
            *front_matter("bnlint/engine/registry.py"),
            f"# {old} (renamed to {new})",
            "",
            _generated("bnlint.engine.registry.REDIRECTS"),
            "",
            f'<meta http-equiv="refresh" content="0; url=../{new}/">',
            "",
            f"`{old}` was renamed to [{new}]({new}.md). Selectors, ignores and `bnlint explain "
            f"{old}` still accept the old code; findings carry the new one "
            "([versioning](../versioning.md)).",
            "",
        ]
    )
