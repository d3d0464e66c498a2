"""Verification level 1 for many Conv folds at once (same float64 arithmetic, stacked).

:func:`bnlint.fold.algebra.check_layers` costs a few dozen NumPy calls per fold: nothing for a
ResNet, seconds for 12,000 folds. Folds into Conv layers whose weights have the same
shape, groups, dtype and attributes are stacked, and every step of ``check_layers`` is
applied to the stack element by element, in the same order of operations, so each fold
gets bit-for-bit the errors it would get alone. A fold that fails here, or that does not
fit the batch (other layouts, missing or mis-sized parameters, changed attributes), is
checked by ``check_algebra`` itself, which also names the bug class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bnlint.bn_arrays import _RAW_FLOATS, bn_arrays
from bnlint.fold.layers import ALGEBRA_ULPS, AlgebraResult
from bnlint.fold.verdicts import FoldRecord
from bnlint.graph import ModelGraph, Node
from bnlint.params import MappedTensor
from bnlint.reference import unit_roundoff

MIN_BATCH = 8  # below this, the per-fold path is as fast
_STRUCTURE = ("strides", "pads", "dilations", "auto_pad", "output_padding")


def _plain(value):
    return tuple(value) if isinstance(value, list) else value


def _structure(node: Node) -> tuple:
    return tuple((key, _plain(node.attrs.get(key))) for key in _STRUCTURE)


def batch_conv_algebra(
    original: ModelGraph,
    folded: ModelGraph,
    items: Sequence[tuple[int, FoldRecord, Node]],
) -> dict[int, AlgebraResult]:
    """Passing level-1 results by record index, for the conv folds that fit a batch.

    ``items`` holds (record index, record, target node in ``folded``).
    """
    table = bn_arrays(original)
    complete = table.complete()
    groups: dict[tuple, list[tuple[int, FoldRecord, Node, int]]] = {}
    for index, record, target in items:
        verdict = record.verdict
        producer, row = verdict.producer, table.rows.get(verdict.bn.id)
        if verdict.kind != "conv" or verdict.add is not None or producer is None:
            continue
        if row is None or not complete[row] or target.op != "conv":
            continue
        weight, new_weight = producer.input("weight"), target.input("weight")
        if weight is None or new_weight is None:
            continue
        shape, new_shape = original.params.shape(weight), folded.params.shape(new_weight)
        if shape is None or shape != new_shape or len(shape) < 2:
            continue
        if table.sizes("var")[row] != shape[0]:
            continue
        bias = producer.input("bias")
        if bias is not None and original.params.shape(bias) != (shape[0],):
            continue
        structure = _structure(producer)
        key = (
            tuple(shape),
            int(producer.attrs.get("groups", 1)),
            int(target.attrs.get("groups", 1)),
            original.dtype(weight) or "float32",
            producer.input("bias") is not None,
            target.input("bias") is not None,
            structure == _structure(target),
        )
        if not key[-1] or key[1] != key[2]:
            continue
        groups.setdefault(key, []).append((index, record, target, row))
    found: dict[int, AlgebraResult] = {}
    for key, members in groups.items():
        if len(members) >= MIN_BATCH:
            found.update(_check_group(original, folded, key, members))
    return found


def _stack(graph: ModelGraph, names: list[str]) -> np.ndarray:
    """The parameters ``names`` (one shape) stacked, float64; raw float initializers of one
    dtype and shape are joined as bytes and decoded once (anything else: one by one)."""
    shape = graph.params.shape(names[0])
    raws, dtype = [], None
    for name in names:
        source = graph.params.source(name)
        tensor = source.tensor if type(source) is MappedTensor else source
        kind = _RAW_FLOATS.get(getattr(tensor, "data_type", None))
        if kind is None or kind != (dtype or kind) or shape is None:
            break
        if graph.params.shape(name) != shape:
            break
        dtype, size = kind, int(np.prod(shape)) * np.dtype(kind).itemsize
        if type(source) is MappedTensor:
            raw = source.buffer[source.offset : source.offset + source.length]
        else:
            raw = tensor.raw_data if tensor.data_location == 0 else b""
        if len(raw) != size or not size:
            break
        raws.append(raw)
    else:
        stacked = np.frombuffer(b"".join(raws), dtype)
        return stacked.reshape(len(names), *shape).astype(np.float64)
    return np.stack([np.asarray(graph.param(name), dtype=np.float64) for name in names])


def _close(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(actual - expected)
    same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    diff = np.where(same, 0.0, diff)
    return np.where(np.isnan(diff), np.inf, diff)


def _check_group(original, folded, key, members) -> dict[int, AlgebraResult]:
    shape, _, _, dtype, has_bias, new_has_bias, _ = key
    count, channels = len(members), shape[0]
    tolerance = ALGEBRA_ULPS * unit_roundoff(dtype)
    table = bn_arrays(original)
    rows = np.array([row for *_, row in members])
    params = {
        role: table.values[role][table.starts[role][rows][:, None] + np.arange(channels)]
        for role in ("scale", "bias", "mean", "var")
    }
    eps = table.eps[rows][:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        mult = params["scale"] / np.sqrt(params["var"] + eps)
    shift = params["bias"] - params["mean"] * mult
    producers = [record.verdict.producer for _, record, _, _ in members]
    weight = _stack(original, [p.input("weight") for p in producers])
    result = _stack(folded, [t.input("weight") for _, _, t, _ in members])
    factor = mult.reshape((count, channels) + (1,) * (len(shape) - 1))
    with np.errstate(over="ignore", invalid="ignore"):
        want = weight * factor
    if has_bias:
        bias = _stack(original, [p.input("bias") for p in producers]).reshape(count, channels)
        with np.errstate(over="ignore", invalid="ignore"):
            want_bias = bias * mult + shift
            bias_scale = (np.abs(bias) + np.abs(params["mean"])) * np.abs(mult) + np.abs(
                params["bias"]
            )
    else:
        want_bias = shift.copy()
        with np.errstate(over="ignore", invalid="ignore"):
            bias_scale = (0.0 + np.abs(params["mean"])) * np.abs(mult) + np.abs(params["bias"])
    # weight errors, per output channel, as verify.weight_errors
    rows_e = want.reshape(count, channels, -1)
    diff = _close(result, want).reshape(count, channels, -1).max(axis=2)
    finite = np.where(np.isfinite(rows_e), np.abs(rows_e), 0.0)
    scale = finite.max(axis=2)
    floor = scale.max(axis=1, keepdims=True)
    floor = np.where(floor > 0, floor, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        w_err = diff / np.where(scale > 0, scale, floor)
    # bias errors, as verify.bias_errors
    if new_has_bias:
        got = _stack(folded, [t.input("bias") for _, _, t, _ in members])
        if got.shape != (count, channels):
            return {}
    else:
        got = np.zeros_like(want_bias)
    tiny = np.finfo(np.float64).tiny
    close = _close(got, want_bias)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        error = close / np.maximum(np.where(np.isfinite(bias_scale), bias_scale, 0.0), tiny)
    b_err = np.where(close == 0, 0.0, error)
    wrong = (w_err > tolerance) | (b_err > tolerance)
    found = {}
    for k, (index, _, _, _) in enumerate(members):
        if wrong[k].any():
            continue  # the per-fold check diagnoses it
        found[index] = AlgebraResult(
            True,
            float(np.max(w_err[k], initial=0.0)),
            float(np.max(b_err[k], initial=0.0)),
            tolerance,
        )
    return found
