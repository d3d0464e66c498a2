"""ONNX operator types -> bnlint's canonical vocabulary, with attributes normalised.

One convention per quantity: ``momentum`` is the weight of the new batch statistic
(PyTorch's), ``eps`` is always present, ``groups`` replaces ``group``, ``training`` is a
bool whatever the opset expressed it with.
"""

from __future__ import annotations

from typing import Any

# epsilon is a float (float32) attribute: its default is float32(1e-5), which is what
# ONNX Runtime computes with in a float64 BN too.
ONNX_DEFAULT_EPS = 9.999999747378752e-06
ONNX_DEFAULT_MOMENTUM = 0.9
STANDARD_DOMAINS = frozenset(
    {"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "ai.onnx.preview.training"}
)

ACTIVATIONS = {
    "Relu": "relu",
    "LeakyRelu": "leaky_relu",
    "PRelu": "prelu",
    "Elu": "elu",
    "Selu": "selu",
    "Celu": "celu",
    "Gelu": "gelu",
    "FastGelu": "gelu",
    "BiasGelu": "gelu",
    "Sigmoid": "sigmoid",
    "HardSigmoid": "hard_sigmoid",
    "HardSwish": "hard_swish",
    "Swish": "silu",
    "Tanh": "tanh",
    "Softplus": "softplus",
    "Softsign": "softsign",
    "Mish": "mish",
    "ThresholdedRelu": "thresholded_relu",
    "Clip": "clip",
}
POOLS = {
    "MaxPool": "max",
    "AveragePool": "average",
    "GlobalAveragePool": "global_average",
    "GlobalMaxPool": "global_max",
    "LpPool": "lp",
    "GlobalLpPool": "global_lp",
    "MaxRoiPool": "roi",
}
SIMPLE = {
    "Conv": "conv",
    "ConvTranspose": "conv_transpose",
    "Gemm": "linear",
    "BatchNormalization": "batch_norm",
    "LayerNormalization": "layer_norm",
    "SimplifiedLayerNormalization": "rms_norm",
    "RMSNormalization": "rms_norm",
    "GroupNormalization": "group_norm",
    "InstanceNormalization": "instance_norm",
    "Dropout": "dropout",
    "Add": "add",
    "Sum": "add",
    "Sub": "sub",
    "Mul": "mul",
    "Div": "div",
    "Concat": "concat",
    "Split": "split",
    "Reshape": "reshape",
    "Squeeze": "reshape",
    "Unsqueeze": "reshape",
    "Transpose": "transpose",
    "Flatten": "flatten",
    "Identity": "identity",
    "Cast": "cast",
    "CastLike": "cast",
    "Pad": "pad",
    "Resize": "resize",
    "Upsample": "resize",
    "Softmax": "softmax",
    "LogSoftmax": "softmax",
    "If": "control_flow",
    "Loop": "control_flow",
    "Scan": "control_flow",
}


def canonical_op(op_type: str, domain: str, weight_is_param: bool) -> tuple[str, dict[str, Any]]:
    """The canonical op and any attributes implied by the op type itself."""
    if domain not in STANDARD_DOMAINS:
        return "other", {}
    if op_type in ACTIVATIONS:
        return "activation", {"kind": ACTIVATIONS[op_type]}
    if op_type in POOLS:
        return "pool", {"kind": POOLS[op_type]}
    if op_type == "MatMul":
        # A MatMul by a constant matrix is a Linear layer without bias (PyTorch exports
        # nn.Linear on 3-D inputs this way); between two activations it is attention math.
        if weight_is_param:
            return "linear", {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0, "matmul": True}
        return "matmul", {}
    return SIMPLE.get(op_type, "other"), {}


def normalize(
    op: str, op_type: str, attrs: dict[str, Any], outputs: list[str], opset: int
) -> dict[str, Any]:
    """Rewrite raw ONNX attributes into bnlint's conventions for ``op``."""
    if op == "batch_norm":
        return _batch_norm(op_type, attrs, outputs, opset)
    if op in ("conv", "conv_transpose"):
        attrs["groups"] = int(attrs.pop("group", 1))
        attrs.setdefault("dilations", None)
        attrs.setdefault("strides", None)
        attrs.setdefault("pads", None)
        attrs.setdefault("auto_pad", "NOTSET")
    elif op == "linear" and op_type == "Gemm":
        attrs.setdefault("alpha", 1.0)
        attrs.setdefault("beta", 1.0)
        attrs.setdefault("transA", 0)
        attrs.setdefault("transB", 0)
    elif op in ("layer_norm", "group_norm", "instance_norm", "rms_norm"):
        attrs["eps"] = float(attrs.pop("epsilon", ONNX_DEFAULT_EPS))
    return attrs


def _batch_norm(
    op_type: str, attrs: dict[str, Any], outputs: list[str], opset: int
) -> dict[str, Any]:
    used_outputs = [name for name in outputs if name]
    if opset >= 14:
        training = bool(attrs.get("training_mode", 0))
        how = "training_mode=1" if training else "training_mode=0"
    elif opset >= 7:
        training = len(used_outputs) > 1
        how = f"{len(used_outputs)} outputs (opset {opset} marks training by its extra outputs)"
    else:
        training = not attrs.get("is_test", 0)
        how = f"is_test={attrs.get('is_test', 0)}"
    onnx_momentum = float(attrs.get("momentum", ONNX_DEFAULT_MOMENTUM))
    return {
        "eps": float(attrs.get("epsilon", ONNX_DEFAULT_EPS)),
        "eps_explicit": "epsilon" in attrs,
        "momentum": 1.0 - onnx_momentum,
        "source_momentum": onnx_momentum,
        "momentum_explicit": "momentum" in attrs,
        "training": training,
        "training_evidence": how,
        "track_running_stats": True,
        "affine": True,
        "extra_outputs": max(len(used_outputs) - 1, 0),
        "spatial": int(attrs.get("spatial", 1)),
    }
