"""Run the selected rules over a ModelGraph and turn the outcome into a ModelResult."""

from __future__ import annotations

import fnmatch
import traceback
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from bnlint._perf import gc_paused
from bnlint.config import Settings
from bnlint.config.patterns import NamePatterns, PatternError
from bnlint.diagnostics import diagnostic
from bnlint.engine.registry import NAMED, RuleSet
from bnlint.engine.structure import structure_findings
from bnlint.findings import Finding, ModelResult, Severity
from bnlint.graph import ModelGraph, UnreadableParameter
from bnlint.rule import Rule, RuleContext, RuleInputError


def effective_phase(graph: ModelGraph, settings: Settings) -> str | None:
    """What the model is for in this run: ``--phase`` (or the config), else what the file
    says (None for a bare state dict). The one place the phase is decided: the result
    carries it (``ModelResult.phase``) to everything downstream."""
    return settings.phase or graph.facts.default_phase


def applicable_rules(
    graph: ModelGraph, settings: Settings, ruleset: RuleSet, phase: str | None
) -> tuple[list[Rule], dict[str, list[str]]]:
    """The rules to run on ``graph`` in ``phase`` and, by reason, the enabled ones that
    cannot run."""
    selected = [
        rule
        for rule in ruleset.checkers
        if ruleset.is_enabled(rule, settings.effective_select, settings.ignore)
    ]
    runnable, blocked = [], {}
    for rule in selected:
        if phase is None and rule.spec.needs_phase:
            blocked.setdefault("phase", []).append(rule.code)
            continue
        if phase is not None and phase not in rule.spec.phases:
            continue
        if "runtime" in rule.spec.needs and not settings.verify:
            continue  # a dynamic check nobody asked for: not a gap to report
        if "samples" in rule.spec.needs and not settings.sample_data:
            blocked.setdefault("samples", []).append(rule.code)
            continue
        graph_needs = rule.spec.needs - {"samples", "runtime"}
        missing = [need for need in graph_needs if not graph.facts.provides(need)]
        if missing:
            for need in missing:
                blocked.setdefault(need, []).append(rule.code)
            continue
        runnable.append(rule)
    return runnable, blocked


def run_rules(
    graph: ModelGraph,
    settings: Settings,
    ruleset: RuleSet,
    *,
    debug: Callable[[str], None] | None = None,
) -> list[Finding]:
    """All findings for ``graph`` after selection, severity overrides and ignores, sorted."""
    with gc_paused():
        return _run_rules(graph, settings, ruleset, debug, effective_phase(graph, settings))


def _run_rules(
    graph: ModelGraph,
    settings: Settings,
    ruleset: RuleSet,
    debug: Callable[[str], None] | None,
    phase: str | None,
) -> list[Finding]:
    rules, blocked = applicable_rules(graph, settings, ruleset, phase)
    # Cycles and dangling inputs are reported up front; every rule walk is bounded anyway.
    findings: list[Finding] = structure_findings(graph, settings.docs_url)
    for rule in rules:
        context = RuleContext(
            rule=rule,
            phase=phase,
            options={**rule.spec.options, **settings.rule_options.get(rule.name, {})},
            train_batch_size=settings.train_batch_size,
            input_shapes=settings.input_shapes,
            target_dtype=settings.target_dtype,
            docs_url=settings.docs_url,
            file=graph.path,
            verify=settings.verify,
            sample_data=settings.sample_data,
        )
        try:
            found = list(rule.check(graph, context))
            if graph.facts.inferred:
                found = [mark_inferred(graph, f) if _uses_edges(rule, f) else f for f in found]
            findings.extend(found)
        except RuleInputError:  # unusable user input (e.g. --sample-data): the model fails
            raise
        except UnreadableParameter as error:
            findings.append(
                diagnostic(
                    "BN901",
                    f"{error}; rule {rule.code} ({rule.name}) could not complete",
                    file=graph.path,
                    evidence={"tensor": error.name, "rules_not_run": [rule.code]},
                    docs_url=settings.docs_url,
                )
            )
        except Exception as error:
            if debug is not None:
                debug(traceback.format_exc())
            findings.append(
                diagnostic(
                    "BN902",
                    f"rule {rule.code} ({rule.name}) crashed: {type(error).__name__}: {error}",
                    file=graph.path,
                    evidence={"rule": rule.code, "exception": type(error).__name__},
                    docs_url=settings.docs_url,
                )
            )
    findings = _drop_repeated_causes(_dedupe_unreadable(findings))
    findings += _needs_samples(blocked.pop("samples", []), ruleset, settings, graph.path)
    findings += _model_diagnostics(graph, blocked, settings)
    return finalize_findings(findings, settings, ruleset, graph.path)


def _dedupe_unreadable(findings: list[Finding]) -> list[Finding]:
    """One BN901 per unreadable tensor, listing every rule it stopped."""
    merged: dict[str, Finding] = {}
    kept = []
    for finding in findings:
        tensor = finding.evidence.get("tensor") if finding.code == "BN901" else None
        if tensor is None:
            kept.append(finding)
        elif tensor in merged:
            first = merged[tensor]
            rules = sorted({*first.evidence["rules_not_run"], *finding.evidence["rules_not_run"]})
            merged[tensor] = replace(
                first,
                message=first.message.split("; rule")[0]
                + f"; rules {', '.join(rules)} could not complete",
                evidence={**first.evidence, "rules_not_run": rules},
            )
        else:
            merged[tensor] = finding
    return kept + list(merged.values())


def _drop_repeated_causes(findings: list[Finding]) -> list[Finding]:
    """One finding per problem: a finding whose root cause another rule reports on the same
    node (``Finding.cause``) is dropped."""
    reported = {(finding.code, finding.order) for finding in findings}
    return [
        finding
        for finding in findings
        if finding.cause is None or (finding.cause, finding.order) not in reported
    ]


def _needs_samples(
    codes: list[str], ruleset: RuleSet, settings: Settings, path: str
) -> list[Finding]:
    """A note for rules that need --sample-data, only when selected by code or name (a
    rule that runs only when given data is no news to someone who did not ask for it)."""
    named = [
        code
        for code in codes
        if any(
            ruleset.specificity(selector, ruleset.rules[code]) == NAMED
            for selector in settings.effective_select
        )
    ]
    if not named:
        return []
    return [
        diagnostic(
            "BN905",
            f"{', '.join(named)} compare{'s' if len(named) == 1 else ''} the model with the "
            "data it serves and needs --sample-data FILE (.npz or .npy of model inputs)",
            file=path,
            evidence={"rules_not_run": named},
            docs_url=settings.docs_url,
        )
    ]


def _model_diagnostics(
    graph: ModelGraph, blocked: dict[str, list[str]], settings: Settings
) -> list[Finding]:
    found = []
    facts = graph.facts
    reasons = {
        "edges": "the graph's edges are unknown",
        "producer_edges": "no layer feeding a BatchNorm is known",
        "parameters": "parameter values are unavailable",
        "modules": "module attributes are unavailable",
        "phase": f"a {facts.format} file does not say what the model is for (pass --phase)",
    }
    parts = [*facts.partial, *facts.inferred]
    for need, codes in blocked.items():
        parts.append(f"{reasons[need]}, so {', '.join(sorted(codes))} could not run")
    if parts:
        evidence = {
            "skipped": facts.partial,
            "inferred": facts.inferred,
            "rules_not_run": sorted(c for codes in blocked.values() for c in codes),
        }
        # a warning when part of the file was skipped; what the format cannot hold is a note
        severity = None if facts.partial else Severity.INFO
        found.append(
            diagnostic(
                "BN901",
                "model partially read: " + "; ".join(parts),
                severity=severity,
                file=graph.path,
                evidence=evidence,
                docs_url=settings.docs_url,
            )
        )
    if facts.unsupported:
        constructs = sorted(set(facts.unsupported))
        shown = ", ".join(constructs[:8]) + (" …" if len(constructs) > 8 else "")
        found.append(
            diagnostic(
                "BN903",
                f"unsupported constructs kept as opaque nodes: {shown}",
                file=graph.path,
                evidence={"constructs": constructs},
                docs_url=settings.docs_url,
            )
        )
    return found


def _codes_match(ruleset: RuleSet, code: str, selectors: tuple[str, ...]) -> bool:
    rule = ruleset.get(code)
    if rule is None:
        return False
    return any(ruleset.specificity(selector, rule) is not None for selector in selectors)


# Evidence keys by which a parameter rule (BN010, BN013) says it used the BN's producer.
_PRODUCER_EVIDENCE = ("producer", "folded_into")


def _uses_edges(rule: Rule, finding: Finding) -> bool:
    return bool(rule.spec.needs & {"edges", "producer_edges"}) or any(
        key in finding.evidence for key in _PRODUCER_EVIDENCE
    )


def mark_inferred(graph: ModelGraph, finding: Finding) -> Finding:
    """Word a finding on a node that an inferred edge touches as resting on that inference."""
    if finding.order < 0 or finding.order >= len(graph.nodes):
        return finding
    node = graph.node(finding.order)
    reasons = {
        graph.tensors[name].inferred
        for name in (*node.inputs[:1], *node.outputs)
        if name in graph.tensors and graph.tensors[name].inferred
    }
    if not reasons:
        return finding
    reason = "; ".join(sorted(r for r in reasons if r))
    return replace(
        finding,
        message=f"{finding.message} (edge inferred from {reason})",
        evidence={**finding.evidence, "edge": "inferred", "inferred_from": reason},
    )


@lru_cache(maxsize=8)
def _compiled_patterns(patterns: tuple[str, ...], where: str) -> NamePatterns:
    return NamePatterns(patterns, where)


def _node_patterns(settings: Settings) -> NamePatterns | None:
    if not settings.per_node_ignores:
        return None
    where = f"{settings.config_path or 'command line'}: per-node-ignores"
    try:
        patterns = _compiled_patterns(tuple(p for p, _ in settings.per_node_ignores), where)
    except PatternError as error:  # validated with the settings; a caller may skip that
        raise RuleInputError(f"{where}: {error}") from None
    patterns.work = 0  # the matching budget is per model
    return patterns


def _node_ignored(
    finding: Finding, patterns: NamePatterns, settings: Settings, ruleset: RuleSet
) -> bool:
    """Whether a per-node-ignores pattern for the finding's code matches its scope or node
    (a linear-time automaton: the patterns and the names may both come from an attacker)."""
    matched: set[int] = set()
    for name in (finding.scope, finding.node):
        if name:
            matched |= patterns.matching(name)
    table = settings.per_node_ignores
    return any(_codes_match(ruleset, finding.code, table[i][1]) for i in sorted(matched))


def finalize_findings(
    findings: list[Finding], settings: Settings, ruleset: RuleSet, model_path: str
) -> list[Finding]:
    """Apply severity overrides, per-model and per-node ignores; sort for every reporter."""
    absolute = str(Path(model_path).absolute())
    model_ignores = tuple(
        code
        for pattern, codes in settings.per_model_ignores
        if fnmatch.fnmatch(absolute, pattern) or fnmatch.fnmatch(Path(model_path).name, pattern)
        for code in codes
    )
    node_ignores = _node_patterns(settings)
    kept = []
    for finding in findings:
        if model_ignores and _codes_match(ruleset, finding.code, model_ignores):
            continue
        if node_ignores is not None and _node_ignored(finding, node_ignores, settings, ruleset):
            continue
        override = settings.severity.get(finding.code)
        kept.append(replace(finding, severity=override) if override is not None else finding)
    return sorted(kept, key=Finding.sort_key)


def foldable_count(graph: ModelGraph, phase: str | None) -> int | None:
    """How many BatchNorms the fold plan can fold (BN011's verdicts, counted for the
    summary line); None where folding does not apply: not an inference graph, no edges, or
    parameters the plan cannot read."""
    if phase != "inference" or not graph.nodes_of("batch_norm"):
        return None
    if not graph.facts.provides("producer_edges"):  # what BN011 needs: the BN's producer
        return None
    from bnlint.fold import plan

    try:
        return sum(verdict.foldable for verdict in plan(graph))
    except Exception:  # the rules that read the same parameters report why (BN901)
        return None


def lint_graph(
    graph: ModelGraph,
    settings: Settings,
    ruleset: RuleSet,
    *,
    debug: Callable[[str], None] | None = None,
) -> ModelResult:
    """Lint ``graph`` into a result (report data for the reporters is the API's job)."""
    phase = effective_phase(graph, settings)  # decided once; the result carries it on
    with gc_paused():
        findings = _run_rules(graph, settings, ruleset, debug, phase)
    result = ModelResult(path=graph.path, format=graph.facts.format, findings=findings)
    result.phase = phase
    result.batchnorms = len(graph.nodes_of("batch_norm"))
    result.foldable = foldable_count(graph, phase)
    if getattr(settings, "verify", False):
        from bnlint.fold import verification_of

        result.verification = verification_of(graph)
    return result
