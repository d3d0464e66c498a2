"""BN010 channel-mismatch."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from tests.helpers import Case, check_case, rule_findings
from tests.rules.param_models import (
    bare_graph,
    exported,
    initializer,
    lint_bare,
    set_initializer,
)
from tests.zoo.onnx_builder import GraphBuilder


def bn_with_shapes(shapes: dict[str, tuple[int, ...]], *, conv_out: int = 4, shaped: bool = True):
    """x -> Conv(conv_out) -> Relu -> BN with parameters of the given shapes (default (4,)).

    ``shaped=False`` declares ``x`` without a shape, so shape inference cannot tell the
    BN's input channels and the rule has to ask the Conv.
    """

    def build():
        g = GraphBuilder()
        if shaped:
            x = g.input("x", [1, 3, 8, 8])
        else:
            g.inputs.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, None))
            g.channels[x := "x"] = 3
        h = g.relu(g.conv(x, conv_out, name="conv"))
        params = [
            g.param(f"bn.{role}", np.ones(shapes.get(role, (4,))))
            for role in ("scale", "bias", "mean", "var")
        ]
        return g.model([g.bn(h, name="bn", params=params, c=4)])

    return build


def grouped_deconv_bn(bn_channels: int):
    """ConvTranspose(16 -> 8, groups=2): weight (16, 4, 2, 2), so 8 output channels."""

    def build():
        g = GraphBuilder()
        g.inputs.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, None))
        g.channels["x"] = 16
        h = g.conv_transpose("x", 8, groups=2, name="deconv")
        return g.model([g.bn(h, name="bn", c=bn_channels)])

    return build


def mlp_with_short_running_mean():
    model = exported("mlp_bn")
    mean = initializer(model, "net.1.running_mean")
    return set_initializer(model, "net.1.running_mean", mean[:32])


POSITIVE = [
    Case(
        "mlp-running-mean-too-short",
        mlp_with_short_running_mean,
        ["net.1"],
        severity="error",
        message="the input has 64 channels (from the input shape) but mean has 32",
    ),
    Case(
        "variance-longer-than-the-rest",
        bn_with_shapes({"var": (8,)}),
        ["bn"],
        message="parameter shapes differ: scale [4], bias [4], mean [4], var [8]",
    ),
    Case(
        "parameters-agree-but-conv-has-more-channels",
        bn_with_shapes({}, conv_out=6),
        ["bn"],
        evidence={"input_channels": 6, "channels_from": "input shape"},
    ),
    Case(
        "scale-not-1d", bn_with_shapes({"scale": (1, 4)}), ["bn"], message="not 1-D: scale [1, 4]"
    ),
    Case(
        "length-one-vectors-would-broadcast",
        bn_with_shapes(dict.fromkeys(("scale", "bias", "mean", "var"), (1,))),
        ["bn"],
    ),
    Case(
        "unknown-input-shape-asks-the-conv",
        bn_with_shapes({}, conv_out=6, shaped=False),
        ["bn"],
        evidence={"input_channels": 6, "channels_from": "Conv 'conv'", "producer": "conv"},
    ),
    Case(
        "unknown-input-shape-grouped-conv-transpose",
        grouped_deconv_bn(4),
        ["bn"],
        evidence={"input_channels": 8, "producer": "deconv"},
    ),
]
NEGATIVE = [
    Case("conv-bn", bn_with_shapes({}), []),
    Case("mlp-bn1d-on-features", lambda: exported("mlp_bn"), []),
    Case("transformer-bn1d-on-transposed-features", lambda: exported("transformer_bn1d"), []),
    Case("convtranspose-decoder-grouped", lambda: exported("convtranspose_decoder"), []),
    Case("unknown-input-shape-matching-conv", bn_with_shapes({}, shaped=False), []),
    Case("unknown-input-shape-matching-grouped-deconv", grouped_deconv_bn(8), []),
]


@pytest.mark.parametrize("case", POSITIVE + NEGATIVE, ids=lambda case: case.id)
def test_bn010(case: Case) -> None:
    check_case("BN010", case)


def test_reads_no_parameter_values() -> None:
    """Shapes come from the tensor table; a mismatched model is diagnosed without loading."""
    from pathlib import Path

    from bnlint.config import Settings
    from bnlint.engine.registry import load_rules
    from bnlint.loaders.onnx import build_graph
    from bnlint.rule import RuleContext

    graph = build_graph(bn_with_shapes({"var": (8,)})(), Path("m.onnx"), Settings())
    loaded_before = set(graph.params.loaded_names())
    rule = load_rules().get("BN010")
    findings = list(rule.check(graph, RuleContext(rule=rule, phase="inference", options={})))
    assert [f.node for f in findings] == ["bn"]
    assert set(graph.params.loaded_names()) == loaded_before


def test_runs_on_bare_weights_without_phase() -> None:
    ok = {"scale": np.ones(3), "bias": np.zeros(3), "mean": np.zeros(3), "var": np.ones(3)}
    graph = bare_graph({"good": ok, "bad": {**ok, "mean": np.zeros(5)}})
    (finding,) = lint_bare(graph, "BN010")
    assert finding.scope == "bad"
    assert finding.evidence["param_shapes"]["mean"] == [5]


def test_input_channels_are_reported_for_every_role() -> None:
    (finding,) = rule_findings("BN010", Case("c", bn_with_shapes({}, conv_out=6), ["bn"]))
    assert "scale has 4, bias has 4, mean has 4, var has 4" in finding.message
