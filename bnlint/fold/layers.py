"""A weighted node as numbers, and per-channel error measures between two of them.

Used to name the bug class of a fold the algebraic level found wrong
(:mod:`bnlint.fold.diagnose`): the verdict itself comes from evaluating both regions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnlint.fold.affine import BNAffine, Linear, channel_rows, fold_bias, fold_weight
from bnlint.fold.affine import forward_fold as forward_fold_math
from bnlint.graph import ModelGraph, Node

ALGEBRA_ULPS = 16  # a fold may round a handful of times (scale, product, cast)


@dataclass(frozen=True)
class Layer:
    """A weighted node as numbers: ``family`` conv | conv_transpose | linear (weight (K, N))."""

    family: str
    weight: np.ndarray
    bias: np.ndarray | None
    weight_dtype: str
    groups: int = 1
    beta: float = 1.0  # Gemm's beta, already applied to ``bias``; kept to name beta bugs
    structure: tuple = ()


def read_layer(graph: ModelGraph, node: Node, add: Node | None = None) -> Layer | None:
    """The weights of ``node`` (and the constant of its bias ``add``), or None if unknown."""
    weight_name = node.input("weight")
    weight = graph.param(weight_name)
    if weight is None or node.op not in ("conv", "conv_transpose", "linear"):
        return None
    dtype = graph.dtype(weight_name) or "float32"
    bias_array = graph.param(node.input("bias"))
    bias = None if bias_array is None else np.asarray(bias_array, dtype=np.float64)
    attrs = node.attrs
    if node.op in ("conv", "conv_transpose"):
        structure = tuple(
            (key, _plain(attrs.get(key)))
            for key in ("strides", "pads", "dilations", "auto_pad", "output_padding")
        )
        return Layer(
            node.op,
            np.asarray(weight, dtype=np.float64),
            bias,
            dtype,
            int(attrs.get("groups", 1)),
            structure=structure,
        )
    if attrs.get("matmul"):
        if add is not None:
            constant = next((t for t in add.inputs if graph.is_constant(t)), None)
            bias = None if constant is None else np.asarray(graph.param(constant), np.float64)
        return Layer("linear", np.asarray(weight, dtype=np.float64), bias, dtype)
    linear = Linear.from_gemm(
        weight,
        bias,
        float(attrs.get("alpha", 1.0)),
        float(attrs.get("beta", 1.0)),
        int(attrs.get("transB", 0)),
    )
    beta = float(attrs.get("beta", 1.0))
    structure = (("transA", int(attrs.get("transA", 0))),)
    return Layer("linear", linear.weight, linear.bias, dtype, beta=beta, structure=structure)


def _plain(value):
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class Expected:
    weight: np.ndarray
    bias: np.ndarray
    bias_scale: np.ndarray  # magnitude of the terms that make up each expected bias


def bn_terms(graph: ModelGraph, bn: Node) -> tuple[BNAffine, dict[str, np.ndarray], float]:
    params = {
        role: np.asarray(graph.param(bn.input(role)), dtype=np.float64).reshape(-1)
        for role in ("scale", "bias", "mean", "var")
    }
    eps = float(bn.attrs.get("eps", 1e-5))
    return BNAffine.from_params(**params, eps=eps), params, eps


def expected_fold(layer: Layer, affine: BNAffine, params: dict, kind: str) -> Expected:
    mult = affine.mult
    if kind == "forward_conv":
        weight, bias = forward_fold_math(layer.weight, layer.bias, affine)
        terms = np.abs(layer.weight) * np.abs(affine.shift).reshape(
            (1, -1) + (1,) * (layer.weight.ndim - 2)
        )
        base = np.zeros_like(bias) if layer.bias is None else np.abs(layer.bias)
        scale = base + terms.reshape(terms.shape[0], -1).sum(axis=1)
        return Expected(weight, bias, scale)
    weight = fold_weight(layer.weight, affine, layer.family, layer.groups)
    bias = fold_bias(layer.bias, affine)
    own = 0.0 if layer.bias is None else np.abs(layer.bias)
    with np.errstate(over="ignore", invalid="ignore"):
        scale = (own + np.abs(params["mean"])) * np.abs(mult) + np.abs(params["bias"])
    return Expected(weight, bias, scale)


def _close(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """|actual - expected| with equal non-finite values (inf == inf, nan == nan) counted as 0."""
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(actual - expected)
    if np.isfinite(diff).all():
        return diff  # equal values already give 0; the masks below only matter for inf/nan
    same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    diff = np.where(same, 0.0, diff)
    return np.where(np.isnan(diff), np.inf, diff)


def weight_errors(actual: np.ndarray, expected: np.ndarray, family: str, groups: int) -> np.ndarray:
    """Per output channel: max |actual - expected| / max |expected| (inf if shapes differ)."""
    if actual.shape != expected.shape:
        return np.full(channel_rows(expected, family, groups).shape[0], np.inf)
    rows_e = channel_rows(expected, family, groups)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = channel_rows(np.abs(actual - expected), family, groups).max(axis=1)
    if not np.isfinite(diff).all():  # an inf or nan somewhere: equal ones count as 0
        diff = channel_rows(_close(actual, expected), family, groups).max(axis=1)
    scale = np.maximum(rows_e.max(axis=1), -rows_e.min(axis=1))  # max |expected| per row
    if not np.isfinite(scale).all():
        scale = np.where(np.isfinite(rows_e), np.abs(rows_e), 0.0).max(axis=1)
    floor = scale.max() if scale.size and scale.max() > 0 else 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return diff / np.where(scale > 0, scale, floor)


def bias_errors(actual: np.ndarray | None, expected: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Per output channel: |actual - expected| / the magnitude of the terms that built it."""
    got = np.zeros_like(expected) if actual is None else np.asarray(actual, dtype=np.float64)
    try:
        got, want, size = np.broadcast_arrays(got, expected, scale)
    except ValueError:
        return np.full(expected.shape[-1] if expected.ndim else 1, np.inf)
    floor = np.finfo(np.float64).tiny
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        error = _close(got, want) / np.maximum(np.where(np.isfinite(size), size, 0.0), floor)
    error = np.where(_close(got, want) == 0, 0.0, error)
    return error.reshape(-1, error.shape[-1]).max(axis=0) if error.ndim > 1 else error.reshape(-1)
