"""Every BatchNorm's parameters as flat float64 arrays, read in one pass and cached.

The per-BN path (:func:`bnlint.analysis.bn_params.bn_params`) costs a few dozen NumPy calls
per layer: nothing for a ResNet, seconds for a graph with 12,000 BatchNorms. :func:`bn_arrays` reads
the scale, bias, running mean and running variance of all BatchNorms at once (raw float
initializers are concatenated straight from their bytes) into one float64 array per
role, with each BN's slice given by ``starts``/``stops``, so a rule can evaluate a
condition over every channel of every BN with a handful of vectorised operations and
run its exact per-BN code only on the layers that may be reported (a *screen*).

A BN whose parameters cannot be read this way (an unreadable or non-float tensor, a
parameter computed at run time, a vector too large for a per-channel parameter) is
marked ``exact[row] = False``: screens always select it, so its per-BN code reports
exactly what it reported before, including a BN901 for an unreadable tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bnlint.graph import ModelGraph, Node

BN_ROLES = ("scale", "bias", "mean", "var")
# As in bnlint.analysis.bn_params: larger vectors are not per-channel parameters.
MAX_PARAM_ELEMENTS = 1 << 24


@dataclass
class BNArrays:
    """All BatchNorms of a graph (graph order) and their parameters by role."""

    bns: list[Node]
    rows: dict[int, int]  # node id -> row
    values: dict[str, np.ndarray]  # role -> every BN's values, concatenated (float64)
    starts: dict[str, np.ndarray]  # role -> first index of each BN's slice (int64)
    stops: dict[str, np.ndarray]
    present: dict[str, np.ndarray]  # role -> the BN has this parameter (bool)
    exact: np.ndarray  # all of the BN's parameters were read here (bool)
    eps: np.ndarray  # per BN (float64)

    def values_of(self, role: str, row: int) -> np.ndarray | None:
        """One BN's values for ``role`` (a view), or None when it has no such parameter."""
        if not self.present[role][row]:
            return None
        return self.values[role][self.starts[role][row] : self.stops[role][row]]

    def sizes(self, role: str) -> np.ndarray:
        return self.stops[role] - self.starts[role]

    def count(self, role: str, mask: np.ndarray) -> np.ndarray:
        """Per BN: how many of its ``role`` values satisfy the element-wise ``mask``."""
        totals = np.concatenate(([0], np.cumsum(mask, dtype=np.int64)))
        return totals[self.stops[role]] - totals[self.starts[role]]

    def any(self, role: str, mask: np.ndarray) -> np.ndarray:
        return self.count(role, mask) > 0

    def all(self, role: str, mask: np.ndarray) -> np.ndarray:
        """Per BN: every value satisfies ``mask`` (True for an absent or empty parameter)."""
        return self.count(role, mask) == self.sizes(role)

    def per_element(self, role: str, per_bn: np.ndarray) -> np.ndarray:
        """``per_bn`` (one value per BN) repeated over each BN's ``role`` values."""
        return np.repeat(per_bn, self.sizes(role))

    def aligned(self, role: str, default: float) -> np.ndarray:
        """``role``'s values aligned element by element with the running variance's, for
        BNs where both have the same length; ``default`` elsewhere."""
        var_sizes = self.sizes("var")
        matches = self.present[role] & (self.sizes(role) == var_sizes)
        out = np.full(self.values["var"].size, default, dtype=np.float64)
        if not matches.any():
            return out
        shift = np.where(matches, self.starts[role] - self.starts["var"], 0)
        index = np.arange(out.size) + self.per_element("var", shift)
        use = self.per_element("var", matches)
        out[use] = self.values[role][index[use]]
        return out

    def complete(self) -> np.ndarray:
        """Per BN: read here, with all four parameters present and of one length."""
        sizes = self.sizes("var")
        found = self.exact & self.present["var"]
        for role in ("scale", "bias", "mean"):
            found &= self.present[role] & (self.sizes(role) == sizes)
        return found


def affine_terms(graph: ModelGraph) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """BN id -> (mult, shift) of ``y = x * mult + shift`` for every complete BN, computed
    for all BNs at once with the same float64 operations as ``BNAffine.from_params``."""
    return _cached_terms(graph)[0]


def non_finite_terms(graph: ModelGraph) -> set[int]:
    """Ids of complete BNs whose mult or shift has a NaN or infinity in some channel
    (non-finite statistics, or variance + eps <= 0): folding them would spread it."""
    return _cached_terms(graph)[1]


def _cached_terms(graph: ModelGraph) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], set[int]]:
    cached = graph.cache.bn_affine_terms
    if cached is None:
        cached = graph.cache.bn_affine_terms = _affine_terms(graph)
    return cached


def _affine_terms(graph: ModelGraph) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], set[int]]:
    table = bn_arrays(graph)
    complete = table.complete()
    var = table.values["var"]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mult = table.aligned("scale", 1.0) / np.sqrt(var + table.per_element("var", table.eps))
        shift = table.aligned("bias", 0.0) - table.aligned("mean", 0.0) * mult
    starts, stops = table.starts["var"], table.stops["var"]
    found = {
        table.bns[row].id: (mult[starts[row] : stops[row]], shift[starts[row] : stops[row]])
        for row in np.flatnonzero(complete)
    }
    finite = table.all("var", np.isfinite(mult) & np.isfinite(shift))
    return found, {table.bns[row].id for row in np.flatnonzero(complete & ~finite)}


def bn_arrays(graph: ModelGraph) -> BNArrays:
    """The BN parameter arrays of ``graph`` (computed once, cached on the graph)."""
    cached = graph.cache.bn_arrays
    if cached is None:
        cached = graph.cache.bn_arrays = _build(graph)
    return cached


def _build(graph: ModelGraph) -> BNArrays:
    bns = graph.nodes_of("batch_norm")
    count = len(bns)
    exact = np.ones(count, dtype=bool)
    values, starts, stops, present = {}, {}, {}, {}
    reader = _Reader(graph)
    for index, role in enumerate(BN_ROLES, start=1):
        lengths = np.zeros(count, dtype=np.int64)
        has = np.zeros(count, dtype=bool)
        pieces: list[tuple[str, Any]] = []  # (raw dtype or "", bytes or float64 array)
        for row, bn in enumerate(bns):
            inputs = bn.inputs
            name = inputs[index] if index < len(inputs) else None
            if not name:
                continue
            found = reader.read(name)
            if found is None:
                exact[row] = False
                continue
            pieces.append(found[:2])
            lengths[row] = found[2]
            has[row] = True
        stops[role] = np.cumsum(lengths)
        starts[role] = stops[role] - lengths
        values[role] = _concatenate(pieces)
        values[role].flags.writeable = False  # rules get views; none may write through them
        present[role] = has
    eps = np.array([float(bn.attrs.get("eps", 1e-5)) for bn in bns], dtype=np.float64)
    rows = {bn.id: row for row, bn in enumerate(bns)}
    return BNArrays(bns, rows, values, starts, stops, present, exact, eps)


def _concatenate(pieces: list[tuple[str, Any]]) -> np.ndarray:
    """float64 values of every piece in order; runs of raw bytes of one dtype are decoded
    with one ``np.frombuffer`` call."""
    out: list[np.ndarray] = []
    run: list[bytes] = []
    run_dtype = ""
    for dtype, data in pieces:
        if dtype and dtype == run_dtype:
            run.append(data)
            continue
        if run:
            out.append(np.frombuffer(b"".join(run), run_dtype).astype(np.float64))
        run, run_dtype = ([data], dtype) if dtype else ([], "")
        if not dtype:
            out.append(data)
    if run:
        out.append(np.frombuffer(b"".join(run), run_dtype).astype(np.float64))
    if not out:
        return np.zeros(0)
    return np.concatenate(out) if len(out) > 1 else np.array(out[0], dtype=np.float64)


class _Reader:
    """One parameter as (raw dtype, raw bytes, length) or ("", float64 array, length), or
    None when only the per-BN path may read it (so that it reports what it did before)."""

    def __init__(self, graph: ModelGraph) -> None:
        self.params = graph.params
        self.seen: dict[str, tuple[str, Any, int] | None] = {}

    def read(self, name: str) -> tuple[str, Any, int] | None:
        found = self.seen.get(name, _MISSING)
        if found is _MISSING:
            found = self.seen[name] = self._read(name)
        return found

    def _read(self, name: str) -> tuple[str, Any, int] | None:
        params = self.params
        raw = params.raw_floats(name, MAX_PARAM_ELEMENTS)
        if raw is not None:
            return raw
        if name not in params:
            return None
        shape = params.shape(name)
        if shape is None or math.prod(shape) > MAX_PARAM_ELEMENTS or any(d < 0 for d in shape):
            return None
        try:
            array = np.asarray(params.get(name))
        except Exception:  # UnreadableParameter included: the per-BN path reports it
            return None
        if array.dtype.kind not in "fiub":
            return None
        flat = array.astype(np.float64).ravel()
        return "", flat, flat.size


_MISSING = object()
