"""BN013 fold-precision-hazard (static half): folded values against the target dtype."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bnlint.analysis.bn_params import bn_params
from bnlint.analysis.folded_terms import folded_bias, folded_weight_absmax
from bnlint.config import Settings
from bnlint.fold import plan
from bnlint.loaders.onnx import build_graph
from tests.helpers import Case, check_case, rule_findings
from tests.rules.param_models import conv_bn, exported, initializer, set_initializer
from tests.zoo.onnx_builder import GraphBuilder

C = 8
F16 = {"target_dtype": "float16"}
INT8 = {"target_dtype": "int8"}


def values(role: str, index, value, **kwargs):
    def build():
        array = np.linspace(0.5, 1.5, C)
        array[index] = value
        return conv_bn(C, **{role: array}, **kwargs)

    return build


def decoder_with_dead_channel(eps: float = 1e-14):
    """The grouped ConvTranspose (32 -> 16, groups=2) of the zoo decoder, channel 11 var 0."""
    model = exported("convtranspose_decoder", tweak=[("decoder.4", "eps", eps)])
    var = initializer(model, "decoder.4.running_var").copy()
    var[11] = 0.0
    return set_initializer(model, "decoder.4.running_var", var)


def one_wide_channel():
    """Channel 0's variance is 1e-4 of the others': its folded weights are ~100x larger."""
    var = np.ones(C)
    var[0] = 1e-4
    return conv_bn(C, scale=np.ones(C), var=var)


def one_narrow_channel():
    scale = np.ones(C)
    scale[0] = 1e-3
    return conv_bn(C, scale=scale, var=np.ones(C))


def large_mean():
    from tests.fold_cases import large_mean as build

    return build()


def pruned_channels():
    from tests.fold_cases import pruned_channels as build

    return build()


POSITIVE = [
    Case(
        "float32-statistics-deployed-in-float16",
        values("var", 2, 0.0, eps=1e-12),
        ["bn"],
        settings=F16,
        severity="warning",
        message="folded scale reaches",
        evidence={"target_dtype": "float16", "dtype_source": "--target-dtype"},
    ),
    Case(
        "subnormal-scale-in-float16",
        values("scale", [1, 6], 1e-6),
        ["bn"],
        settings=F16,
        message="folded scale is below float16's normal range",
    ),
    Case(
        "running-variance-beyond-float16",
        values("var", 0, 1e6),
        ["bn"],
        settings=F16,
        message="running var reaches 1e+06",
    ),
    Case(
        "folded-bias-beyond-float16",
        lambda: conv_bn(C, mean=np.full(C, 2e4), var=np.full(C, 1e-4), scale=np.ones(C)),
        ["bn"],
        settings=F16,
        message="folded bias reaches",
    ),
    Case(
        "float16-model-own-dtype",
        values("var", 3, 0.0, eps=1e-11, dtype=np.float16),
        ["bn"],
        evidence={"target_dtype": "float16", "dtype_source": "model dtype"},
    ),
    Case(
        "bfloat16-subnormal-scale",
        values("scale", 4, 1e-39),
        ["bn"],
        settings={"target_dtype": "bfloat16"},
        message="bfloat16's normal range",
    ),
    Case("int8-one-wide-channel", one_wide_channel, ["bn"], settings=INT8, message="int8"),
    Case(
        "convtranspose-decoder-dead-channel-float16",
        decoder_with_dead_channel,
        ["decoder.4"],
        settings=F16,
        message="[11]",
    ),
    Case(
        "running-mean-1560-sigmas-from-zero",
        large_mean,
        ["bn"],
        message="1560 standard deviations from zero",
        evidence={"target_dtype": "float32"},
    ),
    Case(
        "convtranspose-decoder-dead-channel-int8",
        decoder_with_dead_channel,
        ["decoder.4"],
        settings=INT8,
        evidence={"quantization": "int8"},
    ),
]
NEGATIVE = [
    Case("pruned-channels-flush-harmlessly", pruned_channels, []),
    Case("pruned-channels-flush-harmlessly-in-float16", pruned_channels, [], settings=F16),
    Case("float32-statistics-kept-in-float32", values("var", 2, 0.0, eps=1e-12), []),
    Case("float16-model-ordinary", lambda: conv_bn(C, dtype=np.float16), [], settings=F16),
    Case("resnet-small-int8", lambda: exported("resnet_small"), [], settings=INT8),
    Case("mobilenet-float16", lambda: exported("mobilenet_block"), [], settings=F16),
    Case(
        "decoder-bfloat16",
        lambda: exported("convtranspose_decoder"),
        [],
        settings={"target_dtype": "bfloat16"},
    ),
    Case("int8-one-narrow-channel-is-a-minority", one_narrow_channel, [], settings=INT8),
    Case("int8-spread-is-float-safe", one_wide_channel, [], settings=F16),
    Case(
        "training-phase",
        values("var", 2, 0.0, eps=1e-12),
        [],
        settings={**F16, "phase": "training"},
    ),
]


@pytest.mark.parametrize("case", POSITIVE + NEGATIVE, ids=lambda case: case.id)
def test_bn013(case: Case) -> None:
    check_case("BN013", case)


def test_int8_evidence_names_the_spread_and_channels() -> None:
    (finding,) = rule_findings("BN013", Case("w", one_wide_channel, ["bn"], settings=INT8))
    int8 = finding.evidence["int8"]
    assert int8["spread_ratio"] > 50
    assert int8["affected"]["count"] == C - 1
    assert int8["affected"]["channels"] == list(range(1, C))
    assert int8["affected_fraction"] == (C - 1) / C


def test_int8_threshold_option() -> None:
    options = {"rule_options": {"fold-precision-hazard": {"int8-spread": 1000.0}}}
    case = Case("w", one_wide_channel, [], settings={**INT8, **options})
    check_case("BN013", case)


def test_grouped_conv_transpose_scales_axis_1_per_group() -> None:
    (finding,) = rule_findings(
        "BN013", Case("d", decoder_with_dead_channel, ["decoder.4"], settings=F16)
    )
    assert finding.evidence["folded_into"] == "decoder.3"
    assert finding.evidence["folded_scale_overflow"]["channels"] == [11]
    assert finding.evidence["folded_weight_overflow"]["channels"] == [11]


def _explicit_fold(kind: str, weight: np.ndarray, s: np.ndarray, groups: int = 1) -> np.ndarray:
    """The folded weight, per output channel, written out the slow way."""
    if kind == "conv":
        return np.stack([weight[o] * s[o] for o in range(s.size)])
    if kind == "conv_transpose":
        cin, per_group = weight.shape[0], weight.shape[1]
        rows = cin // groups
        out = []
        for o in range(s.size):
            group, j = divmod(o, per_group)
            out.append(weight[group * rows : (group + 1) * rows, j] * s[o])
        return np.stack(out)
    if kind == "gemm_transB":
        return np.stack([weight[o, :] * s[o] for o in range(s.size)])
    return np.stack([weight[..., o] * s[o] for o in range(s.size)])  # (in, out) layouts


def _graph_and_verdict(model):
    graph = build_graph(model, Path("m.onnx"), Settings())
    (verdict,) = [v for v in plan(graph) if v.foldable]
    return graph, verdict


@pytest.mark.parametrize(
    ("kind", "build_producer"),
    [
        ("conv", lambda g, x: g.conv(x, 6, groups=3, name="p")),
        ("conv_transpose", lambda g, x: g.conv_transpose(x, 6, groups=3, name="p")),
        ("gemm_transB", lambda g, x: g.gemm(g.flatten(x), 6, trans_b=1, name="p")),
        ("gemm", lambda g, x: g.gemm(g.flatten(x), 6, trans_b=0, beta=0.5, name="p")),
        ("matmul", lambda g, x: g.matmul(g.flatten(x), 6, cin=48, name="p")),
    ],
)
def test_folded_weight_and_bias_follow_the_producer_axis(kind, build_producer) -> None:
    g = GraphBuilder(seed=3)
    x = g.input("x", [2, 3, 4, 4] if kind.startswith("gemm") or kind == "matmul" else [1, 3, 4, 4])
    x = g.conv(x, 3, name="stem") if kind.startswith("conv") else x
    h = build_producer(g, x)
    model = g.model([g.bn(h, name="bn")])
    graph, verdict = _graph_and_verdict(model)
    params = bn_params(graph, verdict.bn)
    s = params.folded_scale()
    weight = graph.param(verdict.producer.input("weight")).astype(np.float64)
    groups = int(verdict.producer.attrs.get("groups", 1))
    expected = _explicit_fold(kind, weight, s, groups)
    got = folded_weight_absmax(graph, verdict.kind, verdict.producer, s)
    np.testing.assert_allclose(got, np.abs(expected).reshape(s.size, -1).max(axis=1), rtol=1e-12)
    bias_name = verdict.producer.input("bias")
    b = np.zeros(s.size) if bias_name is None else graph.param(bias_name).astype(np.float64)
    b = b * float(verdict.producer.attrs.get("beta", 1.0)) if kind == "gemm" else b
    expected_bias = (b - params.mean) * s + params.bias
    got_bias = folded_bias(graph, verdict.kind, verdict.producer, verdict.add, params, s)
    np.testing.assert_allclose(got_bias, expected_bias, rtol=1e-12)


def test_forward_fold_scales_input_channels() -> None:
    g = GraphBuilder(seed=5)
    x = g.input("x", [1, 4, 8, 8])
    model = g.model([g.conv(g.bn(x, name="bn"), 6, k=1, pads=[0, 0, 0, 0], name="conv")])
    graph, verdict = _graph_and_verdict(model)
    assert verdict.kind == "forward_conv"
    params = bn_params(graph, verdict.bn)
    s = params.folded_scale()
    weight = graph.param("conv.weight").astype(np.float64)
    folded = weight * s[None, :, None, None]
    got = folded_weight_absmax(graph, "forward_conv", verdict.producer, s)
    np.testing.assert_allclose(got, np.abs(folded).reshape(6, -1).max(axis=1), rtol=1e-12)
    shift = params.bias - params.mean * s
    expected_bias = graph.param("conv.bias") + weight[:, :, 0, 0] @ shift
    got_bias = folded_bias(graph, "forward_conv", verdict.producer, None, params, s)
    np.testing.assert_allclose(got_bias, expected_bias, rtol=1e-6)
