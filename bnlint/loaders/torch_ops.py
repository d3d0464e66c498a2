"""PyTorch operators and module classes -> bnlint's canonical ops and attributes.

The counterpart of ``onnx_ops``: aten calls (from ``.pt2``, ``torch.export`` and
TorchScript graphs) and leaf module classes (module trees read without a graph) map to
the same canonical ops, with ONNX-style attributes (``pads`` as begin+end, ``strides``,
``groups``, Gemm-like ``transB`` for ``linear``), so rules see one vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

PYTORCH_DEFAULT_EPS = 1e-5

_ACTIVATIONS = {
    "relu": "relu",
    "gelu": "gelu",
    "silu": "silu",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "hardswish": "hard_swish",
    "hardsigmoid": "hard_sigmoid",
    "hardtanh": "clip",  # ReLU6; ONNX exports it as Clip
    "relu6": "clip",
    "clamp": "clip",
    "clip": "clip",
    "clamp_min": "clip",
    "leaky_relu": "leaky_relu",
    "elu": "elu",
    "selu": "selu",
    "celu": "celu",
    "softplus": "softplus",
    "mish": "mish",
    "prelu": "prelu",
    "_prelu_kernel": "prelu",
    "glu": "glu",
}
BATCH_NORM = {
    "batch_norm",
    "native_batch_norm",
    "_native_batch_norm_legit",
    "_native_batch_norm_legit_no_training",
    "_native_batch_norm_legit_functional",
    "_batch_norm_with_update",
    "_batch_norm_with_update_functional",
    "_batch_norm_no_update",
    "cudnn_batch_norm",
    "miopen_batch_norm",
    "_batch_norm_impl_index",
}
_SIMPLE = {
    "linear": "linear",
    "layer_norm": "layer_norm",
    "native_layer_norm": "layer_norm",
    "group_norm": "group_norm",
    "native_group_norm": "group_norm",
    "instance_norm": "instance_norm",
    "rms_norm": "rms_norm",
    "_fused_rms_norm": "rms_norm",
    "dropout": "dropout",
    "feature_dropout": "dropout",
    "alpha_dropout": "dropout",
    "feature_alpha_dropout": "dropout",
    "native_dropout": "dropout",
    "add": "add",
    "sub": "sub",
    "rsub": "sub",
    "mul": "mul",
    "div": "div",
    "cat": "concat",
    "concat": "concat",
    "stack": "concat",
    "split": "split",
    "split_with_sizes": "split",
    "chunk": "split",
    "unbind": "split",
    "tensor_split": "split",
    "view": "reshape",
    "reshape": "reshape",
    "_unsafe_view": "reshape",
    "squeeze": "reshape",
    "unsqueeze": "reshape",
    "view_as": "reshape",
    "reshape_as": "reshape",
    "permute": "transpose",
    "transpose": "transpose",
    "t": "transpose",
    "swapaxes": "transpose",
    "movedim": "transpose",
    "flatten": "flatten",
    "softmax": "softmax",
    "_softmax": "softmax",
    "log_softmax": "softmax",
    "_log_softmax": "softmax",
    "clone": "identity",
    "alias": "identity",
    "contiguous": "identity",
    "detach": "identity",
    "lift_fresh_copy": "identity",
    "_to_copy": "cast",
    "to": "cast",
    "type_as": "cast",
    "pad": "pad",
    "constant_pad_nd": "pad",
    "reflection_pad1d": "pad",
    "reflection_pad2d": "pad",
    "replication_pad2d": "pad",
    "upsample_nearest2d": "resize",
    "upsample_bilinear2d": "resize",
    "upsample_nearest1d": "resize",
    "_upsample_nearest_exact2d": "resize",
    "mm": "matmul",
    "bmm": "matmul",
    "matmul": "matmul",
}
_POOL = re.compile(r"^(_?adaptive_)?(max|avg)_pool(\d)d(_with_indices)?$")
_CONV = re.compile(r"^(conv(\d)d|conv_transpose(\d)d|_?convolution)$")
# Bookkeeping with no dataflow meaning for the rules.
SKIP = {
    "_assert_tensor_metadata",
    "_assert_scalar",
    "sym_size",
    "sym_numel",
    "sym_stride",
    "sym_constrain_range",
    "sym_constrain_range_for_size",
    "_assert_async",
    "copy_",
}
ROLE_ARGS: dict[str, tuple[tuple[str, ...], ...]] = {
    "conv": (("input", "self"), ("weight",), ("bias",)),
    "conv_transpose": (("input", "self"), ("weight",), ("bias",)),
    "linear": (("input", "self"), ("weight", "other", "mat2"), ("bias",)),
    "batch_norm": (("input",), ("weight",), ("bias",), ("running_mean",), ("running_var",)),
    "layer_norm": (("input",), ("weight",), ("bias",)),
    "group_norm": (("input",), ("weight",), ("bias",)),
    "instance_norm": (("input",), ("weight",), ("bias",)),
    "rms_norm": (("input",), ("weight",)),
}
HOP_CONTROL_FLOW = {"cond", "while_loop", "map", "scan", "associative_scan"}

_BN_CLASS = re.compile(r"BatchNorm|SyncBN|BatchNormAct")
_CONV_CLASS = re.compile(r"^(Lazy)?Conv(\d)d$")
_CONV_T_CLASS = re.compile(r"^(Lazy)?ConvTranspose(\d)d$")
_CLASS_OPS: dict[str, tuple[str, dict[str, Any]]] = {
    "Linear": ("linear", {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1}),
    "LazyLinear": ("linear", {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1}),
    "NonDynamicallyQuantizableLinear": (
        "linear",
        {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1},
    ),
    "LayerNorm": ("layer_norm", {}),
    "GroupNorm": ("group_norm", {}),
    "InstanceNorm1d": ("instance_norm", {}),
    "InstanceNorm2d": ("instance_norm", {}),
    "InstanceNorm3d": ("instance_norm", {}),
    "RMSNorm": ("rms_norm", {}),
    "Dropout": ("dropout", {}),
    "Dropout1d": ("dropout", {}),
    "Dropout2d": ("dropout", {}),
    "Dropout3d": ("dropout", {}),
    "AlphaDropout": ("dropout", {}),
    "ReLU": ("activation", {"kind": "relu"}),
    "ReLU6": ("activation", {"kind": "clip", "min": 0.0, "max": 6.0}),
    "Hardtanh": ("activation", {"kind": "clip"}),
    "GELU": ("activation", {"kind": "gelu"}),
    "SiLU": ("activation", {"kind": "silu"}),
    "Sigmoid": ("activation", {"kind": "sigmoid"}),
    "Tanh": ("activation", {"kind": "tanh"}),
    "Hardswish": ("activation", {"kind": "hard_swish"}),
    "Hardsigmoid": ("activation", {"kind": "hard_sigmoid"}),
    "LeakyReLU": ("activation", {"kind": "leaky_relu"}),
    "ELU": ("activation", {"kind": "elu"}),
    "SELU": ("activation", {"kind": "selu"}),
    "CELU": ("activation", {"kind": "celu"}),
    "Softplus": ("activation", {"kind": "softplus"}),
    "Mish": ("activation", {"kind": "mish"}),
    "PReLU": ("activation", {"kind": "prelu"}),
    "Flatten": ("flatten", {}),
    "Identity": ("identity", {}),
    "Softmax": ("softmax", {}),
}


def short_class(qualname: str) -> str:
    return qualname.rpartition(".")[2]


def is_batch_norm_class(qualname: str) -> bool:
    return bool(_BN_CLASS.search(short_class(qualname)))


def is_sync_class(qualname: str | None) -> bool:
    name = short_class(qualname or "")
    return "SyncBatchNorm" in name or "SyncBN" in name


def module_class_op(
    qualname: str, constants: Mapping[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    """The canonical op a leaf module of class ``qualname`` computes (None if unknown)."""
    name = short_class(qualname)
    if is_batch_norm_class(qualname):
        return "batch_norm", {}
    if _CONV_CLASS.match(name):
        return "conv", conv_attrs(constants)
    if _CONV_T_CLASS.match(name):
        return "conv_transpose", conv_attrs(constants)
    match = re.match(r"^(Adaptive)?(Max|Avg)Pool(\d)d$", name)
    if match:
        kind = "max" if match.group(2) == "Max" else "average"
        if match.group(1):
            size = constants.get("output_size")
            sizes = size if isinstance(size, (list, tuple)) else [size]
            prefix = "global" if all(s == 1 for s in sizes) else "adaptive"
            return "pool", {"kind": f"{prefix}_{kind}"}
        return "pool", {"kind": kind}
    if name in _CLASS_OPS:
        op, attrs = _CLASS_OPS[name]
        attrs = dict(attrs)
        if op in ("layer_norm", "group_norm", "instance_norm", "rms_norm"):
            eps = constants.get("eps")
            attrs["eps"] = float(eps) if isinstance(eps, (int, float)) else PYTORCH_DEFAULT_EPS
        return op, attrs
    return None


def conv_attrs(constants: Mapping[str, Any]) -> dict[str, Any]:
    """Conv attributes from a module's constants (``stride``, ``padding`` …)."""
    padding = constants.get("padding")
    attrs: dict[str, Any] = {
        "groups": int(constants.get("groups") or 1),
        "strides": _ints(constants.get("stride")),
        "dilations": _ints(constants.get("dilation")),
        "auto_pad": "NOTSET",
        "pads": None,
    }
    if isinstance(padding, str):
        attrs["auto_pad"] = "SAME_UPPER" if padding == "same" else "VALID"
    elif _ints(padding) is not None:
        pads = _ints(padding) or []
        attrs["pads"] = pads + pads
    return attrs


def aten_canonical(
    op_name: str,
    target: str,
    args: dict[str, Any],
    is_param: Callable[[Any], bool],
    weight_rank: int | None,
) -> tuple[str, dict[str, Any]]:
    """The canonical op and ONNX-style attributes of one aten call."""
    base = op_name[:-1] if op_name.endswith("_") and not op_name.startswith("_") else op_name
    if op_name in BATCH_NORM:
        return "batch_norm", {}
    if target.startswith("higher_order."):
        return ("control_flow" if base in HOP_CONTROL_FLOW else "other"), {}
    conv = _CONV.match(base)
    if conv:
        transposed = bool(conv.group(3)) or bool(args.get("transposed"))
        return ("conv_transpose" if transposed else "conv"), _conv_attrs(
            args, transposed, weight_rank
        )
    if base in _ACTIVATIONS:
        return "activation", _activation_attrs(_ACTIVATIONS[base], args)
    pool = _POOL.match(base)
    if pool:
        return "pool", _pool_attrs(pool, args)
    op = _SIMPLE.get(base)
    if op is None:
        return "other", {}
    attrs: dict[str, Any] = {}
    if op == "linear":
        attrs = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1}
    elif op == "matmul":
        other = args.get("other", args.get("mat2"))
        if is_param(other):
            return "linear", {
                "alpha": 1.0,
                "beta": 1.0,
                "transA": 0,
                "transB": 0,
                "matmul": True,
            }
    elif op in ("layer_norm", "group_norm", "instance_norm", "rms_norm"):
        eps = args.get("eps")
        attrs = {"eps": float(eps) if isinstance(eps, (int, float)) else 1e-5}
        if op == "group_norm":
            attrs["num_groups"] = args.get("num_groups", args.get("group"))
    elif op == "dropout":
        attrs = {"ratio": args.get("p"), "train": args.get("train", args.get("training"))}
    elif op in ("concat", "softmax"):
        attrs = {"axis": args.get("dim")}
    elif op == "transpose":
        dims = args.get("dims")
        attrs = (
            {"perm": dims} if dims is not None else {"dims": [args.get("dim0"), args.get("dim1")]}
        )
    elif op == "flatten":
        attrs = {"start_dim": args.get("start_dim", 0), "end_dim": args.get("end_dim", -1)}
    return op, attrs


def _conv_attrs(args: dict[str, Any], transposed: bool, kernel_rank: int | None) -> dict[str, Any]:
    strides = _ints(args.get("stride"))
    dilations = _ints(args.get("dilation"))
    padding = args.get("padding")
    rank = kernel_rank or len(strides or dilations or [0, 0])
    attrs: dict[str, Any] = {
        "groups": int(args.get("groups") or 1),
        "strides": _expand(strides, rank),
        "dilations": _expand(dilations, rank),
        "auto_pad": "NOTSET",
    }
    if isinstance(padding, str):
        attrs["auto_pad"] = "SAME_UPPER" if padding == "same" else "VALID"
        attrs["pads"] = None if padding == "same" else [0] * (2 * rank)
    else:
        pads = _expand(_ints(padding), rank) or [0] * rank
        attrs["pads"] = pads + pads
    if transposed:
        attrs["output_padding"] = _expand(_ints(args.get("output_padding")), rank)
    return attrs


def _activation_attrs(kind: str, args: dict[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {"kind": kind}
    if kind == "leaky_relu":
        attrs["alpha"] = args.get("negative_slope", 0.01)
    elif kind == "clip":
        attrs["min"] = args.get("min_val", args.get("min"))
        attrs["max"] = args.get("max_val", args.get("max"))
    elif kind == "gelu":
        attrs["approximate"] = args.get("approximate", "none")
    return attrs


def _pool_attrs(match: re.Match[str], args: dict[str, Any]) -> dict[str, Any]:
    adaptive, kind = bool(match.group(1)), "max" if match.group(2) == "max" else "average"
    if adaptive:
        size = _ints(args.get("output_size")) or []
        if size and all(s == 1 for s in size):
            return {"kind": f"global_{kind}", "output_size": size}
        return {"kind": f"adaptive_{kind}", "output_size": size}
    rank = int(match.group(3))
    pads = _expand(_ints(args.get("padding")), rank) or [0] * rank
    return {
        "kind": kind,
        "kernel_shape": _expand(_ints(args.get("kernel_size")), rank),
        "strides": _expand(_ints(args.get("stride")), rank),
        "pads": pads + pads,
    }


def _ints(value: Any) -> list[int] | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
        return [int(v) for v in value]
    return None


def _expand(values: list[int] | None, rank: int) -> list[int] | None:
    if values is None:
        return None
    if len(values) == 1 and rank > 1:
        return values * rank
    return values


def as_float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return None
