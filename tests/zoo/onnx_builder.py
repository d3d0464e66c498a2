"""A small builder for ONNX test graphs (onnx.helper underneath), seeded and shape-tracking.

g = GraphBuilder(opset=15)
x = g.input("x", [1, 3, 8, 8])
y = g.relu(g.bn(g.conv(x, 8)))
model = g.model(outputs=[y])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT = TensorProto.FLOAT


class GraphBuilder:
    def __init__(self, opset: int = 15, seed: int = 0, dtype: np.dtype = np.float32) -> None:
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.dtype = np.dtype(dtype)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.channels: dict[str, int] = {}
        self._counter: dict[str, int] = {}

    # -- naming -------------------------------------------------------------------------
    def _name(self, prefix: str, name: str | None = None) -> str:
        if name is not None:
            return name
        index = self._counter.get(prefix, 0)
        self._counter[prefix] = index + 1
        return f"{prefix}{index}"

    @property
    def elem_type(self) -> int:
        return helper.np_dtype_to_tensor_dtype(self.dtype)

    # -- tensors ------------------------------------------------------------------------
    def input(self, name: str, shape: Sequence[int | str], elem_type: int | None = None) -> str:
        self.inputs.append(
            helper.make_tensor_value_info(name, elem_type or self.elem_type, list(shape))
        )
        if len(shape) > 1 and isinstance(shape[1], int):
            self.channels[name] = shape[1]
        return name

    def param(self, name: str, array: np.ndarray, *, as_input: bool = False) -> str:
        array = np.asarray(array)
        if array.dtype.kind == "f":
            array = array.astype(self.dtype)
        self.initializers.append(numpy_helper.from_array(array, name))
        if as_input:
            self.inputs.append(helper.make_tensor_value_info(name, self.elem_type, array.shape))
        return name

    def node(
        self,
        op_type: str,
        inputs: Sequence[str],
        n_outputs: int = 1,
        name: str | None = None,
        **attrs: Any,
    ) -> list[str]:
        node_name = self._name(op_type.lower(), name)
        outputs = [f"{node_name}_out{i}" if i else f"{node_name}_out" for i in range(n_outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outputs, name=node_name, **attrs))
        return outputs

    # -- layers -------------------------------------------------------------------------
    def conv(
        self,
        x: str,
        cout: int,
        k: int = 3,
        *,
        name: str | None = None,
        bias: bool = True,
        groups: int = 1,
        pads: Sequence[int] | None = None,
        dilations: Sequence[int] | None = None,
        dims: int = 2,
        cin: int | None = None,
        strides: Sequence[int] | None = None,
    ) -> str:
        cin = cin if cin is not None else self.channels[x]
        node_name = self._name("conv", name)
        weight = self.param(
            f"{node_name}.weight", self.rng.normal(0, 0.3, (cout, cin // groups, *([k] * dims)))
        )
        inputs = [x, weight]
        if bias:
            inputs.append(self.param(f"{node_name}.bias", self.rng.normal(0, 0.1, cout)))
        attrs: dict[str, Any] = {"group": groups} if groups != 1 else {}
        attrs["pads"] = list(pads) if pads is not None else [k // 2] * (2 * dims)
        if dilations is not None:
            attrs["dilations"] = list(dilations)
        if strides is not None:
            attrs["strides"] = list(strides)
        (out,) = self.node("Conv", inputs, name=node_name, **attrs)
        self.channels[out] = cout
        return out

    def conv_transpose(
        self,
        x: str,
        cout: int,
        k: int = 2,
        *,
        name: str | None = None,
        groups: int = 1,
        bias: bool = True,
    ) -> str:
        cin = self.channels[x]
        node_name = self._name("convtranspose", name)
        weight = self.param(
            f"{node_name}.weight", self.rng.normal(0, 0.3, (cin, cout // groups, k, k))
        )
        inputs = [x, weight]
        if bias:
            inputs.append(self.param(f"{node_name}.bias", self.rng.normal(0, 0.1, cout)))
        attrs = {"strides": [k, k]}
        if groups != 1:
            attrs["group"] = groups
        (out,) = self.node("ConvTranspose", inputs, name=node_name, **attrs)
        self.channels[out] = cout
        return out

    def gemm(
        self,
        x: str,
        cout: int,
        *,
        name: str | None = None,
        trans_b: int = 1,
        alpha: float = 1.0,
        beta: float = 1.0,
        bias: bool = True,
    ) -> str:
        cin = self.channels[x]
        node_name = self._name("gemm", name)
        shape = (cout, cin) if trans_b else (cin, cout)
        inputs = [x, self.param(f"{node_name}.weight", self.rng.normal(0, 0.3, shape))]
        if bias:
            inputs.append(self.param(f"{node_name}.bias", self.rng.normal(0, 0.1, cout)))
        attrs: dict[str, Any] = {"transB": trans_b}
        if alpha != 1.0:
            attrs["alpha"] = alpha
        if beta != 1.0:
            attrs["beta"] = beta
        (out,) = self.node("Gemm", inputs, name=node_name, **attrs)
        self.channels[out] = cout
        return out

    def matmul(self, x: str, cout: int, *, name: str | None = None, cin: int | None = None) -> str:
        cin = cin if cin is not None else self.channels[x]
        node_name = self._name("matmul", name)
        weight = self.param(f"{node_name}.weight", self.rng.normal(0, 0.3, (cin, cout)))
        (out,) = self.node("MatMul", [x, weight], name=node_name)
        self.channels[out] = cout
        return out

    def bn_params(self, prefix: str, c: int, stats: str = "trained") -> list[str]:
        """scale, bias, mean, var initializers; ``stats``: trained | untrained | custom."""
        if stats == "untrained":
            scale, bias, mean, var = np.ones(c), np.zeros(c), np.zeros(c), np.ones(c)
        else:
            scale = self.rng.uniform(0.5, 1.5, c)
            bias = self.rng.normal(0, 0.2, c)
            mean = self.rng.normal(0, 0.5, c)
            var = self.rng.uniform(0.3, 2.0, c)
        names = ("weight", "bias", "running_mean", "running_var")
        return [
            self.param(f"{prefix}.{n}", v)
            for n, v in zip(names, (scale, bias, mean, var), strict=True)
        ]

    def bn(
        self,
        x: str,
        *,
        name: str | None = None,
        c: int | None = None,
        training: bool = False,
        eps: float | None = None,
        momentum: float | None = None,
        stats: str = "trained",
        params: Sequence[str] | None = None,
        extra_outputs: int | None = None,
    ) -> str:
        c = c if c is not None else self.channels[x]
        node_name = self._name("bn", name)
        inputs = [x, *(params if params is not None else self.bn_params(node_name, c, stats))]
        attrs: dict[str, Any] = {}
        if eps is not None:
            attrs["epsilon"] = eps
        if momentum is not None:
            attrs["momentum"] = momentum
        n_outputs = 1
        if self.opset >= 14:
            if training:
                attrs["training_mode"] = 1
                n_outputs = 3 if extra_outputs is None else 1 + extra_outputs
        elif training:
            n_outputs = 5 if extra_outputs is None else 1 + extra_outputs
        if self.opset < 7:
            attrs["is_test"] = 0 if training else 1
        outputs = self.node(
            "BatchNormalization", inputs, n_outputs=n_outputs, name=node_name, **attrs
        )
        self.channels[outputs[0]] = c
        return outputs[0]

    def unary(self, op_type: str, x: str, name: str | None = None, **attrs: Any) -> str:
        (out,) = self.node(op_type, [x], name=name, **attrs)
        if x in self.channels:
            self.channels[out] = self.channels[x]
        return out

    def relu(self, x: str, name: str | None = None) -> str:
        return self.unary("Relu", x, name)

    def add(self, a: str, b: str, name: str | None = None) -> str:
        (out,) = self.node("Add", [a, b], name=name)
        self.channels[out] = self.channels.get(a, self.channels.get(b, 0))
        return out

    def dropout(self, x: str, name: str | None = None, ratio: float = 0.5) -> str:
        if self.opset >= 12:
            ratio_name = self.param(self._name("ratio"), np.array(ratio, dtype=self.dtype))
            (out,) = self.node("Dropout", [x, ratio_name], name=name)
        else:
            (out,) = self.node("Dropout", [x], name=name, ratio=ratio)
        self.channels[out] = self.channels[x]
        return out

    def global_pool(self, x: str, name: str | None = None) -> str:
        return self.unary("GlobalAveragePool", x, name)

    def flatten(self, x: str, name: str | None = None) -> str:
        return self.unary("Flatten", x, name, axis=1)

    # -- model --------------------------------------------------------------------------
    def graph(
        self,
        outputs: Sequence[str],
        name: str = "g",
        output_shapes: dict[str, Sequence[int | str]] | None = None,
    ) -> onnx.GraphProto:
        shapes = output_shapes or {}
        return helper.make_graph(
            self.nodes,
            name,
            self.inputs,
            [helper.make_tensor_value_info(o, self.elem_type, shapes.get(o)) for o in outputs],
            self.initializers,
        )

    def model(
        self,
        outputs: Sequence[str],
        *,
        ir_version: int | None = None,
        infer: bool = True,
        output_shapes: dict[str, Sequence[int | str]] | None = None,
    ) -> onnx.ModelProto:
        model = helper.make_model(
            self.graph(outputs, output_shapes=output_shapes),
            opset_imports=[helper.make_opsetid("", self.opset)],
            producer_name="bnlint-tests",
        )
        model.ir_version = ir_version if ir_version is not None else _ir_for_opset(self.opset)
        if infer:
            model = onnx.shape_inference.infer_shapes(model)
            type_outputs_from_value_info(model.graph)
        return model


def type_outputs_from_value_info(graph: onnx.GraphProto) -> None:
    """Give graph outputs the shapes inference found (the checker wants typed outputs)."""
    inferred = {value.name: value for value in graph.value_info}
    for output in graph.output:
        if not output.type.tensor_type.HasField("shape") and output.name in inferred:
            output.type.CopyFrom(inferred[output.name].type)


def _ir_for_opset(opset: int) -> int:
    table = [(7, 3), (9, 4), (10, 5), (11, 6), (14, 7), (18, 8), (21, 10), (23, 11)]
    ir = 3
    for first_opset, version in table:
        if opset >= first_opset:
            ir = version
    return max(ir, 3) if opset > 7 else 3
