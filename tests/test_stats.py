"""bnlint.analysis.bn_params: dtype ranges and rounding, BN parameter reading, int8 channel spread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bnlint.analysis.bn_params import bn_params, read_float64
from bnlint.analysis.float_formats import FLOAT_FORMATS, float_format, int8_channel_spread
from bnlint.config import Settings
from bnlint.loaders.onnx import build_graph
from tests.rules.param_models import conv_bn


@pytest.mark.parametrize("name", ["float16", "float32", "float64"])
def test_ranges_match_numpy(name: str) -> None:
    fmt, info = FLOAT_FORMATS[name], np.finfo(name)
    assert fmt.max == float(info.max)
    assert fmt.min_normal == float(info.tiny)
    assert fmt.min_subnormal == float(info.smallest_subnormal)


def test_bfloat16_rounding_matches_torch() -> None:
    import torch

    rng = np.random.default_rng(0)
    values = np.concatenate(
        [
            rng.normal(0, 1, 1000) * 10.0 ** rng.integers(-40, 38, 1000),
            [0.0, -0.0, 1.0, 3.3895e38, 3.4e38, 1e-40, 9.2e-41, 1 + 2**-8, 1 + 3 * 2**-8],
        ]
    )
    expected = torch.tensor(values, dtype=torch.float32).to(torch.bfloat16).double().numpy()
    np.testing.assert_array_equal(FLOAT_FORMATS["bfloat16"].round(values), expected)
    assert FLOAT_FORMATS["bfloat16"].max == float(torch.finfo(torch.bfloat16).max)
    assert FLOAT_FORMATS["bfloat16"].min_normal == float(torch.finfo(torch.bfloat16).tiny)


def test_float16_flushes_below_half_the_smallest_subnormal() -> None:
    fmt = FLOAT_FORMATS["float16"]
    assert fmt.round(1e-5) > 0  # PyTorch's default eps survives (as a subnormal)
    assert fmt.round(2.9e-8) == 0
    assert np.isinf(fmt.round(70000.0))


def test_integer_dtypes_have_no_float_format() -> None:
    assert float_format("int8") is None
    assert float_format(None) is None


def test_bn_params_are_float64_and_cached() -> None:
    model = conv_bn(4, dtype=np.float16)
    graph = build_graph(model, Path("m.onnx"), Settings())
    (bn,) = graph.nodes_of("batch_norm")
    params = bn_params(graph, bn)
    assert params.var.dtype == np.float64 and params.dtype == "float16"
    assert bn_params(graph, bn) is params
    scale = params.folded_scale()
    np.testing.assert_allclose(scale, params.scale / np.sqrt(params.var + params.eps))


def test_read_float64_refuses_non_parameters_and_huge_tensors() -> None:
    graph = build_graph(conv_bn(4), Path("m.onnx"), Settings())
    assert read_float64(graph, "x") == (None, "not a constant parameter")
    assert read_float64(graph, None) == (None, None)
    graph.params._shapes["bn.running_var"] = (1 << 25,)  # a shape no BN vector has
    array, why = read_float64(graph, "bn.running_var")
    assert array is None and "too large" in why


def test_int8_spread_counts_channels_below_the_threshold() -> None:
    per_channel = np.array([1.0, 0.5, 0.05, 0.01, 0.0, np.nan])
    found = int8_channel_spread(per_channel, 16.0)
    assert found["live_channels"] == 4
    assert found["affected"]["channels"] == [2, 3]
    assert found["affected_fraction"] == 0.5
    assert found["spread_ratio"] == pytest.approx(100.0)
    assert found["median_levels_affected"] == 3.5  # floor(127 * [0.05, 0.01]) = [6, 1]
    assert int8_channel_spread(np.array([1.0, 0.0]), 16.0) is None
