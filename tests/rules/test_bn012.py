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
# float32: the running mean (1e4) dwarfs the spread (var 1e-6). The original already
# carries the rounding of 1e4-sized activations into the subtraction, the fold the same
# into its bias: both lose the same precision. A precision hazard (BN013), not a wrong fold.
cancellation = conv_bn_with(1.0, 1e4 + 0.5, 1e-6, 1e-9, conv_bias=1e4)

POSITIVE = [
    Case(
        "float16-weights-overflow",
        float16_overflow,
        ["bn"],
        settings=VERIFY,
        severity="error",
        message="overflow float16",
        evidence={"verdict": "folded-wrongly", "problem_code": "overflow"},
    ),
]
NEGATIVE = [
    Case("float32-cancellation-is-no-wrong-fold", cancellation, [], settings=VERIFY),
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


def test_failure_reports_the_bound_the_error_and_the_margin() -> None:
    (finding,) = rule_findings("BN012", POSITIVE[0])
    algebraic = finding.evidence["algebraic"]
    assert algebraic["error"] == {"nonfinite": "inf"} and algebraic["bound"] > 0
    assert algebraic["margin"] == 0
    assert "bound" in algebraic["criterion"] or "<=" in algebraic["criterion"]


def test_tolerance_scale_multiplies_the_numeric_bounds() -> None:
    from bnlint.fold import bounds

    exact = np.linspace(-1, 1, 50)
    noisy = exact + 1e-6
    tight = bounds.numeric("y", exact, exact + 1e-7, noisy, "float32")
    loose = bounds.numeric("y", exact, exact + 1e-7, noisy, "float32", scale=10.0)
    assert not tight.ok and loose.ok
    assert loose.bound == pytest.approx(10 * tight.bound)
