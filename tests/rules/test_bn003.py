"""BN003 batchnorm-training-mode-at-inference."""

from __future__ import annotations

import pytest

from tests.helpers import Case, check_case
from tests.zoo.onnx_builder import GraphBuilder


def conv_bn_relu(opset: int, training: bool, extra_outputs: int | None = None):
    def build():
        g = GraphBuilder(opset=opset)
        x = g.input("x", ["N", 3, 8, 8])
        y = g.relu(g.bn(g.conv(x, 4), name="bn", training=training, extra_outputs=extra_outputs))
        return g.model([y])

    return build


POSITIVE = [
    Case(
        "opset15-training-mode",
        conv_bn_relu(15, True),
        ["bn"],
        severity="error",
        evidence={"training_evidence": "training_mode=1"},
    ),
    Case("opset14-training-mode-one-output", conv_bn_relu(14, True, extra_outputs=0), ["bn"]),
    Case("opset9-five-outputs", conv_bn_relu(9, True), ["bn"], message="5 outputs"),
    Case("opset7-three-outputs", conv_bn_relu(7, True, extra_outputs=2), ["bn"]),
    Case("opset6-is-test-0", conv_bn_relu(6, True, extra_outputs=0), ["bn"], message="is_test=0"),
]
NEGATIVE = [
    Case("opset15-inference", conv_bn_relu(15, False), []),
    Case("opset9-single-output", conv_bn_relu(9, False), []),
    Case("opset6-is-test-1", conv_bn_relu(6, False), []),
    # Training-mode BN is expected in a training graph.
    Case("training-phase", conv_bn_relu(15, True), [], settings={"phase": "training"}),
]


@pytest.mark.parametrize("case", POSITIVE + NEGATIVE, ids=lambda case: case.id)
def test_bn003(case: Case) -> None:
    check_case("BN003", case)
