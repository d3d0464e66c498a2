"""BN006 degenerate-running-variance."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import Case, check_case, rule_findings
from tests.rules.param_models import (
    bare_graph,
    conv_bn,
    exported,
    initializer,
    lint_bare,
    set_initializer,
)

C = 6


def resnet_with_negative_variance():
    model = exported("resnet_small")
    var = initializer(model, "layer1.0.bn2.running_var").copy()
    var[[1, 5]] = [-0.25, -3.0]
    return set_initializer(model, "layer1.0.bn2.running_var", var)


def with_value(role: str, index: int, value: float, **kwargs):
    def build():
        values = np.linspace(0.5, 1.5, C)
        values[index] = value
        return conv_bn(C, **{role: values}, **kwargs)

    return build


POSITIVE = [
    Case(
        "resnet-small-negative-variance",
        resnet_with_negative_variance,
        ["layer1.0.bn2"],
        severity="error",
        message="negative in 2 channel(s) [1, 5] (min -3)",
        evidence={"problems": ["negative_variance"]},
    ),
    Case(
        "nan-scale",
        with_value("scale", 2, np.nan),
        ["bn"],
        message="scale has NaN/Inf in 1 channel(s) [2]",
        evidence={"problems": ["non_finite"]},
    ),
    Case("inf-running-mean", with_value("mean", 0, np.inf), ["bn"], message="running mean"),
    Case("nan-bias", with_value("bias", 3, np.nan), ["bn"], evidence={"problems": ["non_finite"]}),
    Case(
        "zero-variance-and-zero-eps",
        with_value("var", 4, 0.0, eps=0.0),
        ["bn"],
        message="var + eps <= 0 in 1 channel(s) [4]",
        evidence={"problems": ["variance_plus_eps_not_positive"]},
    ),
    Case(
        "float16-variance-plus-eps-rounds-to-zero",
        with_value("var", 1, 0.0, eps=1e-9, dtype=np.float16),
        ["bn"],
        severity="error",
        message="exceeds float16's range",
        evidence={"problems": ["inverse_sqrt_overflow"], "dtype": "float16"},
    ),
    Case(
        "dead-channels-zero-scale",
        with_value("scale", 0, 0.0),
        ["bn"],
        severity="info",
        message="scale is 0 in 1 channel(s) [0]",
        evidence={"problems": ["dead-channels"]},
    ),
    Case(
        "dead-channels-zero-variance",
        with_value("var", 5, 0.0),
        ["bn"],
        severity="info",
        message="gain 316 x scale",
    ),
]
NEGATIVE = [
    # 1/sqrt(1.2e-7 + 1e-9) = 2900 still fits float16: the near miss of the case above.
    Case("float16-tiny-variance-fits", with_value("var", 1, 1e-7, eps=1e-9, dtype=np.float16), []),
    Case("resnet-small-trained", lambda: exported("resnet_small"), []),
    Case("trained", lambda: conv_bn(C), []),
    Case("negative-scale-and-mean-are-legitimate", with_value("scale", 1, -0.7), []),
    Case("negative-mean", with_value("mean", 1, -4.0), []),
    Case("zero-variance-with-large-eps", with_value("var", 2, 0.0, eps=0.05), []),
    Case("float16-ordinary", lambda: conv_bn(C, dtype=np.float16), []),
]


@pytest.mark.parametrize("case", POSITIVE + NEGATIVE, ids=lambda case: case.id)
def test_bn006(case: Case) -> None:
    check_case("BN006", case)


def test_errors_and_dead_channels_in_one_finding() -> None:
    def build():
        scale = np.linspace(0.5, 1.5, C)
        scale[3] = 0.0
        var = np.linspace(0.5, 1.5, C)
        var[[0, 2]] = [-1e-3, np.nan]
        return conv_bn(C, scale=scale, var=var)

    (finding,) = rule_findings("BN006", Case("mixed", build, ["bn"]))
    assert finding.severity.label == "error"
    assert finding.evidence["problems"] == ["negative_variance", "non_finite"]
    assert finding.evidence["negative_variance"]["channels"] == [0]
    assert finding.evidence["negative_variance"]["min"] == pytest.approx(-1e-3)
    assert finding.evidence["non_finite"]["var"] == {"count": 1, "channels": [2], "nan": 1}
    assert finding.evidence["dead"]["zero_scale"]["channels"] == [3]


def test_runs_on_bare_weights_without_phase() -> None:
    ok = {"scale": np.ones(3), "bias": np.zeros(3), "mean": np.zeros(3), "var": np.ones(3)}
    graph = bare_graph({"good": ok, "bad": {**ok, "var": np.array([1.0, -1.0, 1.0])}})
    assert [f.scope for f in lint_bare(graph, "BN006")] == ["bad"]


def test_unreadable_variance_is_reported_not_crashed() -> None:
    from bnlint.api import lint

    model = conv_bn(C)
    (var,) = [t for t in model.graph.initializer if t.name == "bn.running_var"]
    var.raw_data = var.raw_data[:-4]  # truncated: the declared shape needs 4 more bytes
    codes = ["BN005", "BN006", "BN013", "BN014", "BN015"]
    report = lint(model, select=codes, target_dtype="float16")
    codes_found = {finding.code for finding in report.findings}
    assert "BN902" not in codes_found
    diagnostics = [f for f in report.findings if f.code == "BN901"]
    assert diagnostics and all(f.evidence["tensor"] == "bn.running_var" for f in diagnostics)
