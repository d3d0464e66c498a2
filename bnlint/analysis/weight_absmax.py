"""Per-output-channel max |W| of producer weights, read block by block and cached.

BN013 bounds a fold's weights by max|W_c| x |s_c|. The weight is read in blocks of rows
(``ParamStore.row_blocks``), so a multi-GB external weight never sits in memory whole,
and max |w| is computed as max(max w, -min w), without a temporary |W|. Results are
cached on the graph by weight and layout (many small Conv weights are pre-filled at once
by :func:`bnlint.analysis.bn_screens.prefetch_conv_absmax`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bnlint.graph import ModelGraph, Node, UnreadableParameter


def load_param(graph: ModelGraph, name: str) -> np.ndarray:
    """``graph.param(name)``; any failure to read becomes :class:`UnreadableParameter`,
    which the engine reports as BN901 naming the tensor and the rule."""
    try:
        array = graph.param(name)
    except UnreadableParameter:
        raise
    except Exception as error:
        raise UnreadableParameter(name, f"cannot be read: {error}") from None
    if array is None:
        raise UnreadableParameter(name, "is not a parameter")
    return array


def weight_channel_absmax(
    graph: ModelGraph, weight_name: str, kind: str, producer: Node
) -> np.ndarray | None:
    """max |W| per output channel of a producer weight, in float64 (cached per weight).

    None when the weight is not floating point, has rank < 2 or a layout the kind does
    not allow. The weight is read in blocks of rows, so a multi-GB external weight never
    sits in memory whole; max |w| is max(max w, -min w), with no temporary |W|.
    """
    key = absmax_cache_key(weight_name, kind, producer)
    cache = graph.cache.weight_absmax
    if key not in cache:
        with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf weights are evidence
            cache[key] = _channel_absmax(graph, weight_name, kind, key[2] or 1, key[3])
    return cache[key]


def absmax_cache_key(weight_name: str, kind: str, producer: Node) -> tuple[str, str, int, int]:
    """(weight, kind, groups for ConvTranspose else 0, Gemm reduction axis)."""
    groups = int(producer.attrs.get("groups", 1) or 1)
    axis = 1 if producer.attrs.get("transB") else 0
    return (weight_name, kind, groups if kind == "conv_transpose" else 0, axis)


def _rows_absmax(block: np.ndarray) -> np.ndarray:
    """Per row of a 2-D block: max |x| (NaN when the row holds a NaN)."""
    return np.maximum(block.max(axis=1), -block.min(axis=1))


def _cols_absmax(block: np.ndarray) -> np.ndarray:
    return np.maximum(block.max(axis=0), -block.min(axis=0))


def _channel_absmax(
    graph: ModelGraph, name: str, kind: str, groups: int, axis: int
) -> np.ndarray | None:
    shape = graph.params.shape(name)
    if shape is None or len(shape) < 2 or 0 in shape or (kind == "gemm" and len(shape) != 2):
        array = np.asarray(load_param(graph, name))  # degenerate layouts: the plain way
        if array.dtype.kind != "f" or array.ndim < 2:
            return None
        return _weight_absmax_whole(array, kind, groups, axis)
    per_row: list[np.ndarray] = []
    running: np.ndarray | None = None
    for block in _blocks(graph, name):
        if block.dtype.kind != "f":
            return None
        if kind == "conv" or (kind == "gemm" and axis == 1):
            per_row.append(_rows_absmax(block.reshape(block.shape[0], -1)))
        elif kind == "conv_transpose":
            rows = block.reshape(block.shape[0], block.shape[1], -1)
            per_row.append(np.maximum(rows.max(axis=2), -rows.min(axis=2)))
        else:  # gemm without transB: columns; matmul: the last axis
            columns = _cols_absmax(block.reshape(-1, block.shape[-1]))
            running = columns if running is None else np.maximum(running, columns)
    if kind == "conv" or (kind == "gemm" and axis == 1):
        return np.concatenate(per_row).astype(np.float64)
    if kind == "conv_transpose":
        maxima = np.concatenate(per_row)  # (Cin, Cout / groups)
        if maxima.shape[0] % groups:
            return None
        grouped = maxima.reshape(groups, maxima.shape[0] // groups, maxima.shape[1])
        return grouped.max(axis=1).ravel().astype(np.float64)
    return None if running is None else running.astype(np.float64)


def _blocks(graph: ModelGraph, name: str) -> Iterator[np.ndarray]:
    """Row blocks of a parameter; a failure to read becomes :class:`UnreadableParameter`."""
    blocks = graph.params.row_blocks(name)
    while True:
        try:
            block = next(blocks)
        except StopIteration:
            return
        except UnreadableParameter:
            raise
        except Exception as error:
            raise UnreadableParameter(name, f"cannot be read: {error}") from None
        yield block


def _weight_absmax_whole(weight: np.ndarray, kind: str, groups: int, axis: int):
    """The reference computation on a whole array (degenerate shapes only)."""
    magnitude = np.abs(weight)
    if kind == "conv":
        return magnitude.reshape(weight.shape[0], -1).max(axis=1).astype(np.float64)
    if kind == "conv_transpose":
        if weight.shape[0] % groups:
            return None
        grouped = magnitude.reshape(groups, weight.shape[0] // groups, weight.shape[1], -1)
        return grouped.max(axis=(1, 3)).ravel().astype(np.float64)
    if kind == "gemm":
        return magnitude.max(axis=axis).astype(np.float64)
    return magnitude.reshape(-1, weight.shape[-1]).max(axis=0).astype(np.float64)
