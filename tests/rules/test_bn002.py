"""BN002 small-batch-statistics."""

from __future__ import annotations

import numpy as np
import pytest

from bnlint.api import lint
from tests.helpers import Case, check_case, rule_findings
from tests.rules.torch_export import export_zoo
from tests.zoo.onnx_builder import GraphBuilder

CODE = "BN002"
OPTIONS = "small-batch-statistics"
TRAINING = {"phase": "training"}


def conv_and_pooled_bn(batch: int | str):
    """Conv-BN-ReLU, global pool, flatten, Linear, BatchNorm1d on (N, C) features."""

    def build():
        g = GraphBuilder()
        x = g.input("x", [batch, 3, 8, 8])
        h = g.relu(g.bn(g.conv(x, 8, bias=False), name="bn_conv"))
        features = g.gemm(g.flatten(g.global_pool(h)), 16, name="fc", bias=False)
        return g.model([g.bn(features, name="bn_fc")])

    return build


def mixed_training_modes():
    """One BN computes batch statistics, one is frozen (inference mode) in the same graph."""
    g = GraphBuilder(opset=15)
    x = g.input("x", [2, 3, 8, 8])
    h = g.relu(g.bn(g.conv(x, 8), name="frozen"))
    return g.model([g.relu(g.bn(g.conv(h, 8), name="trained", training=True))])


def tokens_as_rows():
    """(N, L, C) tokens reshaped to (N*L, C) rows before BatchNorm1d: N*L values per channel."""
    g = GraphBuilder()
    x = g.input("x", [2, 16, 32])
    (rows,) = g.node("Reshape", [x, g.param("rows", np.array([-1, 32]))], name="to_rows")
    return g.model([g.bn(rows, name="bn_rows", c=32)])


def spatial_symbolic():
    g = GraphBuilder()
    x = g.input("x", [8, 3, "H", "W"])
    return g.model([g.relu(g.bn(g.conv(x, 8), name="bn"))])


POSITIVE = [
    Case(
        "batch-1-pooled-and-conv",
        conv_and_pooled_bn(1),
        ["bn_conv", "bn_fc"],
        settings=TRAINING,
        evidence={"batch": 1, "batch_source": "input shape of 'x'"},
    ),
    Case(
        "train-batch-size-from-cli",
        conv_and_pooled_bn("N"),
        ["bn_conv", "bn_fc"],
        settings={**TRAINING, "train_batch_size": 4},
        severity="warning",
        evidence={"batch": 4, "batch_source": "--train-batch-size"},
    ),
    Case(
        "few-values-per-channel-on-features",
        conv_and_pooled_bn(8),
        ["bn_fc"],
        settings=TRAINING,
        message="8 values per channel, below 16",
        evidence={"values_per_channel": 8, "exact": True},
    ),
    Case(
        "batch-from-input-shape-option",
        conv_and_pooled_bn("N"),
        ["bn_conv", "bn_fc"],
        settings={**TRAINING, "input_shapes": {"x": (2, 3, 8, 8)}},
        evidence={"batch": 2, "batch_source": "--input-shape"},
    ),
    Case("only-the-training-bn", mixed_training_modes, ["trained"], settings=TRAINING),
    Case(
        "finetune-phase",
        conv_and_pooled_bn(1),
        ["bn_conv", "bn_fc"],
        settings={"phase": "finetune"},
    ),
]
NEGATIVE = [
    Case("inference-phase", conv_and_pooled_bn(1), []),
    Case(
        "large-train-batch",
        conv_and_pooled_bn(1),
        [],
        settings={**TRAINING, "train_batch_size": 32},
    ),
    Case("symbolic-batch-unknown", conv_and_pooled_bn("N"), [], settings=TRAINING),
    Case(
        "tokens-count-as-values",
        tokens_as_rows,
        [],
        settings={**TRAINING, "rule_options": {OPTIONS: {"min-batch-size": 2}}},
    ),
    Case(
        "thresholds-lowered",
        conv_and_pooled_bn(8),
        [],
        settings={**TRAINING, "rule_options": {OPTIONS: {"min-values-per-channel": 8}}},
    ),
]


@pytest.mark.parametrize("case", POSITIVE + NEGATIVE, ids=lambda case: case.id)
def test_bn002(case: Case) -> None:
    check_case(CODE, case)


def test_one_value_per_channel_is_an_error() -> None:
    case = Case("batch-1", conv_and_pooled_bn(1), settings=TRAINING)
    by_node = {finding.node: finding for finding in rule_findings(CODE, case)}
    assert by_node["bn_fc"].severity.label == "error"
    assert by_node["bn_fc"].evidence["values_per_channel"] == 1
    assert by_node["bn_conv"].severity.label == "warning"
    assert by_node["bn_conv"].evidence["values_per_channel"] == 64


def test_reshaped_rows_count_batch_times_tokens() -> None:
    case = Case("rows", tokens_as_rows, settings={**TRAINING, "train_batch_size": 4})
    (finding,) = rule_findings(CODE, case)
    assert finding.evidence["values_per_channel"] == 4 * 16


@pytest.mark.parametrize("build", [conv_and_pooled_bn("N"), spatial_symbolic])
def test_symbolic_shapes_raise_bn904_once_per_model(build) -> None:
    report = lint(build(), select=[CODE], phase="training")
    codes = [finding.code for finding in report.findings]
    assert codes == ["BN904"], codes
    assert report.findings[0].evidence["rule"] == CODE
    assert report.findings[0].node is None


def test_real_networks() -> None:
    resnet = Case("resnet", lambda: export_zoo("resnet_small"))
    assert rule_findings(CODE, resnet) == []  # inference phase
    resnet.settings = TRAINING  # batch 1 from the exported input shape
    findings = rule_findings(CODE, resnet)
    assert len(findings) == 10 and findings[0].evidence["batch_source"].startswith("input shape")
    resnet.settings = {**TRAINING, "train_batch_size": 32}
    assert rule_findings(CODE, resnet) == []
    resnet.settings = {**TRAINING, "train_batch_size": 2}
    findings = rule_findings(CODE, resnet)
    assert len(findings) == 10 and {f.severity.label for f in findings} == {"warning"}

    # TransformerBN1d declares batch 2 in its input shape; BN on (2, 64, 16) has 32 values.
    transformer = Case("transformer", lambda: export_zoo("transformer_bn1d"), settings=TRAINING)
    findings = rule_findings(CODE, transformer)
    assert [f.scope for f in findings] == ["layers.0.bn", "layers.1.bn"]
    assert findings[0].evidence["values_per_channel"] == 32
    assert findings[0].evidence["batch_source"].startswith("input shape of")
