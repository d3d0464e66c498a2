"""The numeric level: the checked regions, and both whole models, in a runtime.

Regions run side by side in one ONNX Runtime session on the probes the algebraic level
used, original and folded copy each; their outputs are compared with the float64
evaluation (:func:`bnlint.fold.bounds.numeric`). The whole models then run on seeded
inputs (every boolean input both ways, integer inputs 1 so loops run), next to the
original after a *null fold* (:func:`null_fold`), and each output is compared with
:func:`bnlint.fold.bounds.outputs`. How a whole model is made runnable (array-backed
initializers, ``onnx.reference`` as fallback) is in :mod:`bnlint.fold.runners`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from onnx import ModelProto, NodeProto, TensorProto, ValueInfoProto, helper

from bnlint.fold import bounds
from bnlint.fold.affine import FAMILY, channel_factor
from bnlint.fold.regional import RegionResult, Side
from bnlint.fold.regions import Scope
from bnlint.fold.results import Verification
from bnlint.fold.runners import onnx_elem_type
from bnlint.graph import ModelGraph
from bnlint.runtime import RunnerUnavailable

SPLIT_BYTES = 4096  # larger constants reach the session as arrays, not serialized
# ONNX Runtime's session creation grows faster than linearly with the node count: regions
# run in sessions of at most CHUNK_NODES nodes, and above LOCAL_NODES nodes the whole
# models are not run (every changed region still is).
CHUNK_NODES = 2048
LOCAL_NODES = 4096


def _stored(values: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        import ml_dtypes

        return np.asarray(values, np.float32).astype(ml_dtypes.bfloat16)
    return np.asarray(values).astype(dtype)


class _RegionModel:
    """Region copies side by side: renamed nodes, constants as (array-backed) initializers."""

    def __init__(self) -> None:
        self.nodes: list[NodeProto] = []
        self.inputs: list[ValueInfoProto] = []
        self.outputs: list[str] = []
        self.initializers: list[TensorProto] = []
        self.arrays: dict[str, np.ndarray] = {}
        self.feeds: dict[str, np.ndarray] = {}
        self._constants: dict[tuple[int, str], str] = {}

    def constant(self, side: Side, scope: Scope, name: str) -> str:
        owner = scope.owner(name) or scope
        key = (id(owner), name)
        if key not in self._constants:
            found = side.constants.get(scope, name)
            if found is None:
                raise RunnerUnavailable(f"constant {name!r} could not be read")
            local = f"c{len(self._constants)}"
            array = _stored(found[0], found[1])
            tensor = TensorProto(name=local, data_type=onnx_elem_type(found[1]), dims=array.shape)
            if array.nbytes >= SPLIT_BYTES and found[1] != "bfloat16":
                tensor.data_location = TensorProto.EXTERNAL
                entry = tensor.external_data.add()
                entry.key, entry.value = "location", "__bnlint_in_memory__"
                self.arrays[local] = np.ascontiguousarray(array)
            else:
                tensor.raw_data = np.ascontiguousarray(array).view(np.uint8).tobytes()
            self.initializers.append(tensor)
            self._constants[key] = local
        return self._constants[key]

    def copy(self, side: Side, scope: Scope, indices: list[int], prefix: str, feeds: dict) -> None:
        for index in indices:
            proto = scope.graph.node[index]
            if all(o in scope.constant for o in proto.output if o):
                continue  # its value reaches the copy as an initializer
            node = NodeProto()
            node.CopyFrom(proto)
            del node.input[:], node.output[:], node.metadata_props[:]
            node.name = f"{prefix}n{index}"
            for name in proto.input:
                if not name:
                    node.input.append("")
                elif name in feeds:
                    node.input.append(feeds[name])
                elif scope.is_constant(name):
                    node.input.append(self.constant(side, scope, name))
                else:
                    node.input.append(prefix + name)
            node.output.extend(prefix + name if name else "" for name in proto.output)
            self.nodes.append(node)

    def model(self, opset_model: ModelProto) -> ModelProto:
        graph = helper.make_graph(
            self.nodes,
            "bnlint_regions",
            self.inputs,
            [ValueInfoProto(name=name) for name in self.outputs],
            self.initializers,
        )
        model = helper.make_model(graph, opset_imports=list(opset_model.opset_import))
        model.ir_version = max(opset_model.ir_version, 4)
        return model


def run_regions(
    results: Sequence[RegionResult], original: Side, folded: Side, scale: float = 1.0
) -> None:
    """Fill ``numeric`` of every evaluated region (raises RunnerUnavailable)."""
    checked = [r for r in results if r.changed and r.problem is None and r.checks]
    chunk: list[RegionResult] = []
    for result in checked:
        chunk.append(result)
        size = sum(len(r.region.nodes) + len(r.region.folded) for r in chunk)
        if size >= CHUNK_NODES:
            _run_chunk(chunk, original, folded, scale)
            chunk = []
    if chunk:
        _run_chunk(chunk, original, folded, scale)


def _run_chunk(checked, original: Side, folded: Side, scale: float) -> None:
    from bnlint.onnx.runtime import OnnxRunner

    sides = {"o": (original, _RegionModel()), "f": (folded, _RegionModel())}
    same_opset = list(original.view.model.opset_import) == list(folded.view.model.opset_import)
    if same_opset:
        sides["f"] = (folded, sides["o"][1])
    for number, result in enumerate(checked):
        region = result.region
        for tag, (side, built) in sides.items():
            scope = side.view.scopes[region.path]
            feeds = {}
            for name, values in result.probes.items():
                local = f"r{number}{tag}:{name}"
                dtype = original.type_of(original.view.scopes[region.path], name)[1] or "float32"
                feeds[name] = local
                built.feeds[local] = _stored(values, dtype)
                built.inputs.append(
                    helper.make_tensor_value_info(local, onnx_elem_type(dtype), values.shape)
                )
            indices = region.nodes if tag == "o" else region.folded
            built.copy(side, scope, indices, f"r{number}{tag}/", feeds)
            built.outputs += [f"r{number}{tag}/{name}" for name in region.outputs]
    values: dict[str, np.ndarray] = {}
    models = {id(b): (s, b) for s, b in sides.values()}
    for side, built in models.values():
        runner = OnnxRunner(built.model(side.view.model), arrays=built.arrays.get, spin=False)
        outputs = runner.run(built.feeds)
        values.update(zip(runner.output_names, outputs, strict=True))
    for number, result in enumerate(checked):
        for name in result.region.outputs:
            ours, theirs = values.get(f"r{number}o/{name}"), values.get(f"r{number}f/{name}")
            if ours is None or theirs is None:
                raise RunnerUnavailable("the runtime did not return a region's output")
            result.numeric.append(
                bounds.numeric(name, result.exact[name], ours, theirs, result.dtypes[name], scale)
            )


# -- model outputs --------------------------------------------------------------------------
def null_fold(graph: ModelGraph, seed: int) -> dict[str, np.ndarray]:
    """Replacement values that leave every foldable BN's function unchanged in exact
    arithmetic: the producer's weight and biases and the BN's mean times r, its scale
    divided by r (r per channel in [1, 2)). A BN is left alone when one of these is read by
    anything else, or it composes with another BN."""
    from bnlint.fold.verdicts import plan

    rng = np.random.default_rng(seed + 1)
    changed: dict[str, np.ndarray] = {}
    used: set[int] = set()
    for verdict in plan(graph):
        producer, bn, kind = verdict.producer, verdict.bn, verdict.kind or ""
        if not verdict.foldable or kind == "forward_conv" or bn.subgraph or producer is None:
            continue
        if verdict.after is not None or producer.id in used:
            continue
        add_constant = None
        if verdict.add is not None:
            add_constant = next(n for n in verdict.add.inputs if graph.is_constant(n))
        names = {
            "weight": producer.input("weight"),
            "bias": producer.input("bias"),
            "add": add_constant,
            "scale": bn.input("scale"),
            "mean": bn.input("mean"),
        }
        names = {k: v for k, v in names.items() if v}
        if any(not _sole(graph, n) for n in names.values()):
            continue
        try:
            arrays = {k: np.asarray(graph.param(n)) for k, n in names.items()}
            r = rng.uniform(1.0, 2.0, int(np.size(arrays["scale"])))
            family = FAMILY.get(kind, "linear")
            if kind == "gemm" and producer.attrs.get("transB"):
                family = "conv"
            groups = int(producer.attrs.get("groups", 1))
            scaled = {
                "weight": arrays["weight"]
                * channel_factor(arrays["weight"].shape, r, family, groups),
                "scale": arrays["scale"] / r,
                "mean": arrays["mean"] * r,
            }
            last = family == "linear" or kind == "gemm"
            for key in ("bias", "add"):
                if key in arrays:
                    scaled[key] = _per_channel(arrays[key], r, last)
        except (ValueError, TypeError, KeyError):
            continue
        used.add(producer.id)
        for key, values in scaled.items():
            changed[names[key]] = np.asarray(values).astype(arrays[key].dtype)
    return changed


def _per_channel(values: np.ndarray, r: np.ndarray, last: bool) -> np.ndarray:
    """``values`` (a bias broadcasting over the output) times r along the channel axis."""
    if values.ndim == 0 or values.size == 1:
        raise ValueError("a scalar bias cannot take a per-channel factor")
    if last or values.ndim == 1:
        return values * r
    axis = next(a for a, d in enumerate(values.shape) if d == r.size)
    shape = [1] * values.ndim
    shape[axis] = -1
    return values * r.reshape(shape)


def _sole(graph: ModelGraph, name: str) -> bool:
    record = graph.tensors.get(name)
    return record is not None and not record.is_graph_output and len(set(record.consumers)) == 1


def probe_feeds(specs, input_shapes, seed: int) -> list[dict[str, np.ndarray]]:
    """Seeded feeds; a second set with every boolean input flipped when there are any."""
    from bnlint.runtime import make_feeds

    feeds = make_feeds(specs, input_shapes, batch=2, seed=seed)
    for spec in specs:
        if spec.dtype.startswith("int") and spec.name in feeds:
            feeds[spec.name] = np.ones_like(feeds[spec.name])
    flags = [s.name for s in specs if s.dtype == "bool"]
    if not flags:
        return [feeds]
    on = {**feeds, **{name: np.ones_like(feeds[name]) for name in flags}}
    return [feeds, on]


def compare_outputs(
    verification: Verification,
    runners: Mapping[str, Any],
    input_shapes: Mapping[str, Sequence[int]] | None,
    seed: int,
) -> None:
    """Model outputs: ``runners`` has ``original``, ``folded`` and optionally ``null``."""
    original, folded, null = runners["original"], runners["folded"], runners.get("null")
    probes = probe_feeds(original.inputs, input_shapes, seed)
    declared = list(original.output_names)
    worst: dict[str, bounds.Check] = {}
    for number, feeds in enumerate(probes):
        ours = dict(zip(original.output_names, original.run(feeds), strict=True))
        theirs = dict(zip(folded.output_names, folded.run(feeds), strict=True))
        noise = dict(zip(null.output_names, null.run(feeds), strict=True)) if null else {}
        for name in declared:
            if name not in theirs:
                check = bounds.Check(
                    False, float("inf"), 0.0, name, "the folded model lacks it", level="outputs"
                )
            else:
                dtype = np.asarray(ours[name]).dtype.name
                check = bounds.outputs(
                    name,
                    ours[name],
                    theirs[name],
                    noise.get(name),
                    dtype,
                    verification.tolerance_scale,
                )
            if name not in worst or check.margin < worst[name].margin:
                worst[name] = check
        verification.probes.append(
            ", ".join(f"{k}={_describe(v)}" for k, v in feeds.items() if v.dtype == bool)
            or f"seed {seed + number}"
        )
    verification.outputs = list(worst.values())


def _describe(value: np.ndarray) -> str:
    return str(bool(value.reshape(-1)[0])) if value.size else "[]"


__all__ = ["compare_outputs", "null_fold", "probe_feeds", "run_regions"]
