"""ONNX models whose running statistics are *exactly* those of a known input distribution.

Inputs are independent Gaussian pixels, channel ``k`` with mean ``MEANS[k]`` and standard
deviation ``STDS[k]``. The path to every BN is linear (Conv, BN, Conv 1x1, BN, no
padding), so each BN input's population mean and variance follow in closed form from the
weights; the models store exactly those. In-distribution samples therefore match up to
sampling error alone, and any other input distribution is a known, computable drift.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MEANS = np.array([0.8, -0.2, -0.6])
STDS = np.array([1.0, 0.4, 1.6])
SIZE = 8
EPS = 1e-5


def samples(count: int, seed: int, means: Sequence[float] = MEANS, stds=STDS) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((count, 3, SIZE, SIZE))
    values = noise * np.asarray(stds)[None, :, None, None] + np.asarray(means)[None, :, None, None]
    return values.astype(np.float32)


def _conv_moments(weight: np.ndarray, bias: np.ndarray, mean: np.ndarray, cov: np.ndarray):
    """Mean and covariance (over output channels, one position) of a valid convolution of
    independent pixels whose channel means are ``mean`` and channel covariance ``cov``
    (pixels of different positions independent)."""
    taps = weight.reshape(weight.shape[0], weight.shape[1], -1)  # (out, in, taps)
    out_mean = bias + taps.sum(axis=2) @ mean
    out_cov = np.einsum("aks,kl,bls->ab", taps, cov, taps)
    return out_mean, out_cov


class LinearNet:
    """x -> Conv 3x3 (3->6) -> BN1 -> Conv 1x1 (6->5) -> BN2, with exact statistics."""

    def __init__(
        self, seed: int = 0, stale_second: bool = False, boundary: tuple[str, float] | None = None
    ) -> None:
        """``boundary=("mean", 0.5)`` stores BN1's running mean exactly 0.5 running standard
        deviations below the true mean; ``("variance", 2.0)`` its running variance so that
        (var + eps) / (running var + eps) is exactly 2. BN2's statistics stay exact for
        what BN1 then outputs."""
        rng = np.random.default_rng(seed)
        self.w1 = rng.standard_normal((6, 3, 3, 3)) * 0.4
        self.b1 = rng.standard_normal(6) * 0.2
        self.g1, self.beta1 = 1 + 0.2 * rng.standard_normal(6), 0.1 * rng.standard_normal(6)
        self.w2 = rng.standard_normal((5, 6, 1, 1)) * 0.5
        self.g2, self.beta2 = 1 + 0.2 * rng.standard_normal(5), 0.1 * rng.standard_normal(5)
        mean1, cov1 = _conv_moments(self.w1, self.b1, MEANS, np.diag(STDS**2))
        self.m1, self.v1 = mean1, np.diag(cov1)
        if boundary is not None and boundary[0] == "variance":
            self.v1 = (self.v1 + EPS) / boundary[1] - EPS
        if boundary is not None and boundary[0] == "mean":
            self.m1 = mean1 - boundary[1] * np.sqrt(self.v1 + EPS)
        # BN1 output: g1 (y - m1) / sqrt(v1 + eps) + beta1, a per-channel affine map
        scale = self.g1 / np.sqrt(self.v1 + EPS)
        mean_bn1 = self.beta1 + scale * (mean1 - self.m1)
        cov_bn1 = cov1 * np.outer(scale, scale)
        mean2, cov2 = _conv_moments(self.w2, np.zeros(5), mean_bn1, cov_bn1)
        self.m2, self.v2 = mean2, np.diag(cov2)
        if stale_second:  # the second conv "fine-tuned" after its BN's statistics were taken
            self.w2 = self.w2 * 1.8 + 0.3 * rng.standard_normal(self.w2.shape)

    def model(self, batch: int | str = "N", dtype: type = np.float32) -> onnx.ModelProto:
        f = dtype
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        inits = [
            numpy_helper.from_array(np.asarray(value, dtype=f), name)
            for name, value in {
                "w1": self.w1,
                "b1": self.b1,
                "g1": self.g1,
                "beta1": self.beta1,
                "m1": self.m1,
                "v1": self.v1,
                "w2": self.w2,
                "g2": self.g2,
                "beta2": self.beta2,
                "m2": self.m2,
                "v2": self.v2,
            }.items()
        ]
        nodes = [
            helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1"),
            helper.make_node(
                "BatchNormalization",
                ["c1", "g1", "beta1", "m1", "v1"],
                ["n1"],
                name="bn1",
                epsilon=EPS,
            ),
            helper.make_node("Conv", ["n1", "w2"], ["c2"], name="conv2"),
            helper.make_node(
                "BatchNormalization",
                ["c2", "g2", "beta2", "m2", "v2"],
                ["y"],
                name="bn2",
                epsilon=EPS,
            ),
        ]
        graph = helper.make_graph(
            nodes,
            "linear_net",
            [helper.make_tensor_value_info("x", elem, [batch, 3, SIZE, SIZE])],
            [helper.make_tensor_value_info("y", elem, [batch, 5, SIZE - 2, SIZE - 2])],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
        model.ir_version = 8
        return model


def gemm_bn1d(seed: int = 0) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """x (N, 4) -> Gemm -> BN on (N, 6): exact statistics for x ~ N(MEAN4, diag(STD4^2))."""
    rng = np.random.default_rng(seed)
    mean_x, std_x = np.array([1.0, -2.0, 0.5, 0.0]), np.array([1.0, 2.0, 0.5, 1.5])
    w = rng.standard_normal((6, 4)) * 0.5
    b = rng.standard_normal(6) * 0.1
    m = w @ mean_x + b
    v = (w**2) @ (std_x**2)
    f = np.float32
    inits = [
        numpy_helper.from_array(np.asarray(value, dtype=f), name)
        for name, value in {
            "w": w,
            "b": b,
            "g": np.ones(6),
            "beta": np.zeros(6),
            "m": m,
            "v": v,
        }.items()
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="fc", transB=1),
        helper.make_node("BatchNormalization", ["h", "g", "beta", "m", "v"], ["y"], name="bn"),
    ]
    graph = helper.make_graph(
        nodes,
        "gemm_bn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    return model, mean_x, std_x
