"""BN005 untrained-running-stats."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import Case, check_case, rule_findings
from tests.rules.param_models import bare_graph, bn_scopes, conv_bn, exported, lint_bare

C = 4
INITIAL = {"mean": np.zeros(C), "var": np.ones(C)}


def two_bns_one_new():
    """A trained backbone BN and a freshly added head BN (mean 0, var 1, gamma 1, beta 0)."""
    from tests.zoo.onnx_builder import GraphBuilder

    g = GraphBuilder()
    x = g.input("x", [1, 3, 8, 8])
    y = g.relu(g.bn(g.conv(x, C, name="conv"), name="backbone_bn"))
    return g.model([g.bn(g.conv(y, C, name="head"), name="head_bn", stats="untrained")])


POSITIVE = [
    Case(
        "resnet-small-never-trained",
        lambda: exported("resnet_small", fill=False),
        list(bn_scopes("resnet_small")),
        severity="warning",
        evidence={"affine_at_initial_values": True, "untrained_layers": "10 of 10"},
    ),
    Case(
        "initial-everything",
        lambda: conv_bn(C, scale=np.ones(C), bias=np.zeros(C), **INITIAL),
        ["bn"],
        message="never trained",
    ),
    Case(
        "trained-affine-but-initial-statistics",
        lambda: conv_bn(C, **INITIAL),
        ["bn"],
        message="statistics were lost",
        evidence={"affine_at_initial_values": False, "channels": C},
    ),
    Case(
        "float32-noise-around-initial-values",
        lambda: conv_bn(C, mean=np.full(C, 1e-8), var=np.full(C, 1 - 1e-7)),
        ["bn"],
    ),
    Case("float16-model", lambda: conv_bn(C, dtype=np.float16, **INITIAL), ["bn"]),
    Case(
        "only-the-new-head",
        two_bns_one_new,
        ["head_bn"],
        evidence={"untrained_layers": "1 of 2"},
    ),
]
NEGATIVE = [
    Case("resnet-small-trained", lambda: exported("resnet_small"), []),
    Case("trained-statistics", lambda: conv_bn(C), []),
    Case(
        "one-channel-off-the-initial-values",
        lambda: conv_bn(C, mean=np.zeros(C), var=np.array([1.0, 1.0, 1.0, 0.7])),
        [],
    ),
    Case(
        "fresh-statistics-are-expected-in-training",
        lambda: exported("resnet_small", fill=False),
        [],
        settings={"phase": "training"},
    ),
    Case("float16-trained", lambda: conv_bn(C, dtype=np.float16), []),
]


@pytest.mark.parametrize("case", POSITIVE + NEGATIVE, ids=lambda case: case.id)
def test_bn005(case: Case) -> None:
    check_case("BN005", case)


def test_evidence_carries_the_numbers() -> None:
    case = Case(
        "noise", lambda: conv_bn(C, mean=np.full(C, -(2.0**-27)), var=np.full(C, 1 - 2.0**-20))
    )
    (finding,) = rule_findings("BN005", case)
    assert finding.evidence["max_abs_mean"] == 2.0**-27
    assert finding.evidence["max_abs_var_minus_1"] == 2.0**-20


def test_runs_on_bare_weights_without_phase() -> None:
    trained = {**_values(), "mean": np.full(C, 0.3), "var": np.full(C, 0.8)}
    graph = bare_graph({"layer1.bn": {**_values(), **INITIAL}, "layer2.bn": trained})
    assert graph.facts.default_phase is None and not graph.facts.has_edges
    assert [f.scope for f in lint_bare(graph, "BN005")] == ["layer1.bn"]


def test_zero_counter_with_trained_statistics_is_silent() -> None:
    """Converted checkpoints and FrozenBatchNorm keep num_batches_tracked 0 next to real stats."""
    trained = {**_values(), "mean": np.full(C, 0.3), "var": np.full(C, 0.8)}
    graph = bare_graph({"bn": {**trained, "num_batches_tracked": 0}})
    assert lint_bare(graph, "BN005") == []


def test_zero_counter_with_initial_statistics_is_named() -> None:
    graph = bare_graph({"bn": {**_values(), **INITIAL, "num_batches_tracked": 0}})
    (finding,) = lint_bare(graph, "BN005")
    assert "num_batches_tracked is 0" in finding.message
    assert finding.evidence["num_batches_tracked"] == 0


def _values() -> dict[str, np.ndarray]:
    return {"scale": np.ones(C), "bias": np.zeros(C)}
