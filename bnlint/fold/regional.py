"""Compare two versions of a model region by region, by evaluating what each computes.

For every scope pair (see :mod:`bnlint.fold.regions`) the original is cut into regions
between shared tensors; each region that changed is evaluated on both sides in float64
(:mod:`bnlint.fold.exact`) on seeded probes and judged by the algebraic criterion
(:mod:`bnlint.fold.bounds`). The probes are kept, so the numeric level can run the same
regions in a runtime on the same values. Constants are read through ``read_initializer``
(the loader's parameters: external data only through bnlint's resolver) or computed from
the constant-only nodes that define them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from onnx import NodeProto, TensorProto

from bnlint.fold import bounds
from bnlint.fold.exact import FLOATS, EvalError, Evaluator, SizeLimit, Tensor
from bnlint.fold.regions import (
    MAX_REGION_NODES,
    ModelView,
    Region,
    Scope,
    bodies,
    collect_folded,
    is_unchanged,
    partition,
    region_of,
    shared_borders,
)
from bnlint.onnx.model_io import round_to

InitializerReader = Callable[[Scope, str], "tuple[np.ndarray, str] | None"]
TypeOf = Callable[[Scope, str], "tuple[tuple | None, str | None]"]
SPATIAL_OPS = frozenset(
    {"Conv", "ConvTranspose", "BatchNormalization", "Add", "Sub", "Mul", "Div", "Relu",
     "Identity", "Neg", "Sigmoid", "Tanh", "Clip", "LeakyRelu", "HardSwish", "HardSigmoid"}
)  # fmt: skip
PROBE_EXTENT = 8  # the size given to unknown dimensions
MIN_SAMPLES = 8192  # values per compared output a reduced probe keeps at least
BATCH = 2


class Constants:
    """Constant values of one model, read or computed once, per scope."""

    def __init__(self, view: ModelView, read_initializer: InitializerReader, read_tensor) -> None:
        self.view = view
        self.read_initializer = read_initializer
        self.read_tensor = read_tensor
        self._cache: dict[tuple[int, str], tuple[np.ndarray, str] | None] = {}

    def get(self, scope: Scope, name: str) -> tuple[np.ndarray, str] | None:
        owner = scope.owner(name)
        if owner is None or name not in owner.constant:
            return None
        key = (id(owner), name)
        if key not in self._cache:
            if name in owner.initializers:
                self._cache[key] = self.read_initializer(owner, name)
            else:
                self._cache[key] = self._compute(owner, name)
        return self._cache[key]

    def _compute(self, scope: Scope, name: str) -> tuple[np.ndarray, str] | None:
        nodes = constant_closure(scope, [name])
        evaluator = Evaluator(
            self.view.opset, lambda n: self.get(scope, n), self.read_tensor, magnitudes=False
        )
        (result,) = evaluator.run([scope.graph.node[i] for i in nodes], {}, [name]).values()
        return result.value, result.dtype


def constant_closure(scope: Scope, names: list[str]) -> list[int]:
    """The constant-only nodes of ``scope`` that compute ``names``, in graph order."""
    seen: set[int] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        index = scope.producer.get(name)
        if index is None or index in seen or name not in scope.constant:
            continue
        seen.add(index)
        stack.extend(n for n in scope.graph.node[index].input if n)
    return sorted(seen)


@dataclass
class RegionResult:
    """What happened to one region of the original model."""

    region: Region
    bns: list[int]  # indices of the original's BatchNormalization nodes in the region
    changed: bool = True
    checks: list[bounds.Check] = field(default_factory=list)  # algebraic, one per output
    numeric: list[bounds.Check] = field(default_factory=list)
    problem: str | None = None  # the region could not be delimited or evaluated
    probes: dict[str, np.ndarray] = field(default_factory=dict)
    exact: dict[str, np.ndarray] = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)
    rewritten: set[str] = field(default_factory=set)  # same-name constants whose values differ

    @property
    def ok(self) -> bool | None:
        if not self.changed:
            return True
        if self.problem is not None or not self.checks:
            return None
        return all(check.ok for check in self.checks) and all(c.ok for c in self.numeric)


@dataclass
class Side:
    view: ModelView
    constants: Constants
    type_of: TypeOf


def compare(original: Side, folded: Side, seed: int = 0, same_constant=None) -> list[RegionResult]:
    """Every region of every scope of ``original``, checked against ``folded``."""
    rng = np.random.default_rng(seed)
    results = []
    for path, scope in original.view.scopes.items():
        other = folded.view.scopes.get(path)
        if other is None:
            for region in partition(scope, set()):
                result = RegionResult(region, _bns(scope, region))
                result.problem = "the folded model has no such If/Loop/Scan body"
                results.append(result)
            continue
        shared = shared_borders(scope, other)
        found = [
            _check(original, folded, scope, other, region, rng, same_constant)
            for region in partition(scope, shared)
        ]
        results += _merge_failures(original, folded, scope, other, found, rng, same_constant)
    return results


def _merge_failures(original, folded, scope, other, found, rng, same_constant):
    """A tool may keep a tensor's name while changing what it holds (onnxoptimizer's Conv
    keeps its output name after absorbing the BN behind it): the regions on both sides of
    that tensor fail alone. A failing region is therefore also evaluated together with its
    changed neighbours (the one before, the one after, both); when such a union computes
    the same function, it replaces its parts."""
    changed = [r for r in found if r.changed and r.problem is None]
    if not any(r.ok is False for r in changed):
        return found
    producer_of = {name: r for r in changed for name in r.region.outputs}
    readers: dict[int, list[RegionResult]] = {}
    for result in changed:
        for name in result.region.inputs:
            source = producer_of.get(name)
            if source is not None and source is not result:
                readers.setdefault(id(source), []).append(result)
    replaced: dict[int, RegionResult] = {}
    for result in changed:
        if result.ok is not False or id(result) in replaced:
            continue

        def around(members: list[RegionResult]) -> list[RegionResult]:
            found_near = list(members)
            for member in members:
                near = [producer_of[n] for n in member.region.inputs if n in producer_of]
                near += readers.get(id(member), [])
                found_near += [n for n in near if all(n is not m for m in found_near)]
            return found_near

        before = [producer_of[n] for n in result.region.inputs if n in producer_of]
        after = readers.get(id(result), [])
        ring = around([result])
        unions = [[result, b] for b in before] + [[result, a] for a in after]
        unions += [[result, *before], [result, *after], ring, around(ring)]
        for members in unions:
            if len(members) < 2 or any(id(m) in replaced for m in members):
                continue
            indices = sorted({i for m in members for i in m.region.nodes})
            if len(indices) > MAX_REGION_NODES:
                continue
            merged = _check(
                original, folded, scope, other, region_of(scope, indices), rng, same_constant
            )
            if merged.ok:
                for member in members:
                    replaced[id(member)] = merged
                break
    if not replaced:
        return found
    out, seen = [], set()
    for result in found:
        chosen = replaced.get(id(result), result)
        if id(chosen) not in seen:
            seen.add(id(chosen))
            out.append(chosen)
    return out


def _bns(scope: Scope, region: Region) -> list[int]:
    return [i for i in region.nodes if scope.graph.node[i].op_type == "BatchNormalization"]


def _check(original: Side, folded: Side, scope, other, region, rng, same_constant) -> RegionResult:
    result = RegionResult(region, _bns(scope, region))
    collect_folded(other, region)
    if region.problem is not None:
        result.problem = region.problem
        return result

    def equal(a: Scope, b: Scope, name: str) -> bool:
        if same_constant is not None:
            return same_constant(a, b, name)
        return _same_value(original.constants.get(a, name), folded.constants.get(b, name))

    result.rewritten = _rewritten(scope, other, region, equal)
    if is_unchanged(scope, other, region, equal):
        result.changed = False
        return result
    try:
        _evaluate(original, folded, scope, other, result, rng)
    except SizeLimit:
        raise  # a hostile size is bad input: the caller refuses the model
    except EvalError as error:
        result.problem = f"could not evaluate it: {error}"
    return result


def _same_value(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return (
        a[1] == b[1]
        and np.shape(a[0]) == np.shape(b[0])
        and np.array_equal(a[0], b[0], equal_nan=True)
    )


def _rewritten(scope: Scope, other: Scope, region: Region, equal) -> set[str]:
    """Constants the folded region reads under an original name but with other values."""
    names = {n for i in region.folded for n in other.graph.node[i].input if n}
    return {
        n
        for n in names
        if other.is_constant(n) and scope.is_constant(n) and not equal(scope, other, n)
    }


def _evaluate(original: Side, folded: Side, scope, other, result: RegionResult, rng) -> None:
    region = result.region
    ours = constant_closure(scope, _inputs_of(scope, region.nodes)) + region.nodes
    theirs = region.folded
    feeds = {}
    reducible = _reducible(scope, [scope.graph.node[i] for i in region.nodes], original)
    for name in region.inputs:
        shape, dtype = original.type_of(scope, name)
        shape = _probe_shape(shape, scope, region, name, reducible)
        if dtype not in FLOATS:
            raise EvalError(f"it reads {dtype or 'untyped'} data {name!r} bnlint cannot probe")
        values = round_to(rng.standard_normal(shape), dtype)
        feeds[name] = Tensor(values, dtype)
        result.probes[name] = values
    left = Evaluator(
        original.view.opset,
        lambda n: original.constants.get(scope, n),
        original.constants.read_tensor,
    )
    right = Evaluator(
        folded.view.opset,
        lambda n: folded.constants.get(other, n),
        folded.constants.read_tensor,
        magnitudes=False,
    )
    expected = left.run(_sorted(scope, ours), feeds, region.outputs)
    actual = right.run(_sorted(other, theirs), feeds, region.outputs)
    for name in region.outputs:
        dtype = original.type_of(scope, name)[1] or expected[name].dtype
        result.dtypes[name] = dtype
        result.exact[name] = expected[name].value
        result.checks.append(
            bounds.algebraic(
                name, expected[name].value, actual[name].value, expected[name].magnitude, dtype
            )
        )


def _sorted(scope: Scope, indices: list[int]) -> list[NodeProto]:
    return [scope.graph.node[i] for i in sorted(set(indices))]


def _inputs_of(scope: Scope, indices: list[int]) -> list[str]:
    names = []
    for i in indices:
        node = scope.graph.node[i]
        names += [n for n in node.input if n]
        for _, _, body in bodies(node):
            names += sorted(next(c for c in scope.children if c.graph is body).outer_names)
    return names


def _reducible(scope: Scope, nodes: list[NodeProto], side: Side) -> Reduction | None:
    """How the region may run on a smaller input, or None: only local ops, and every
    constant an elementwise op reads is 1 along spatial axes."""
    period, reach, channels = 1, 1, None
    for node in nodes:
        if node.op_type not in SPATIAL_OPS:
            return None
        if node.op_type in ("Conv", "ConvTranspose"):
            attrs = {a.name: a for a in node.attribute}
            extent, outputs = _conv_extent(scope, node, attrs, side)
            if "output_shape" in attrs or extent is None:
                return None
            reach += (extent - 1) * period
            strides = list(attrs["strides"].ints) if "strides" in attrs else [1]
            period *= math.prod(max(1, s) for s in strides)
            channels = outputs if channels is None else min(channels, outputs)
        elif node.op_type in ("Add", "Sub", "Mul", "Div"):
            for name in node.input[1:] if len(node.input) > 1 else []:
                found = side.constants.get(scope, name) if scope.is_constant(name) else None
                if (
                    found is not None
                    and np.ndim(found[0]) >= 3
                    and any(d > 1 for d in np.shape(found[0])[-2:])
                ):
                    return None
    return Reduction(period, reach, channels or 1)


@dataclass(frozen=True)
class Reduction:
    period: int  # the product of all strides
    reach: int  # the receptive extent of the convolutions along one axis
    channels: int  # the fewest output channels of a convolution in the region


def _conv_extent(scope: Scope, node: NodeProto, attrs: dict, side: Side) -> tuple:
    """(largest dilated kernel extent or None, output channels) of a Conv/ConvTranspose."""
    weight = node.input[1] if len(node.input) > 1 else ""
    found = side.constants.get(scope, weight) if weight and scope.is_constant(weight) else None
    shape = np.shape(found[0]) if found is not None else None
    if "kernel_shape" in attrs:
        kernel = list(attrs["kernel_shape"].ints)
    elif shape is not None and len(shape) >= 3:
        kernel = list(shape[2:])
    else:
        return None, 1
    group = attrs["group"].i if "group" in attrs else 1
    channels = 1
    if shape is not None and len(shape) >= 2:
        channels = shape[0] if node.op_type == "Conv" else shape[1] * max(1, group)
    dilations = list(attrs["dilations"].ints) if "dilations" in attrs else [1] * len(kernel)
    extents = [(k - 1) * max(1, d) + 1 for k, d in zip(kernel, dilations, strict=False)]
    return max(extents, default=1), max(1, int(channels))


def _probe_shape(shape, scope: Scope, region: Region, name: str, reduced) -> tuple:
    """The probe's shape. Unknown dimensions get PROBE_EXTENT. Spatial axes of a region
    that may run smaller get the fewest positions that give every kernel tap an interior
    output and the runtime comparison MIN_SAMPLES values per output (its criterion is a
    ratio of maxima: fewer samples make it noisier), never more than the former fixed
    probe (PROBE_EXTENT, 4 strides); the real size's remainder modulo the strides is kept,
    so padding meets the border as it does in the model."""
    if shape is None:
        shape = _guess_shape(scope, region, name)
    dims: list[int] = []
    for axis, dim in enumerate(shape):
        if not isinstance(dim, int) or dim <= 0:
            dims.append(BATCH if axis == 0 else PROBE_EXTENT)
        elif axis >= 2 and reduced is not None and len(shape) >= 3:
            period, spatial = reduced.period, len(shape) - 2
            positions = MIN_SAMPLES / (dims[0] * reduced.channels)
            least = math.ceil(max(1.0, positions) ** (1 / spatial) - 1e-9)
            former = max(PROBE_EXTENT, 4 * period)
            target = max(reduced.reach + period, min(least * period, former))
            dims.append(target + (dim - target) % period if dim > target else dim)
        else:
            dims.append(dim)
    return tuple(dims)


def _guess_shape(scope: Scope, region: Region, name: str) -> tuple:
    """A plausible shape for an untyped input, from the weighted node reading it."""
    for i in region.nodes:
        node = scope.graph.node[i]
        if node.input and node.input[0] == name and len(node.input) > 1:
            weight = scope.owner(node.input[1])
            tensor = weight.initializers.get(node.input[1]) if weight is not None else None
            dims = list(tensor.dims) if isinstance(tensor, TensorProto) else None
            if dims and node.op_type == "Conv":
                groups = next((a.i for a in node.attribute if a.name == "group"), 1) or 1
                return (BATCH, dims[1] * groups, *([PROBE_EXTENT] * (len(dims) - 2)))
            if dims and node.op_type == "ConvTranspose":
                return (BATCH, dims[0], *([PROBE_EXTENT] * (len(dims) - 2)))
            if dims and node.op_type in ("Gemm", "MatMul"):
                trans = any(a.name == "transB" and a.i for a in node.attribute)
                return (BATCH, dims[1] if trans else dims[0])
    raise EvalError(f"the shape of {name!r} is unknown (give --input-shape)")
