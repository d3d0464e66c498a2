"""Ignore patterns are matched in linear time: a planted configuration cannot stall a gate.

``per-node-ignores`` and a rule's ``ignore`` option are regular expressions from
configuration files (a discovered one is data) matched against node names (chosen by the
model). With Python's backtracking ``re``, ``(a+)+$`` against forty ``a`` and a ``!``
takes about 2**40 steps and cannot be interrupted by any timeout; bnlint's matcher
(:mod:`bnlint.config.patterns`) is an automaton, so the same pair costs one pass over the name.
The matcher must still mean what ``re.search`` means: a differential test compares them on
generated patterns and names.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnlint.config import patterns as config_regex
from bnlint.config.keys import check_regexes
from bnlint.config.patterns import NamePatterns, PatternBudgetExceeded, PatternError
from tests.hostile.runner import assert_behaved, run_attack
from tests.zoo.onnx_builder import GraphBuilder

EVIL_NAME = "a" * 40 + "!"


def _model(folder: Path, name: str) -> Path:
    """Conv -> BatchNormalization(training_mode=1) -> Relu, every node named ``name``."""
    g = GraphBuilder(opset=15)
    y = g.relu(g.bn(g.conv(g.input("x", [1, 3, 8, 8]), 8), training=True))
    model = g.model(outputs=[y])
    for node in model.graph.node:
        node.name = name
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "m.onnx")
    return folder / "m.onnx"


def _codes(report: str) -> set[str]:
    return {f["code"] for m in json.loads(report)["models"] for f in m["findings"]}


def test_a_catastrophic_pattern_in_a_discovered_configuration(tmp_path: Path) -> None:
    """Before: killed at the timeout (re.search backtracking 2**40 ways, per finding)."""
    model = _model(tmp_path / "pr", EVIL_NAME)
    (tmp_path / "pr" / ".bnlint.toml").write_text('[per-node-ignores]\n"(a+)+$" = ["ALL"]\n')
    attack = run_attack([model, "--format", "json"], tmp_path)
    assert_behaved(attack, exit_code=1)  # nothing ignored: the name ends with "!"
    assert "BN003" in _codes(attack.stdout)
    (tmp_path / "pr" / ".bnlint.toml").write_text('[per-node-ignores]\n"^(a+)+!$" = ["ALL"]\n')
    ignored = run_attack([model, "--format", "json"], tmp_path)
    assert_behaved(ignored, exit_code=0)  # the same pattern language still matches
    assert "BN003" not in _codes(ignored.stdout)


def test_a_pattern_without_a_linear_automaton_is_refused(tmp_path: Path) -> None:
    model = _model(tmp_path / "pr", EVIL_NAME)
    (config := tmp_path / "pr" / ".bnlint.toml").write_text(
        '[per-node-ignores]\n"(a+)+\\\\1" = ["ALL"]\n'
    )
    attack = run_attack([model], tmp_path)
    assert_behaved(attack, exit_code=2, error="backreferences cannot be matched in linear time")
    assert str(config) in attack.lines[0]


def test_a_rule_ignore_option_is_checked_the_same_way() -> None:
    with pytest.raises(ValueError, match="lookahead"):
        check_regexes("missing-norm-before-activation.ignore", ["(?=a)a"])
    check_regexes("missing-norm-before-activation.ignore", ["^stem\\.", "(?i)head$"])


# -- the matcher in process -------------------------------------------------------------------
_ATOMS = ["a", "b", "x", "_", ".", "[ab]", "[^a]", "[a-c]", "\\d", "\\w", "\\W", "\\s", "\\."]
_ATOMS += ["^", "$", "\\b", "\\B", "\\A", "\\Z", "é", "(?i:A)", "[A-Z]", "\\n", "ſ", "K", "²"]
_ATOMS += ["(?i:s)", "(?i:[k-l])", "(?a:\\w)", "(?a:\\b)", "(?s:.)", "(?m:$)", "[^\\W\\d]"]
_QUANTIFIERS = ["", "", "*", "+", "?", "{2}", "{1,3}", "*?", "+?", "{0,2}"]


@st.composite
def _patterns(draw, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        if depth < 3 and draw(st.integers(0, 4)) == 0:
            inner = draw(_patterns(depth + 1))
            if draw(st.booleans()):
                inner += "|" + draw(_patterns(depth + 1))
            parts.append(f"({inner}){draw(st.sampled_from(_QUANTIFIERS))}")
        else:
            parts.append(draw(st.sampled_from(_ATOMS)) + draw(st.sampled_from(_QUANTIFIERS)))
    return "".join(parts)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(
    flags=st.sampled_from(["", "(?m)", "(?s)", "(?i)", "(?a)", "(?im)", "(?ia)", "(?sm)"]),
    pattern=_patterns(),
    names=st.lists(st.text("ab x_.\n1AéÉſSsKk²İ-", max_size=10), min_size=1, max_size=6),
)
def test_the_matcher_means_what_re_search_means(flags: str, pattern: str, names: list) -> None:
    try:
        compiled = re.compile(flags + pattern)
    except re.error:  # "^*": nothing to repeat; refused by both
        with pytest.raises(PatternError):
            NamePatterns([flags + pattern])
        return
    matcher = NamePatterns([flags + pattern, "x{2}"])
    for name in names:
        expected = {0} if compiled.search(name) else set()
        expected |= {1} if "xx" in name else set()
        assert matcher.matching(name) == expected, (flags + pattern, name)


@pytest.mark.parametrize(
    "pattern", ["(a+)+$", "(a|a)*$", "(a|aa)+$", "(.*a){25}$", "^(([a-z])+.)+[A-Z]([a-z])+$"]
)
def test_classic_redos_patterns_cost_one_pass(pattern: str) -> None:
    matcher = NamePatterns([pattern])
    name = "a" * 20_000 + "!"
    assert matcher.search(name) == bool(re.search(pattern, "a" * 20 + "!"))
    assert matcher.work < 100_000  # automaton steps: no backtracking


def test_a_set_built_to_keep_the_dfa_missing_is_stopped(monkeypatch) -> None:
    """``(a|b)*a(a|b){16}`` has 2**17 DFA states: cache misses are charged to a budget."""
    monkeypatch.setattr(config_regex, "MAX_WORK", 200_000)
    matcher = NamePatterns(["(a|b)*a(a|b){16}c"], "bnlint.toml: per-node-ignores")
    rng = random.Random(0)
    name = "".join(rng.choice("ab") for _ in range(50_000))  # aperiodic
    with pytest.raises(PatternBudgetExceeded, match=r"bnlint\.toml: per-node-ignores"):
        matcher.search(name)


@pytest.mark.parametrize(
    "pattern",
    ["(a)\\1", "(?=a)", "(?<!a)b", "(?>a)", "a*+", "(?(1)a|b)", "a" * 1001, "(", "a{99999}"],
)
def test_refused_patterns(pattern: str) -> None:
    with pytest.raises(PatternError):
        NamePatterns([pattern])


def test_too_many_patterns() -> None:
    with pytest.raises(PatternError, match="more than"):
        NamePatterns(["a"] * (config_regex.MAX_PATTERNS + 1))


def test_the_state_budget_is_for_the_whole_set() -> None:
    """1,000 patterns of 5,000 states each would be 5 * 10**6 states: refused before building."""
    NamePatterns(["a{4999}"])
    with pytest.raises(PatternError, match="together"):
        NamePatterns(["a{4999}"] * 1000)


def test_case_folding_is_re_s_own() -> None:
    """Characters are tested by ``re`` itself: its special folds hold both ways."""
    matcher = NamePatterns(["(?i)ſ", "(?i)k", "(?i:İ)", "(?a)\\bx"])
    assert matcher.matching("S") == {0}
    assert matcher.matching("\u212a") == {1}  # KELVIN SIGN
    assert matcher.matching("i") == {2}
    assert matcher.matching("²x") == {3}  # not a word character under ASCII


def test_the_dfa_cache_stays_bounded(monkeypatch) -> None:
    monkeypatch.setattr(config_regex, "MAX_MOVES", 50)
    matcher = NamePatterns(["(?i)z$", "[a-f]{3}"])
    name = "".join(chr(0x4E00 + i) for i in range(500)) + "abc Z"
    assert matcher.matching(name) == {0, 1}
    assert len(matcher._moves) <= 50


def test_character_ranges_are_bounded_before_re_compiles_them() -> None:
    """re's compiler walks every code point of a range: a 1 KB class of 330 ranges took
    2.4 s to compile (twice per pattern), so a 100 KB configuration took minutes."""
    wide = "[" + "".join(chr(0x100 + i) + "-\uffff" for i in range(330)) + "]"
    with pytest.raises(PatternError, match="cover over 2500000 code points"):
        NamePatterns([wide])
    full = "(?i)[\x00-\U0010ffff]"  # one full Unicode range, case-folded: allowed
    NamePatterns([full, full.replace("x00", "x01")])
    with pytest.raises(PatternError, match="together"):
        NamePatterns([full, full.replace("x00", "x01"), full.replace("x00", "x02")])
