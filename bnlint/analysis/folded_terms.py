"""What folding a BatchNorm would write into its producer: the per-channel max |W| of
the folded weight and the folded bias, computed without folding (for fold hazards)."""

from __future__ import annotations

import numpy as np

from bnlint.analysis.bn_params import BNParams, read_float64
from bnlint.analysis.weight_absmax import load_param, weight_channel_absmax
from bnlint.graph import ModelGraph, Node


def folded_weight_absmax(
    graph: ModelGraph, kind: str, producer: Node, scale: np.ndarray
) -> np.ndarray | None:
    """max |folded weight| per output channel of the producer after folding ``scale`` in.

    Backward folds scale the producer's output channels (Conv: weight axis 0;
    ConvTranspose: axis 1 per group; Gemm: axis 0 with transB, else 1; MatMul: last axis),
    so the channel maximum is max|W_c| * |s_c|. A forward fold into the following Conv
    scales its input channels (axis 1). Only the producer's own weight is read.
    """
    weight_name = producer.input("weight")
    if weight_name is None or weight_name not in graph.params:
        return None
    magnitude = np.abs(scale)
    if kind == "forward_conv":
        weight = np.asarray(load_param(graph, weight_name))
        if weight.dtype.kind != "f" or weight.ndim < 2:
            return None
        if weight.shape[1] != scale.size:
            return None
        per_input = np.abs(weight).reshape(weight.shape[0], weight.shape[1], -1).max(axis=2)
        with np.errstate(over="ignore", invalid="ignore"):
            return (per_input.astype(np.float64) * magnitude[None, :]).max(axis=1)
    per_channel = weight_channel_absmax(
        graph, weight_name, "matmul" if kind == "matmul_add" else kind, producer
    )
    if per_channel is None or per_channel.size != scale.size:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        return per_channel * magnitude


def _producer_bias(graph: ModelGraph, kind: str, producer: Node, add: Node | None, size: int):
    """The producer's additive term per output channel before the BN (0 when it has none)."""
    if kind == "matmul_add" and add is not None:
        name = next((i for i in add.inputs if i and i != producer.outputs[0]), None)
        scale = 1.0
    else:
        name = producer.input("bias")
        scale = float(producer.attrs.get("beta", 1.0)) if kind == "gemm" else 1.0
    if name is None or kind == "matmul":
        return np.zeros(size)
    array, _ = read_float64(graph, name)
    if array is None or array.size not in (1, size):
        return None
    return np.broadcast_to(array * scale, (size,))


def folded_bias(
    graph: ModelGraph,
    kind: str,
    producer: Node,
    add: Node | None,
    params: BNParams,
    scale: np.ndarray,
) -> np.ndarray | None:
    """The per-channel bias a fold writes: (b - mean) * s + beta, or, forward, b + W @ shift."""
    shift = params.folded_shift(scale)
    if shift is None:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        if kind == "forward_conv":
            weight_name = producer.input("weight")
            if weight_name is None or weight_name not in graph.params:
                return None
            weight = np.asarray(load_param(graph, weight_name), dtype=np.float64)
            if weight.ndim < 2 or weight.shape[1] != shift.size:
                return None
            summed = weight.reshape(weight.shape[0], weight.shape[1], -1).sum(axis=2)
            own = _producer_bias(graph, "conv", producer, None, weight.shape[0])
            return None if own is None else own + summed @ shift
        own = _producer_bias(graph, kind, producer, add, scale.size)
        return None if own is None else own * scale + shift
