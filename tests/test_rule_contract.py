"""Every built-in rule honours the contract: docs, cases, and tests that can fail."""

from __future__ import annotations

import importlib
from dataclasses import replace

import pytest

from bnlint.engine.registry import load_rules
from bnlint.rule import REQUIRED_SECTIONS
from tests.helpers import check_case

RULES = [rule for rule in load_rules() if rule.origin == "built-in"]
CODES = [rule.code for rule in RULES]


def rule_tests(code: str):
    return importlib.import_module(f"tests.rules.test_{code.lower()}")


@pytest.mark.parametrize("code", CODES)
def test_rule_documents_every_section(code: str) -> None:
    rule = load_rules().get(code)
    sections = rule.sections()
    for heading in REQUIRED_SECTIONS:
        assert len(sections.get(heading, "")) > 40, f"{code}: section {heading!r} is too thin"
    if rule.spec.options:
        for option in rule.spec.options:
            assert f"`{option}`" in sections["Options"], f"{code}: option {option} undocumented"
    assert rule.summary.endswith("."), f"{code}: summary must be one sentence"


@pytest.mark.parametrize("code", CODES)
def test_rule_has_positive_and_negative_cases(code: str) -> None:
    module = rule_tests(code)
    assert module.POSITIVE, f"{code}: no positive case"
    assert module.NEGATIVE, f"{code}: no negative (near-miss) case"
    assert all(case.expect for case in module.POSITIVE), f"{code}: positive case expects nothing"
    assert all(not case.expect for case in module.NEGATIVE), f"{code}: negative expects findings"


@pytest.mark.parametrize("code", CODES)
def test_noop_check_fails_positive_cases(code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation test: replacing the rule's check by a no-op must break its positive cases."""
    ruleset = load_rules()
    monkeypatch.setitem(ruleset.rules, code, replace(ruleset.rules[code], check=lambda g, c: ()))
    for case in rule_tests(code).POSITIVE:
        with pytest.raises(AssertionError):
            check_case(code, case)
