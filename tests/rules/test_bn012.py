"""BN012 fold-mismatch: with --verify, bnlint folds on a copy and reports folds that fail."""

from __future__ import annotations

import numpy as np
import pytest

from tests import fold_models as fm
from tests.helpers import Case, check_case, rule_findings
from tests.zoo.onnx_builder import GraphBuilder

VERIFY = {"verify": True}


def conv_bn_with(
    gamma: float,
    mean: float,
    var: float,
    eps: float,
    dtype=np.float32,
    conv_bias: float | None = None,
):
    def build():
        g = GraphBuilder(dtype=dtype)
        x = g.input("x", ["N", 3, 8, 8])
        weight = g.param("conv.weight", g.rng.normal(0, 0.3, (4, 3, 3, 3)))
        bias = g.param("conv.bias", np.full(4, conv_bias) if conv_bias else g.rng.normal(0, 1, 4))
        (conv,) = g.node("Conv", [x, weight, bias], name="conv", pads=[1, 1, 1, 1])
        g.channels[conv] = 4
        params = [
            g.param("bn.weight", np.full(4, gamma)),
            g.param("bn.bias", np.zeros(4)),
            g.param("bn.running_mean", np.full(4, mean)),
            g.param("bn.running_var", np.full(4, var)),
        ]
        return fm.typed(g, [g.relu(g.bn(conv, name="bn", params=params, eps=eps))])

    return build


# float16: gamma / sqrt(var + eps) ~ 6e5, the folded weights overflow float16's 65504.
float16_overflow = conv_bn_with(20.0, 0.0, 1e-8, 1e-9, dtype=np.float16)
# float32: the running mean (1e4) dwarfs the spread (var 1e-6): the original subtracts it
# from each activation, the fold from a 1e3-times larger product: cancellation.
cancellation = conv_bn_with(1.0, 1e4 + 0.5, 1e-6, 1e-9, conv_bias=1e4)

POSITIVE = [
    Case(
        "float16-weights-overflow",
        float16_overflow,
        ["bn"],
        settings=VERIFY,
        severity="error",
        message="overflow float16",
        evidence={"level": "algebraic", "problem": "overflow"},
    ),
    Case(
        "float32-cancellation",
        cancellation,
        ["bn"],
        settings=VERIFY,
        message="loses precision",
        evidence={"level": "numeric", "problem": "numeric-mismatch"},
    ),
]
NEGATIVE = [
    Case("well-conditioned-fold", fm.conv_bn, [], settings=VERIFY),
    Case(
        "float16-in-range", conv_bn_with(1.0, 0.1, 0.5, 1e-5, dtype=np.float16), [], settings=VERIFY
    ),
    Case("overflowing-but-not-verifying", float16_overflow, []),
    Case("training-mode-is-not-folded", fm.training_bn, [], settings=VERIFY),
    Case("nothing-foldable", fm.two_consumers, [], settings=VERIFY),
]


@pytest.mark.parametrize("case", POSITIVE + NEGATIVE, ids=lambda case: case.id)
def test_bn012(case: Case) -> None:
    check_case("BN012", case)


def test_failure_reports_errors_and_the_tolerance_that_would_pass() -> None:
    (finding,) = rule_findings("BN012", POSITIVE[1])
    evidence = finding.evidence
    assert evidence["worst_output"] == "relu0_out"
    assert evidence["max_abs_error"] > 0 and evidence["output_max_rel_error"] > 2e-6
    assert evidence["min_tolerance"] == pytest.approx(evidence["max_rel_error"])
    assert evidence["min_tolerance"] > evidence["numeric_tolerance"] == 2e-6


def test_tolerance_scale_option_relaxes_the_numeric_level() -> None:
    loose = Case(
        "loose",
        cancellation,
        [],
        settings={**VERIFY, "rule_options": {"fold-mismatch": {"tolerance-scale": 1e4}}},
    )
    check_case("BN012", loose)
