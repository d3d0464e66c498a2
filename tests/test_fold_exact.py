"""The algebraic level's parts: float64 kernels as the ONNX spec (checked against ONNX
Runtime), the criteria, and region evaluation that judges function, not form."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from bnlint.analysis.reference import batch_norm_inference, unit_roundoff
from bnlint.fold import bounds
from bnlint.fold.affine import BNAffine, fold_bias, fold_weight
from bnlint.fold.exact_ops import SizeLimit, conv, conv_transpose

RNG = np.random.default_rng(0)


def _ort(op: str, x, w, b, attrs) -> np.ndarray:
    import onnxruntime as ort

    node = helper.make_node(op, ["x", "w", "b"], ["y"], **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "xwb"],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"x": x.astype(np.float32), "w": w.astype(np.float32), "b": b.astype(np.float32)}
    return session.run(None, feeds)[0]


CONV_CASES = [
    (1, 1, 3, 1, 1, {"pads": [1, 0]}),
    (2, 2, 3, 2, 1, {"auto_pad": "SAME_UPPER"}),
    (2, 4, 3, 1, 2, {"pads": [2, 2, 2, 2]}),
    (2, 1, 2, 2, 1, {"auto_pad": "SAME_LOWER"}),
    (3, 2, 3, 2, 1, {"auto_pad": "VALID"}),
]


@pytest.mark.parametrize(("dims", "groups", "k", "stride", "dilation", "extra"), CONV_CASES)
def test_float64_convolutions_follow_onnx_runtime(dims, groups, k, stride, dilation, extra):
    cin, cout = 4, 8
    x = RNG.standard_normal((2, cin, *[7, 6, 5][:dims])).astype(np.float32).astype(float)
    w = RNG.standard_normal((cout, cin // groups, *[k] * dims)).astype(np.float32).astype(float)
    b = RNG.standard_normal(cout).astype(np.float32).astype(float)
    attrs = {"group": groups, "strides": [stride] * dims, "dilations": [dilation] * dims, **extra}
    np.testing.assert_allclose(conv(x, w, b, attrs), _ort("Conv", x, w, b, attrs), atol=1e-4)
    wt = RNG.standard_normal((cin, cout // groups, *[k] * dims)).astype(np.float32).astype(float)
    transposed = {"group": groups, "strides": [stride] * dims, "dilations": [dilation] * dims}
    if stride > 1:
        transposed["output_padding"] = [1] * dims
    ours = conv_transpose(x, wt, b, transposed)
    np.testing.assert_allclose(ours, _ort("ConvTranspose", x, wt, b, transposed), atol=1e-4)


def test_kernels_refuse_sizes_before_allocating() -> None:
    x = np.zeros((1, 1, 4, 4))
    w = np.zeros((1, 1, 1, 1))
    with pytest.raises(SizeLimit, match="refused before allocating"):
        conv_transpose(x, w, None, {"strides": [1 << 16, 1 << 16]})


def test_fold_algebra_matches_the_reference_batch_norm() -> None:
    params = {k: RNG.uniform(0.5, 1.5, 6) for k in ("scale", "bias", "mean", "var")}
    affine = BNAffine.from_params(**params, eps=1e-3)
    x = RNG.normal(0, 1, (5, 6))
    weight, bias = RNG.normal(0, 0.3, (6, 6)), RNG.normal(0, 0.1, 6)
    expected = batch_norm_inference(x @ weight.T + bias, **params, eps=1e-3)
    got = x @ fold_weight(weight, affine, "conv").T + fold_bias(bias, affine)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_the_algebraic_bound_is_per_element_and_dtype_scaled() -> None:
    exact = RNG.normal(0, 1, 100)
    mag = np.abs(exact) + 1.0
    one_rounding = exact * (1 + unit_roundoff("float32"))
    assert bounds.algebraic("y", exact, one_rounding, mag, "float32").ok
    assert not bounds.algebraic("y", exact, exact * (1 + 1e-4), mag, "float32").ok
    assert bounds.algebraic("y", exact, exact * (1 + 1e-4), mag, "float16").ok
    check = bounds.algebraic("y", exact, exact * (1 + 1e-4), mag, "float32")
    assert check.margin < 1 and check.error > check.bound


def test_an_underflowing_channel_is_no_relative_error_of_one() -> None:
    """A pruned channel's folded weight (1e-67) flushes to zero in float32: below the
    smallest normal number, not an error."""
    exact = np.array([1.0, 2.0, 1.5e-67])
    flushed = np.array([1.0, 2.0, 0.0])
    assert bounds.algebraic("y", exact, flushed, np.abs(exact), "float32").ok


def test_the_numeric_bound_follows_the_originals_own_rounding() -> None:
    exact = RNG.normal(0, 1, 1000)
    ours = exact + RNG.normal(0, 1e-6, 1000)  # the original model's runtime error
    theirs = exact + RNG.normal(0, 2e-6, 1000)  # the fold's: twice as noisy
    check = bounds.numeric("y", exact, ours, theirs, "float32")
    assert check.ok and check.reference_error == pytest.approx(np.abs(ours - exact).max())
    assert not bounds.numeric("y", exact, ours, exact + 1e-4, "float32").ok


def _model(nodes, initializers, dtype=TensorProto.FLOAT) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", dtype, [2, 3, 5, 5])],
        [helper.make_tensor_value_info("y", dtype, None)],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_regions_judge_function_not_form() -> None:
    """Conv -> BN against Conv -> Mul -> Add with the same numbers: equal; a wrong scale: not."""
    from bnlint.fold.regional import compare
    from tests.fold_sides import side_of

    w = RNG.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
    gamma, beta, mean, var = (RNG.uniform(0.5, 1.5, 4).astype(np.float32) for _ in range(4))
    inits = [
        onnx.numpy_helper.from_array(v, n)
        for v, n in ((w, "w"), (gamma, "g"), (beta, "b"), (mean, "m"), (var, "v"))
    ]
    original = _model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 4),
            helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"]),
        ],
        inits,
    )
    eps = float(np.float32(1e-5))
    mult = gamma.astype(float) / np.sqrt(var.astype(float) + eps)
    for scale, ok in ((1.0, True), (1.001, False)):
        extra = [
            onnx.numpy_helper.from_array(
                (mult * scale).reshape(4, 1, 1).astype(np.float32), "mult"
            ),
            onnx.numpy_helper.from_array(
                (beta - mean * mult).reshape(4, 1, 1).astype(np.float32), "shift"
            ),
        ]
        folded = _model(
            [
                helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 4),
                helper.make_node("Mul", ["c", "mult"], ["cm"]),
                helper.make_node("Add", ["cm", "shift"], ["y"]),
            ],
            inits[:1] + extra,
        )
        results = [r for r in compare(side_of(original), side_of(folded)) if r.changed]
        assert len(results) == 1 and results[0].ok is ok


@pytest.mark.parametrize(("k", "pads"), [(7, 3), (7, 0), (9, 0)])
def test_a_reduced_probe_still_sees_every_kernel_tap(k: int, pads: int) -> None:
    """Large inputs run on a small probe (fewest positions that give every tap an interior
    output); one corner tap of one channel folded wrongly is still caught. A VALID 9x9
    kernel gets a 10x10 probe (the former fixed 8x8 one could not run it)."""
    from bnlint.fold.regional import compare
    from tests.fold_sides import side_of

    cout = 4
    w = RNG.normal(0, 0.3, (cout, 3, k, k)).astype(np.float32)
    gamma, beta, mean = (RNG.uniform(0.5, 1.5, cout).astype(np.float32) for _ in range(3))
    var = RNG.uniform(0.5, 1.5, cout).astype(np.float32)

    def model(nodes, arrays) -> onnx.ModelProto:
        inits = [onnx.numpy_helper.from_array(v, n) for n, v in arrays.items()]
        graph = helper.make_graph(
            nodes,
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 48, 48])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            inits,
        )
        made = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        made.ir_version = 8
        return made

    original = model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[pads] * 4),
            helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"]),
        ],
        {"w": w, "g": gamma, "b": beta, "m": mean, "v": var},
    )
    mult = gamma.astype(float) / np.sqrt(var.astype(float) + float(np.float32(1e-5)))
    for corner, ok in ((1.0, True), (1.01, False)):
        folded_w = w.astype(float) * mult.reshape(cout, 1, 1, 1)
        folded_w[2, 1, 0, k - 1] *= corner
        folded = model(
            [helper.make_node("Conv", ["x", "wf", "bf"], ["y"], pads=[pads] * 4)],
            {"wf": folded_w.astype(np.float32), "bf": (beta - mean * mult).astype(np.float32)},
        )
        (result,) = [r for r in compare(side_of(original), side_of(folded)) if r.changed]
        assert result.probes["x"].shape[2:] == (k + 1, k + 1)  # reach + period, not 48
        assert result.ok is ok
