"""BN014 suspicious-epsilon."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import Case, check_case, rule_findings
from tests.rules.param_models import bare_graph, bn_scopes, conv_bn, exported, lint_bare
from tests.zoo.onnx_builder import GraphBuilder

MOBILENET = bn_scopes("mobilenet_block")
ODD_ONE = MOBILENET[3]


def mobilenet_eps(default: float, **overrides: float):
    """The zoo MobileNet with every BN's eps set to ``default`` except ``overrides``."""
    tweak = [(scope, "eps", overrides.get(scope, default)) for scope in MOBILENET]
    return lambda: exported("mobilenet_block", tweak=tweak)


def chain(eps_values: list[float]):
    def build():
        g = GraphBuilder()
        h = g.input("x", [1, 3, 8, 8])
        for index, eps in enumerate(eps_values):
            h = g.relu(g.bn(g.conv(h, 4), name=f"bn{index}", eps=eps))
        return g.model([h])

    return build


POSITIVE = [
    Case("eps-zero", lambda: conv_bn(eps=0.0), ["bn"], severity="warning", message="eps is 0"),
    Case("eps-negative", lambda: conv_bn(eps=-1e-5), ["bn"], message="nothing keeps"),
    Case(
        "batchnorm2d-second-positional-argument",
        lambda: exported("resnet_small", tweak=[("layer1.0.bn1", "eps", 32.0)]),
        ["layer1.0.bn1"],
        message="implausibly large",
    ),
    Case(
        "float16-model-eps-vanishes",
        lambda: conv_bn(dtype=np.float16, eps=1e-9),
        ["bn"],
        message="rounds to 0 in the dtype float16",
    ),
    Case(
        "float32-model-deployed-in-float16",
        lambda: conv_bn(eps=1e-9),
        ["bn"],
        settings={"target_dtype": "float16"},
        message="target dtype float16",
    ),
    Case(
        "one-layer-rebuilt-with-the-default",
        mobilenet_eps(1e-3, **{ODD_ONE: 1e-5}),
        [ODD_ONE],
        message=f"differs from the 0.001 used by {len(MOBILENET) - 1} of {len(MOBILENET)}",
        evidence={"inconsistent": True},
    ),
    Case("tie-keeps-the-first-layers-eps", chain([1e-3, 1e-5]), ["bn1"]),
]
NEGATIVE = [
    Case("resnet-small-eps-1e-5-stored-as-float32", lambda: exported("resnet_small"), []),
    Case("eps-1e-3-everywhere", mobilenet_eps(1e-3), []),
    Case("keras-eps-1.001e-5-everywhere", chain([1.001e-5] * 3), []),
    Case("float16-model-default-eps", lambda: conv_bn(dtype=np.float16), []),
    Case("float16-model-eps-1e-3", lambda: conv_bn(dtype=np.float16, eps=1e-3), []),
    Case("tiny-eps-in-float32", lambda: conv_bn(eps=1e-9), []),
    Case("eps-at-the-limit", lambda: conv_bn(eps=0.1), []),
    Case(
        "mixed-eps-with-consistency-off",
        mobilenet_eps(1e-3, **{ODD_ONE: 1e-5}),
        [],
        settings={"rule_options": {"suspicious-epsilon": {"consistency": False}}},
    ),
]


@pytest.mark.parametrize("case", POSITIVE + NEGATIVE, ids=lambda case: case.id)
def test_bn014(case: Case) -> None:
    check_case("BN014", case)


def test_float32_storage_is_compared_with_tolerance() -> None:
    model = exported("resnet_small")
    eps = [
        a.f
        for n in model.graph.node
        if n.op_type == "BatchNormalization"
        for a in n.attribute
        if a.name == "epsilon"
    ]
    assert eps and all(value != 1e-5 and abs(value - 1e-5) < 1e-12 for value in eps)
    mixed = bare_graph(
        {
            "a": {**_ones(), "eps": 1e-5},
            "b": {**_ones(), "eps": float(np.float32(1e-5))},
            "c": {**_ones(), "eps": 1e-3},
        }
    )
    (finding,) = lint_bare(mixed, "BN014")
    assert finding.scope == "c"
    assert finding.evidence["eps_histogram"] == [
        {"eps": 1e-5, "count": 2},
        {"eps": 1e-3, "count": 1},
    ]


def test_histogram_and_usual_eps_in_evidence() -> None:
    case = Case("odd", mobilenet_eps(1e-3, **{ODD_ONE: 1e-5}), [ODD_ONE])
    (finding,) = rule_findings("BN014", case)
    assert finding.evidence["usual_eps"] == pytest.approx(1e-3)
    assert finding.evidence["eps"] == pytest.approx(1e-5)
    counts = sorted(entry["count"] for entry in finding.evidence["eps_histogram"])
    assert counts == [1, len(MOBILENET) - 1]


def test_max_eps_option() -> None:
    settings = {"rule_options": {"suspicious-epsilon": {"max-eps": 0.01}}}
    check_case("BN014", Case("o", lambda: conv_bn(eps=0.05), ["bn"], settings=settings))


def test_runs_on_bare_weights_without_phase() -> None:
    graph = bare_graph({"a": {**_ones(), "eps": 0.0}, "b": {**_ones(), "eps": 0.0}})
    assert sorted(f.scope for f in lint_bare(graph, "BN014")) == ["a", "b"]


def _ones() -> dict[str, np.ndarray]:
    return {"scale": np.ones(2), "bias": np.zeros(2), "mean": np.zeros(2), "var": np.ones(2)}
