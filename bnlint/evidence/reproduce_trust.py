"""What a report may configure when it is rerun: data settings yes, trust never.

A report is data written by someone else. Its recorded configuration is applied only
after removing every key that is not a setting bnlint records (``extend`` would name a
configuration file, and the rerun's own ``--config`` trusts what it extends), every
setting that imports or runs code or widens what bnlint reads
(:data:`bnlint.config.keys.TRUST_KEYS`, the recorded ``--trust-model-code`` switch) and
every limit looser than bnlint's defaults (:data:`bnlint.config.keys.LIMIT_KEYS`). Each
removal becomes a note naming the recorded value and the ``python -m bnlint.reproduce``
option that sets it on purpose. Rules the report names that only a removed ``rules-dir``
could provide are dropped from selectors, severities and rule tables (noted too), so the
rerun still starts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bnlint.config.keys import KEYS, LIMIT_KEYS, TRUST_KEYS

_SELECTOR_KEYS = ("select", "extend-select", "ignore")
_CODE_TABLES = ("severity",)
_PATTERN_TABLES = ("per-model-ignores", "per-node-ignores")


@dataclass
class OwnTrust:
    """What the user of ``bnlint.evidence.reproduce`` allowed on its own command line."""

    trust_model_code: bool = False
    rules_dirs: tuple[str, ...] = ()
    arch: str | None = None
    allowed_data_roots: tuple[str, ...] = ()
    limits: dict[str, int] = field(default_factory=dict)  # max-nodes, max-subgraph-depth

    def settings(self) -> dict[str, Any]:
        given = {
            "rules-dir": list(self.rules_dirs),
            "arch": self.arch,
            "allowed-data-roots": list(self.allowed_data_roots),
        }
        return {key: value for key, value in given.items() if value} | dict(self.limits)


def _shown(value: Any) -> str:
    return json.dumps(value)[:200]  # ASCII, escaped: safe on a terminal


def _defaults() -> dict[str, Any]:
    from bnlint.config import Settings

    defaults = Settings()
    return {"max-nodes": defaults.max_nodes, "max-subgraph-depth": defaults.max_subgraph_depth}


def untrusted_settings(
    recorded: Mapping[str, Any], flags: Mapping[str, Any], own: OwnTrust, known_rule: Any
) -> tuple[dict[str, Any], bool, list[str]]:
    """(settings to apply, trust-model-code, notes) for one recorded configuration.

    ``known_rule(selector) -> bool`` says whether the rules available without the recorded
    ``rules-dir`` know a selector, rule name or code.
    """
    settings = dict(recorded)
    notes = []
    for key in [k for k, v in settings.items() if k not in KEYS and not isinstance(v, dict)]:
        # bnlint records resolved settings: `extend` (or any other non-setting) in a report
        # was put there to name a configuration file, which the rerun would trust
        notes.append(
            f"ignored the recorded {key} = {_shown(settings.pop(key))}: not a setting bnlint "
            "records; a report cannot name configuration files"
        )
    for key, option in TRUST_KEYS.items():
        value = settings.pop(key, None)
        if value:
            notes.append(
                f"ignored the recorded {key} = {_shown(value)}: a report cannot import code or "
                f"widen reads (pass {option} to python -m bnlint.reproduce)"
            )
    defaults = _defaults()
    for key in sorted(LIMIT_KEYS):
        value = settings.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > defaults[key]:
            settings.pop(key)
            notes.append(
                f"ignored the recorded {key} = {value}: looser than the default "
                f"{defaults[key]} (pass --{key} N to python -m bnlint.reproduce)"
            )
    if flags.get("trust-model-code") and not own.trust_model_code:
        notes.append(
            "ignored the recorded --trust-model-code: a report cannot make bnlint run code "
            "from model files (pass --trust-model-code to python -m bnlint.reproduce)"
        )
    settings.update(own.settings())
    if not own.rules_dirs:
        notes += _drop_unknown_rules(settings, known_rule)
    return settings, own.trust_model_code, notes


def _drop_unknown_rules(settings: dict[str, Any], known_rule: Any) -> list[str]:
    dropped: set[str] = set()
    for key in _SELECTOR_KEYS:
        values = settings.get(key)
        if isinstance(values, list):
            kept = [item for item in values if not isinstance(item, str) or known_rule(item)]
            dropped.update(str(item) for item in values if item not in kept)
            settings[key] = kept
    for key in _CODE_TABLES:
        table = settings.get(key)
        if isinstance(table, dict):
            dropped.update(code for code in table if not known_rule(code))
            settings[key] = {code: level for code, level in table.items() if known_rule(code)}
    for key in _PATTERN_TABLES:
        table = settings.get(key)
        if isinstance(table, dict):
            for pattern, codes in table.items():
                if isinstance(codes, list):
                    dropped.update(
                        str(c) for c in codes if isinstance(c, str) and not known_rule(c)
                    )
                    table[pattern] = [c for c in codes if not isinstance(c, str) or known_rule(c)]
    for key, value in list(settings.items()):  # rule tables: every other table is a key's
        if isinstance(value, dict) and key not in KEYS and not known_rule(key):
            dropped.add(key)
            del settings[key]
    if not dropped:
        return []
    return [
        f"left out rules only a rules-dir provides: {_shown(sorted(dropped))} "
        "(pass --rules-dir DIR to python -m bnlint.reproduce)"
    ]
