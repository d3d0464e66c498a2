"""Verification level 1 (algebraic, no runtime): is each fold exactly the BN's affine map?

For every folded BN the folded producer is compared, per output channel and in float64,
with what the BN algebra prescribes: weight scaled by ``gamma / sqrt(var + eps)`` along
the layout's output-channel axis, bias mapped to ``b * m + beta - mean * m``. The
tolerance is a few units of rounding in the *original* model's dtype, so a fold that is
exact up to one rounding passes and one that lost precision (a float16 downcast) fails.

When a fold is wrong, the known bug classes are tried as hypotheses (wrong axis, groups
ignored, eps ignored, producer bias not scaled, Gemm beta ignored, float16 rounding) and
the one the folded weights match is named.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnlint.fold import FoldRecord
from bnlint.fold_math import FAMILY, BNAffine, Linear, channel_rows, fold_bias, fold_weight
from bnlint.fold_math import forward_fold as forward_fold_math
from bnlint.graph import ModelGraph, Node

UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}
ALGEBRA_ULPS = 16  # a fold may round a handful of times (scale, product, cast)


def unit_roundoff(dtype: str | None) -> float:
    return UNIT_ROUNDOFF.get(dtype or "float32", UNIT_ROUNDOFF["float32"])


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
class AlgebraResult:
    """Level-1 verdict for one fold; errors are relative to the channel's magnitude."""

    ok: bool
    weight_error: float
    bias_error: float
    tolerance: float
    channel: int | None = None  # worst output channel
    channels_wrong: int = 0
    problem_code: str | None = None
    problem: str | None = None

    @classmethod
    def unchecked(cls, tolerance: float, problem_code: str, problem: str) -> AlgebraResult:
        """A fold whose numbers cannot be compared at all (structure or readability)."""
        return cls(False, np.inf, np.inf, tolerance, None, 0, problem_code, problem)

    def evidence(self) -> dict:
        return {
            "weight_rel_error": self.weight_error,
            "bias_rel_error": self.bias_error,
            "algebra_tolerance": self.tolerance,
            "worst_channel": self.channel,
            "channels_wrong": self.channels_wrong,
            "min_tolerance": max(self.weight_error, self.bias_error),
        }


@dataclass(frozen=True)
class Expected:
    weight: np.ndarray
    bias: np.ndarray
    bias_scale: np.ndarray  # magnitude of the terms that make up each expected bias


def _bn_terms(graph: ModelGraph, bn: Node) -> tuple[BNAffine, dict[str, np.ndarray], float]:
    params = {
        role: np.asarray(graph.param(bn.input(role)), dtype=np.float64).reshape(-1)
        for role in ("scale", "bias", "mean", "var")
    }
    eps = float(bn.attrs.get("eps", 1e-5))
    return BNAffine.from_params(**params, eps=eps), params, eps


def _expected(layer: Layer, affine: BNAffine, params: dict, kind: str) -> Expected:
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


def check_algebra(
    original: ModelGraph, record: FoldRecord, folded: ModelGraph, target: Node, add: Node | None
) -> AlgebraResult:
    """Level 1 for one folded BN: ``target`` (+ ``add``) in ``folded`` against the original."""
    verdict = record.verdict
    source = read_layer(original, verdict.producer, verdict.add)
    result = read_layer(folded, target, add)
    _, params, eps = _bn_terms(original, verdict.bn)
    return check_layers(source, result, params, eps, verdict.kind or "conv")


def check_layers(
    source: Layer | None,
    result: Layer | None,
    params: dict[str, np.ndarray],
    eps: float,
    kind: str,
) -> AlgebraResult:
    """Level 1 on numbers: ``result`` must be ``source`` with the BN (``params``) folded in."""
    dtype = source.weight_dtype if source is not None else "float32"
    tolerance = ALGEBRA_ULPS * unit_roundoff(dtype)
    if source is None or result is None:
        return AlgebraResult.unchecked(
            tolerance,
            "unreadable",
            "the weights of the producer or the folded node are not constant",
        )
    family = FAMILY[kind]
    if result.family != family or result.groups != source.groups:
        return AlgebraResult.unchecked(
            tolerance,
            "layout-changed",
            f"the folded node is a {result.family} with groups={result.groups}, "
            f"the original a {family} with groups={source.groups}",
        )
    if result.structure != source.structure:
        return AlgebraResult.unchecked(
            tolerance,
            "attributes-changed",
            f"the folded node's attributes changed: {dict(result.structure)} "
            f"instead of {dict(source.structure)}",
        )
    params = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in params.items()}
    affine = BNAffine.from_params(**params, eps=eps)
    want = _expected(source, affine, params, kind)
    if kind == "forward_conv":
        bias_tolerance = tolerance * (1 + np.sqrt(source.weight[0].size))
    else:
        bias_tolerance = tolerance
    w_err = weight_errors(result.weight, want.weight, family, source.groups)
    b_err = bias_errors(result.bias, want.bias, want.bias_scale)
    wrong = (w_err > tolerance) | (b_err > bias_tolerance)
    worst = int(np.argmax(np.maximum(w_err, b_err))) if wrong.any() else None
    w_max, b_max = float(np.max(w_err, initial=0.0)), float(np.max(b_err, initial=0.0))
    if not wrong.any():
        return AlgebraResult(True, w_max, b_max, tolerance)
    from bnlint.verify_diagnose import diagnose

    code, text = diagnose(
        source,
        result,
        want,
        affine,
        params,
        eps,
        kind,
        w_max > tolerance,
        b_max > bias_tolerance,
        tolerance,
    )
    detail = (
        f"{int(wrong.sum())} of {wrong.size} channels wrong, worst channel {worst}: "
        f"weight error {w_max:.3g}, bias error {b_max:.3g} (relative; tolerance {tolerance:.2g})"
    )
    return AlgebraResult(
        False, w_max, b_max, tolerance, worst, int(wrong.sum()), code, f"{text}; {detail}"
    )
