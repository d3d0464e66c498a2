"""The vectorised screens (bnlint.analysis.bn_screens) never hide a finding of BN005, BN006 or BN013.

Each rule runs twice on the same graphs: as shipped, and with its screen replaced by
"every BN". The findings must be identical (code, node, message, evidence), over BN
parameters chosen to sit on both sides of every threshold the screens use: float16's
range and smallest normal, variances that round to zero, eps <= 0, NaN and Inf, zero
scales, untrained statistics within and just beyond 2**-10, and producers with and
without bias, in float32 and float16 models, for every target dtype.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bnlint.analysis import bn_screens
from bnlint.config import Settings
from bnlint.engine.registry import load_rules
from bnlint.loaders.onnx import build_graph
from bnlint.rule import RuleContext
from tests.zoo.onnx_builder import GraphBuilder

F16_MAX, F16_NORMAL = 65504.0, 2.0**-14
SPECIAL = [
    # (scale, bias, mean, var, eps)
    ([1.0, 2.0, 0.5], [0.0, 0.1, -0.1], [0.0, 0.2, 0.1], [1.0, 0.5, 2.0], 1e-5),
    ([1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], 1e-5),  # untrained
    ([1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [9e-4, 0.0, 0.0], [1.0, 1.0009, 1.0], 1e-5),
    ([1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.1e-3, 0.0, 0.0], [1.0, 1.0, 1.0], 1e-5),
    ([1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.1, 0.2, 0.3], [1.0, 1.0, 1.0], 1e-5),  # dead
    ([1.0, 1.0, 1.0], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [0.0, 1.0, 1.0], 1e-5),  # zero var
    ([1.0, 1.0, 1.0], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [-0.5, 1.0, 1.0], 1e-5),  # negative
    ([1.0, 1.0, 1.0], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [1e-12, 1.0, 1.0], 0.0),  # eps 0
    ([1.0, 1.0, 1.0], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [3e-8, 1.0, 1.0], 1e-8),
    ([1.0, 1.0, 1.0], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [1e-7, 1.0, 1.0], 1e-9),
    ([1.0, 1.0, 1.0], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [1e-8, 1.0, 1.0], 1e-9),  # f16: 0
    ([1.0, np.nan, 1.0], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [1.0, 1.0, 1.0], 1e-5),
    ([1.0, 1.0, 1.0], [0.1, np.inf, 0.3], [0.1, 0.2, 0.3], [1.0, 1.0, 1.0], 1e-5),
    ([1.0, 1.0, 1.0], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [1.0, np.nan, 1.0], 1e-5),
    ([300.0, 1.0, 1.0], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [1e-5, 1.0, 1.0], 1e-5),  # s ~ 7e4
    ([200.0, 1.0, 1.0], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [1e-5, 1.0, 1.0], 1e-5),  # s ~ 4.5e4
    ([1e-5, 1.0, 1.0], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [1.0, 1.0, 1.0], 1e-5),  # s < normal
    ([7e-5, 1.0, 1.0], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [1.0, 1.0, 1.0], 1e-5),  # s > normal
    ([1.0, 1.0, 1.0], [7e4, 0.2, 0.3], [0.1, 0.2, 0.3], [1.0, 1.0, 1.0], 1e-5),  # big beta
    ([1.0, 1.0, 1.0], [0.1, 0.2, 0.3], [6.6e4, 0.2, 0.3], [1.0, 1.0, 1.0], 1e-5),
    ([1.0, 1.0, 1.0], [0.0, 0.2, 0.3], [6.0e4, 0.2, 0.3], [1.0, 1.0, 1.0], 1e-5),  # near max
    ([1.0, 1.0, 1.0], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [1e40, 1.0, 1.0], 1e-5),
    ([-2.0, 1.0, 0.5], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [4.0, 1.0, 1.0], 1e-5),
]


def _model(dtype: np.dtype, weight_scale: float, bias: bool, seed: int, mixed: bool = False):
    """A chain of Conv -> BN -> ReLU, one BN per parameter case; ``mixed`` stores the BN
    parameters as float32 under float16 activations (ONNX allows it since opset 15)."""
    from onnx import numpy_helper

    g = GraphBuilder(opset=15, seed=seed, dtype=dtype)
    x = g.input("x", [1, 3, 6, 6])
    rng = np.random.default_rng(seed)
    cases = list(SPECIAL)
    for _ in range(24):  # random ones around the thresholds, in log space
        var = 10.0 ** rng.uniform(-12, 2, 3)
        gamma = rng.choice([-1, 1], 3) * 10.0 ** rng.uniform(-6, 3, 3)
        mean = rng.choice([-1, 1], 3) * 10.0 ** rng.uniform(-5, 5, 3)
        beta = rng.normal(0, 10.0 ** rng.uniform(-3, 5), 3)
        cases.append((gamma, beta, mean, var, float(10.0 ** rng.uniform(-10, -1))))
    for number, (scale, beta, mean, var, eps) in enumerate(cases):
        conv = g.conv(x, 3, 1, bias=bias, pads=[0, 0, 0, 0])
        weight = next(t for t in g.initializers if t.name == f"conv{number}.weight")
        values = rng.normal(0, weight_scale, (3, 3, 1, 1)).astype(dtype)
        weight.CopyFrom(__import__("onnx").numpy_helper.from_array(values, weight.name))
        params = []
        for role, values in zip(("s", "b", "m", "v"), (scale, beta, mean, var), strict=True):
            name = f"bn{number}.{role}"
            if mixed:
                array = np.asarray(values, dtype=np.float32)
                g.initializers.append(numpy_helper.from_array(array, name))
                params.append(name)
            else:
                params.append(g.param(name, np.asarray(values, dtype=np.float64)))
        x = g.relu(g.bn(conv, params=params, eps=eps))
    return build_graph(g.model([x], infer=False), Path("m.onnx"), Settings())


def _findings(graph, code: str, target: str | None):
    rule = load_rules().get(code)
    ctx = RuleContext(
        rule=rule, phase="inference", options=dict(rule.spec.options), target_dtype=target
    )
    return [(f.code, f.node, f.message, repr(f.evidence)) for f in rule.check(graph, ctx)]


@pytest.mark.parametrize(
    "dtype,mixed", [(np.float32, False), (np.float16, False), (np.float16, True)]
)
@pytest.mark.parametrize("weight_scale,bias", [(0.5, False), (2e4, False), (1e-4, True)])
def test_screened_rules_report_exactly_what_the_exhaustive_rules_report(
    dtype, mixed, weight_scale, bias, monkeypatch
) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        screened_graph = _model(dtype, weight_scale, bias, 3, mixed)
        plain_graph = _model(dtype, weight_scale, bias, 3, mixed)
    targets = [None, "float16", "bfloat16", "int8"]
    screened = {
        (code, target): _findings(screened_graph, code, target)
        for code in ("BN005", "BN006", "BN013")
        for target in targets
    }
    every = lambda graph, *args: {bn.id for bn in graph.nodes_of("batch_norm")}  # noqa: E731
    monkeypatch.setattr(bn_screens, "untrained", every)
    monkeypatch.setattr(bn_screens, "degenerate", every)
    monkeypatch.setattr(bn_screens, "fold_hazards", every)
    for (code, target), found in screened.items():
        assert found == _findings(plain_graph, code, target), (code, target)
    assert any(screened[("BN006", None)]) and any(screened[("BN013", "float16")])
