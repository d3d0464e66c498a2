"""What bnlint knows about PyTorch modules, whatever the source, and BN attributes from it.

A :class:`ModuleRecord` describes one module (path, class, mode, constants such as
``eps``/``momentum``, its tensors by state_dict name). Live modules are snapshotted
before anything runs; TorchScript archives and state dicts produce the same records
statically. :func:`add_module_nodes` turns records into nodes when no traced graph exists
(no edges), and :func:`batch_norm_attrs` is the single place BN attributes are decided.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bnlint.graph import Location, ModelGraph, ParamStore
from bnlint.loaders.torch_ops import (
    PYTORCH_DEFAULT_EPS,
    is_sync_class,
    module_class_op,
    short_class,
)

PYTORCH_DEFAULT_MOMENTUM = 0.1

CONSTANT_ATTRS = (
    "eps",
    "momentum",
    "affine",
    "track_running_stats",
    "num_features",
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "groups",
    "padding_mode",
    "output_padding",
    "in_features",
    "out_features",
    "normalized_shape",
    "num_groups",
    "p",
    "negative_slope",
    "min_val",
    "max_val",
    "output_size",
    "approximate",
)
_BAKED = "traced in train mode; training=True is baked into the TorchScript code"
_UNNAMED_CLASS = {"batch_norm": "BatchNorm"}
FORCED_ATTRS: dict[str, dict[str, Any]] = {
    "linear": {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1},
}
ROLE_TENSORS = {
    "batch_norm": ("weight", "bias", "running_mean", "running_var"),
    "conv": ("weight", "bias"),
    "conv_transpose": ("weight", "bias"),
    "linear": ("weight", "bias"),
    "layer_norm": ("weight", "bias"),
    "group_norm": ("weight", "bias"),
    "instance_norm": ("weight", "bias"),
    "rms_norm": ("weight",),
}


@dataclass
class ModuleRecord:
    """One module: path (``layer1.0.bn1``; ``""`` for the root), class, mode, constants.

    ``tensors`` maps the module's own parameter/buffer names to their state_dict names,
    or to None when the attribute exists but is None (``running_mean`` of a BN with
    ``track_running_stats=False``). ``op`` forces the canonical op (state dicts, where
    the class is unknown and a BN is recognised by its buffers).
    """

    path: str
    qualname: str = ""
    training: bool | None = None
    constants: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, str | None] = field(default_factory=dict)
    has_children: bool = False
    op: str | None = None

    @property
    def class_name(self) -> str:
        return short_class(self.qualname) if self.qualname else ""


def canonical_module_op(record: ModuleRecord) -> tuple[str, dict[str, Any]] | None:
    """The canonical op a leaf module computes (forced for state dicts, else by class)."""
    if record.op is not None:
        return record.op, dict(FORCED_ATTRS.get(record.op, {}))
    return module_class_op(record.qualname, record.constants)


def snapshot_module(module: Any) -> tuple[dict[str, ModuleRecord], dict[str, bool]]:
    """Records for every module of a live ``nn.Module`` and ``requires_grad`` by name.

    Only reads attributes: call it before anything runs the model.
    """
    records: dict[str, ModuleRecord] = {}
    requires_grad: dict[str, bool] = {}
    for path, sub in module.named_modules(remove_duplicate=False):
        if path in records:
            continue
        kind = type(sub)
        record = ModuleRecord(
            path=path,
            qualname=f"{kind.__module__}.{kind.__qualname__}",
            training=bool(getattr(sub, "training", False)),
            has_children=any(True for _ in sub.named_children()),
        )
        record.constants.update(plain_constants(sub))
        prefix = f"{path}." if path else ""
        for name, tensor in (*sub._parameters.items(), *sub._buffers.items()):
            record.tensors[name] = f"{prefix}{name}" if tensor is not None else None
            if tensor is not None and name in sub._parameters:
                requires_grad[f"{prefix}{name}"] = bool(tensor.requires_grad)
        counter = sub._buffers.get("num_batches_tracked")
        if counter is not None and counter.numel() == 1:
            record.constants["num_batches_tracked"] = int(counter.item())
        records[path] = record
    return records, requires_grad


def plain_constants(module: Any) -> dict[str, Any]:
    """The module's hyper-parameters (``eps``, ``momentum``, ``stride`` …) that are plain values."""
    found = {}
    for name in CONSTANT_ATTRS:
        try:
            value = getattr(module, name)
        except Exception:  # absent (AttributeError) or a property that fails: not known
            continue
        if _is_plain(value):
            found[name] = list(value) if isinstance(value, tuple) else value
    return found


def records_from_tensor_names(
    shapes: Mapping[str, tuple | None] | Iterable[str],
) -> dict[str, ModuleRecord]:
    """Layers of a flat state dict, in its order: BN by its ``running_mean``/``running_var``;
    with shapes, a conv by a weight of rank 3 to 5 and a Linear by a 2-D weight next to a
    bias or alone (the class itself is not stored, so these ops are forced)."""
    named = shapes if isinstance(shapes, Mapping) else dict.fromkeys(shapes)
    groups: dict[str, dict[str, str | None]] = {}
    for name in named:
        prefix, _, local = name.rpartition(".")
        groups.setdefault(prefix, {})[local] = name
    records = {}
    for prefix, tensors in groups.items():
        weight = named.get(tensors.get("weight", ""))
        if "running_mean" in tensors and "running_var" in tensors:
            op = "batch_norm"
        elif weight is not None and 3 <= len(weight) <= 5 and set(tensors) <= {"weight", "bias"}:
            op = "conv"
        elif weight is not None and len(weight) == 2 and set(tensors) <= {"weight", "bias"}:
            op = "linear"
        else:
            continue
        records[prefix] = ModuleRecord(path=prefix, op=op, tensors=tensors)
    return records


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and all(_is_plain(item) for item in value)


def batch_norm_attrs(
    record: ModuleRecord | None,
    *,
    graph_training: bool | None = None,
    graph_momentum: float | None = None,
    graph_eps: float | None = None,
    has_weight: bool = True,
    has_running_stats: bool = True,
    weight: str | None = None,
    bias: str | None = None,
    running_mean: str | None = None,
    params: ParamStore | None = None,
    requires_grad: Mapping[str, bool] | None = None,
    root_training: bool | None = None,
    graph_evidence: str = "exported with training=True",
    extra_outputs: int = 0,
) -> dict[str, Any]:
    """BN attributes in bnlint's conventions: module facts win over what a trace baked in."""
    constants = record.constants if record is not None else {}
    eps = constants.get("eps", graph_eps)
    momentum_known = "momentum" in constants or graph_momentum is not None
    momentum = constants.get("momentum", graph_momentum)
    if not momentum_known:
        momentum = PYTORCH_DEFAULT_MOMENTUM
    track = constants.get("track_running_stats")
    training, evidence = _training(record, graph_training, root_training, graph_evidence)
    qualname = record.qualname if record is not None and record.qualname else None
    prefix = record.path if record is not None else _prefix(running_mean or weight)
    flags = requires_grad or {}
    affine_grad = None
    if weight in flags or bias in flags:
        affine_grad = (flags.get(weight or ""), flags.get(bias or ""))
    return {
        "eps": float(eps) if isinstance(eps, (int, float)) else PYTORCH_DEFAULT_EPS,
        "eps_explicit": isinstance(eps, (int, float)),
        "momentum": float(momentum) if isinstance(momentum, (int, float)) else None,
        "source_momentum": momentum,
        "momentum_explicit": momentum_known,
        "training": training,
        "training_evidence": evidence,
        "track_running_stats": bool(track) if track is not None else has_running_stats,
        "running_stats_present": has_running_stats,
        "affine": bool(constants.get("affine", has_weight)),
        "num_batches_tracked": _counter(constants, prefix, params),
        "sync": is_sync_class(qualname),
        "affine_requires_grad": affine_grad,
        "module_class": qualname,
        "extra_outputs": extra_outputs,
        "spatial": 1,
    }


def _training(
    record: ModuleRecord | None,
    graph_training: bool | None,
    root_training: bool | None,
    graph_evidence: str,
) -> tuple[bool, str]:
    constants = record.constants if record is not None else {}
    if constants.get("traced_training") is not None:
        baked = bool(constants["traced_training"])
        if baked and record is not None and record.training is False:
            return True, f"{_BAKED} although module.training=False"
        if baked:
            return True, _BAKED
        return False, "traced with training=False"
    if record is not None and record.training is not None:
        if not record.training:
            return False, "module.training=False"
        if root_training is False:
            return True, "module.training=True inside a model in eval mode: mixed modes"
        return True, "module.training=True"
    if graph_training:
        return True, graph_evidence
    if graph_training is None and record is None:
        return False, "mode unknown"
    return False, "training=False"


def _prefix(name: str | None) -> str | None:
    if not name or "." not in name:
        return "" if name else None
    return name.rsplit(".", 1)[0]


def _counter(
    constants: Mapping[str, Any], prefix: str | None, params: ParamStore | None
) -> int | None:
    if "num_batches_tracked" in constants:
        return constants["num_batches_tracked"]
    if prefix is None or params is None:
        return None
    name = f"{prefix}.num_batches_tracked" if prefix else "num_batches_tracked"
    if name not in params:
        return None
    try:
        value = params.get(name)
    except Exception:  # an unreadable counter is simply unknown
        return None
    return int(value.reshape(-1)[0]) if value.size == 1 else None


def module_bn_attrs(
    record: ModuleRecord,
    params: ParamStore,
    requires_grad: Mapping[str, bool] | None,
    root_training: bool | None,
) -> dict[str, Any]:
    """BN attributes of a BN module known only from its record (no traced call)."""
    tensors = record.tensors
    return batch_norm_attrs(
        record,
        has_weight=bool(tensors.get("weight")),
        has_running_stats=bool(tensors.get("running_mean")),
        weight=tensors.get("weight"),
        bias=tensors.get("bias"),
        running_mean=tensors.get("running_mean"),
        params=params,
        requires_grad=requires_grad,
        root_training=root_training,
    )


def add_module_nodes(
    graph: ModelGraph,
    records: Mapping[str, ModuleRecord],
    requires_grad: Mapping[str, bool] | None = None,
) -> int:
    """One node per leaf module of a known kind, without edges; returns how many."""
    root = records.get("")
    root_training = root.training if root is not None else None
    added = 0
    for record in records.values():
        if record.has_children and record.op is None:
            continue
        mapped = canonical_module_op(record)
        if mapped is None:
            continue
        op, attrs = mapped
        inputs = [""] + [record.tensors.get(role) or "" for role in ROLE_TENSORS.get(op, ())]
        while len(inputs) > 1 and not inputs[-1]:
            inputs.pop()
        if op == "batch_norm":
            attrs = module_bn_attrs(record, graph.params, requires_grad, root_training)
        name = record.path or "<root>"
        graph.add_node(
            op,
            record.class_name or _UNNAMED_CLASS.get(op, op),
            name,
            inputs,
            [f"{name}:output"],  # unconnected: this graph has no edges
            attrs=attrs,
            scope=record.path or None,
            location=Location(file=graph.path),
        )
        added += 1
    return added
