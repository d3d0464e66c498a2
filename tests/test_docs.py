"""Generated documentation is checked in and must match the code."""

from __future__ import annotations

from pathlib import Path

from bnlint.docgen import TABLE_END, TABLE_START, replace_table, rules_table
from bnlint.registry import load_rules

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_rule_table_is_current() -> None:
    text = README.read_text()
    assert replace_table(text, rules_table()) == text, (
        "README rule table is stale: run `make readme`"
    )


def test_rule_table_lists_every_builtin_rule_once() -> None:
    text = README.read_text()
    table = text[text.index(TABLE_START) : text.index(TABLE_END)]
    for rule in load_rules(plugins=False):
        assert table.count(f"[{rule.code}]") == 1
        assert f"`{rule.name}`" in table
