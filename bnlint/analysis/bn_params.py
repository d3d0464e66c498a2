"""A BatchNorm's parameters as the parameter and statistics rules read them.

Reads a BN's scale (gamma), bias (beta), running mean and running variance as float64
arrays through ``ModelGraph.param`` (once per run: ``graph.cache.bn_params``) and computes
the folded scale gamma / sqrt(var + eps) and shift. Only BN parameters are materialised:
parameters may be memory-mapped slices of very large files. Dtype ranges live in
:mod:`bnlint.analysis.float_formats`, folded producer terms in
:mod:`bnlint.analysis.folded_terms`, evidence wording in :mod:`bnlint.analysis.channel_evidence`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bnlint.analysis.weight_absmax import load_param
from bnlint.graph import ModelGraph, Node

BN_ROLES = ("scale", "bias", "mean", "var")
# A BatchNorm parameter with more elements than this is not a per-channel vector; it is
# left unread (BN010 reports its shape) rather than loaded into memory.
MAX_PARAM_ELEMENTS = 1 << 24


@dataclass
class BNParams:
    """One BN's parameters as flat float64 arrays (None when absent or unreadable)."""

    node: Node
    scale: np.ndarray | None
    bias: np.ndarray | None
    mean: np.ndarray | None
    var: np.ndarray | None
    eps: float
    dtype: str | None  # the dtype BN computes in: its input's, else its parameters'
    param_dtype: str | None
    unreadable: dict[str, str] = field(default_factory=dict)  # role -> why

    def get(self, role: str) -> np.ndarray | None:
        return getattr(self, role)

    @property
    def has_statistics(self) -> bool:
        return self.mean is not None and self.var is not None

    def folded_scale(self) -> np.ndarray | None:
        """gamma / sqrt(var + eps) per channel in float64 (gamma = 1 when absent).

        Channels with var + eps <= 0 or non-finite inputs give NaN or Inf; None when the
        variance is unknown or the lengths disagree (BN010's finding).
        """
        if self.var is None:
            return None
        gamma = self.scale if self.scale is not None else np.ones_like(self.var)
        if gamma.size != self.var.size:
            return None
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return gamma / np.sqrt(self.var + self.eps)

    def folded_shift(self, scale: np.ndarray) -> np.ndarray | None:
        """beta - mean * scale: the BN's additive term after folding (beta = 0 when absent)."""
        if self.mean is None or self.mean.size != scale.size:
            return None
        beta = self.bias if self.bias is not None else np.zeros_like(scale)
        if beta.size != scale.size:
            return None
        with np.errstate(invalid="ignore", over="ignore"):
            return beta - self.mean * scale


def read_float64(graph: ModelGraph, name: str | None) -> tuple[np.ndarray | None, str | None]:
    """A parameter as a flat float64 array, or (None, why) when it cannot be read."""
    if not name or name not in graph.params:
        return None, None if not name else "not a constant parameter"
    shape = graph.params.shape(name)
    if shape is not None and int(np.prod(shape, dtype=object)) > MAX_PARAM_ELEMENTS:
        return None, f"too large for a per-channel parameter {tuple(shape)}"
    array = np.asarray(load_param(graph, name))
    if array.dtype.kind not in "fiub":
        return None, f"unsupported dtype {array.dtype}"
    return array.astype(np.float64).ravel(), None


def bn_dtype(graph: ModelGraph, bn: Node) -> str | None:
    """The dtype a BN computes in: its data input's, else its variance's or scale's."""
    for name in (bn.inputs[0] if bn.inputs else None, bn.input("var"), bn.input("scale")):
        dtype = graph.dtype(name)
        if dtype is not None:
            return dtype
    return None


def bn_params(graph: ModelGraph, bn: Node) -> BNParams:
    """The parameters of ``bn`` (cached on the graph, so several rules share one read).

    When :func:`bnlint.analysis.bn_arrays.bn_arrays` has read every BN at once, the arrays are
    read-only views of its tables; otherwise each parameter is read here.
    """
    cache = graph.cache.bn_params
    found = cache.get(bn.id)
    if found is None:
        # Dtypes first: decoding may widen a stored dtype (bfloat16 is read as float32).
        dtype = bn_dtype(graph, bn)
        param_dtype = graph.dtype(bn.input("var")) or graph.dtype(bn.input("scale"))
        arrays: dict[str, np.ndarray | None] = {}
        unreadable: dict[str, str] = {}
        table = graph.cache.bn_arrays
        row = table.rows.get(bn.id) if table is not None else None
        if row is not None and table.exact[row]:
            arrays = {role: table.values_of(role, row) for role in BN_ROLES}
        else:
            for role in BN_ROLES:
                array, why = read_float64(graph, bn.input(role))
                arrays[role] = array
                if why is not None:
                    unreadable[role] = why
        found = cache[bn.id] = BNParams(
            node=bn,
            eps=float(bn.attrs.get("eps", 1e-5)),
            dtype=dtype,
            param_dtype=param_dtype,
            unreadable=unreadable,
            **arrays,
        )
    return found
