"""BN015 suspicious-momentum."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import Case, check_case, rule_findings
from tests.rules.param_models import bare_graph, conv_bn, exported, lint_bare


def resnet_momentum(momentum: float | None, scope: str = "layer1.0.bn1"):
    return lambda: exported("resnet_small", tweak=[(scope, "momentum", momentum)])


POSITIVE = [
    Case(
        "pytorch-momentum-0.99-ported-from-keras",
        resnet_momentum(0.99),
        ["layer1.0.bn1"],
        severity="warning",
        message="keeping only 1 % of the history",
    ),
    Case(
        "onnx-stores-pytorch-0.1-verbatim",
        lambda: conv_bn(momentum=0.1),
        ["bn"],
        message="momentum 0.9 (stored as 0.1, the weight of the old running value)",
    ),
    Case(
        "onnx-momentum-0-means-no-averaging", lambda: conv_bn(momentum=0.0), ["bn"], message="is 1"
    ),
    Case(
        "onnx-momentum-1-is-ambiguous",
        lambda: conv_bn(momentum=1.0),
        ["bn"],
        severity="info",
        message="momentum=None",
    ),
    Case(
        "pytorch-momentum-none-exported", resnet_momentum(None), ["layer1.0.bn1"], severity="info"
    ),
    Case("onnx-momentum-above-1", lambda: conv_bn(momentum=1.5), ["bn"], message="outside [0, 1]"),
]
NEGATIVE = [
    Case("pytorch-default-0.1", lambda: exported("resnet_small"), []),
    Case("pytorch-0.01-converted-from-keras-0.99", resnet_momentum(0.01), []),
    Case("onnx-explicit-0.9", lambda: conv_bn(momentum=0.9), []),
    Case("onnx-default", lambda: conv_bn(), []),
    Case("onnx-0.5-at-the-limit", lambda: conv_bn(momentum=0.5), []),
    Case(
        "limit-raised-by-option",
        lambda: conv_bn(momentum=0.1),
        [],
        settings={"rule_options": {"suspicious-momentum": {"max-momentum": 0.95}}},
    ),
]


@pytest.mark.parametrize("case", POSITIVE + NEGATIVE, ids=lambda case: case.id)
def test_bn015(case: Case) -> None:
    check_case("BN015", case)


def test_evidence_shows_stored_and_converted_values() -> None:
    (finding,) = rule_findings("BN015", Case("e", resnet_momentum(0.99), ["layer1.0.bn1"]))
    assert finding.evidence["momentum"] == pytest.approx(0.99)
    assert finding.evidence["source_momentum"] == pytest.approx(0.01)
    assert "PyTorch" in finding.evidence["convention"]


def test_applies_in_training_too() -> None:
    """Momentum drives the running statistics while training: the rule is not phase-gated."""
    case = Case("t", lambda: conv_bn(momentum=0.1), ["bn"], settings={"phase": "training"})
    check_case("BN015", case)


def test_bare_weights_in_pytorch_convention() -> None:
    ones = {"scale": np.ones(2), "bias": np.zeros(2), "mean": np.zeros(2), "var": np.ones(2)}
    graph = bare_graph(
        {
            "ok": {**ones, "momentum": 0.1},
            "ported": {**ones, "momentum": 0.99, "source_momentum": 0.99},
            "frozen": {**ones, "momentum": 0.0, "source_momentum": 0.0},
            "cumulative": {**ones, "momentum": None},
        }
    )
    found = {f.scope: f for f in lint_bare(graph, "BN015")}
    assert sorted(found) == ["cumulative", "frozen", "ported"]
    assert found["ported"].severity.label == "warning"
    assert "stored as" not in found["ported"].message  # same convention: nothing translated
    assert found["cumulative"].severity.label == "info"
    assert found["frozen"].severity.label == "info"
