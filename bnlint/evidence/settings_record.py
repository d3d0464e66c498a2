"""The resolved configuration as provenance records it (see :mod:`bnlint.evidence.provenance`).

Settings are written in the configuration file's own spelling (``input-shape``,
``rules-dir``, rule tables by rule name), so the record saved as ``bnlint.toml`` configures
the same run; each value says where it came from; every enabled rule is listed with its
effective severity and options; with ``--verify``, the tolerances BN012 and BN018 apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from bnlint.findings import json_safe

if TYPE_CHECKING:
    from bnlint.config import Settings
    from bnlint.engine.registry import RuleSet
    from bnlint.rule import Rule

FLAG_FIELDS = {"verify": "verify", "trust_model_code": "trust-model-code"}


def _field_keys() -> dict[str, str]:
    """Settings field -> configuration key (``input_shapes`` -> ``input-shape``)."""
    from bnlint.config.keys import KEYS as _KEYS

    return {field_name: key for key, (field_name, _) in _KEYS.items()}


def _plain(value: Any) -> Any:
    if hasattr(value, "label"):  # Severity
        return value.label
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    return value


def settings_table(settings: Settings) -> dict[str, Any]:
    """The resolved settings in configuration-file spelling, rule tables included.

    Saved as ``bnlint.toml`` (see :mod:`bnlint.evidence.reproduce`) they configure the same run.
    """
    keys = _field_keys()
    table: dict[str, Any] = {}
    for item in fields(settings):
        if item.name not in keys:
            continue
        value = getattr(settings, item.name)
        if item.name in ("per_model_ignores", "per_node_ignores"):
            value = {pattern: list(codes) for pattern, codes in value}
        table[keys[item.name]] = _plain(value)
    for rule_name, options in sorted(settings.rule_options.items()):
        table[rule_name] = _plain(dict(options))
    return json_safe(table)


def settings_origins(settings: Settings) -> dict[str, str]:
    """Where each key of :func:`settings_table` came from (a rule table: ``rule-tables``)."""
    origins = _origins(settings)
    table = origins.get("rule-tables", "default")
    return {key: origins.get(key, table) for key in settings_table(settings)}


def _origins(settings: Settings) -> dict[str, str]:
    keys = {**_field_keys(), **FLAG_FIELDS, "rule_options": "rule-tables"}
    return {
        keys.get(name, name.replace("_", "-")): origin
        for name, origin in settings.origins.items()
        if name not in ("origins", "config_path")
    }


def enabled_rules(settings: Settings, ruleset: RuleSet) -> list[Rule]:
    return [
        rule
        for rule in ruleset.checkers
        if ruleset.is_enabled(rule, settings.effective_select, settings.ignore)
    ]


def rule_options(rule: Rule, settings: Settings) -> dict[str, Any]:
    return {**rule.spec.options, **settings.rule_options.get(rule.name, {})}


def _verification_tolerances(settings: Settings, ruleset: RuleSet) -> dict[str, Any]:
    """The tolerances the rules that run the model (``needs`` runtime: BN012, BN018)
    apply with these settings, per floating dtype."""
    from bnlint.analysis.batch_coupling import tolerance_for
    from bnlint.fold import bounds

    dtypes = ("float32", "float16", "bfloat16")
    result: dict[str, Any] = {}
    for rule in ruleset.checkers:
        if "runtime" not in rule.spec.needs:
            continue
        code, options = rule.code, rule_options(rule, settings)
        scale = float(options.get("tolerance-scale", 1.0))
        if code == "BN012":
            result[code] = {
                "tolerance-scale": scale,
                "algebraic": bounds.ALGEBRAIC_CRITERION,
                "numeric": bounds.NUMERIC_CRITERION,
                "outputs": bounds.OUTPUT_CRITERION,
            }
        elif code == "BN018":
            result[code] = {
                "tolerance-scale": scale,
                "samples": options.get("samples"),
                "batch-size": options.get("batch-size"),
                "relative": {d: tolerance_for(d, scale) for d in dtypes},
            }
    return result


def configuration_record(settings: Settings, ruleset: RuleSet) -> dict[str, Any]:
    """One resolved configuration: file, settings, origins, enabled rules with options."""
    from bnlint.evidence.digests import file_digest

    digest = file_digest(settings.config_path) if settings.config_path else None
    record: dict[str, Any] = {
        "path": settings.config_path,
        "sha256": digest["sha256"] if digest else None,
        "settings": settings_table(settings),
        "flags": {key: bool(getattr(settings, name)) for name, key in FLAG_FIELDS.items()},
        "origins": _origins(settings),
        "rules": [
            {
                "code": rule.code,
                "name": rule.name,
                "severity": settings.severity.get(rule.code, rule.spec.severity).label,
                "since": rule.spec.since,
                "origin": rule.origin,
                "options": json_safe(rule_options(rule, settings)),
            }
            for rule in enabled_rules(settings, ruleset)
        ],
    }
    if settings.verify:
        record["verification_tolerances"] = _verification_tolerances(settings, ruleset)
    return record
