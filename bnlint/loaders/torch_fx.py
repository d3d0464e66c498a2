"""In-memory FX graphs -> ModelGraph: an ``ExportedProgram`` (aten level) or a
``torch.fx.symbolic_trace`` GraphModule (module level, the fallback tracer).

Imported only after torch is known to be importable.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import operator
from typing import Any

import torch

from bnlint.graph import Location, ModelGraph
from bnlint.loaders.pt2 import module_path
from bnlint.loaders.torch_aten import AtenCall, AtenGraphBuilder, Ref
from bnlint.loaders.torch_modules import (
    ROLE_TENSORS,
    ModuleRecord,
    canonical_module_op,
    module_bn_attrs,
)


def _value(arg: Any) -> Any:
    if isinstance(arg, torch.fx.Node):
        return Ref(arg.name)
    if isinstance(arg, (list, tuple)):
        return [_value(item) for item in arg]
    if isinstance(arg, (torch.dtype, torch.device, torch.memory_format, torch.layout)):
        return str(arg).replace("torch.", "")
    if isinstance(arg, (bool, int, float, str)) or arg is None:
        return arg
    return str(arg)


def _shape_of(value: Any) -> tuple[tuple[int | str, ...], str] | None:
    if isinstance(value, torch.Tensor):
        shape = tuple(int(d) if isinstance(d, int) else str(d) for d in value.shape)
        return shape, str(value.dtype).replace("torch.", "")
    return None


def _set_shape(graph: ModelGraph, name: str, value: Any) -> None:
    found = _shape_of(value)
    if found is not None:
        record = graph.tensor(name)
        record.shape = record.shape or found[0]
        record.dtype = record.dtype or found[1]


def _module_stack(node: torch.fx.Node) -> list[tuple[str, str]]:
    stack = node.meta.get("nn_module_stack") or {}
    entries = []
    for path, kind in stack.values():
        qualname = kind if isinstance(kind, str) else f"{kind.__module__}.{kind.__qualname__}"
        entries.append((module_path(str(path)), qualname))
    return entries


def _named_args(target: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    schema = getattr(target, "_schema", None)
    if schema is not None:
        names = [argument.name for argument in schema.arguments]
    else:
        try:
            bound = inspect.signature(target).bind_partial(*args, **kwargs)
            return {name: _value(value) for name, value in bound.arguments.items()}
        except (TypeError, ValueError):
            names = ["self", "other"] + [f"arg{i}" for i in range(2, len(args))]
    named = {name: _value(value) for name, value in zip(names, args, strict=False)}
    named.update({name: _value(value) for name, value in kwargs.items()})
    return named


def add_exported_program(graph: ModelGraph, program: Any, builder: AtenGraphBuilder) -> list[str]:
    """Add an ExportedProgram's nodes; returns the user input names in order."""
    for spec in program.graph_signature.input_specs:
        if spec.target is not None and hasattr(spec.arg, "name"):
            builder.rename[spec.arg.name] = spec.target
    user_inputs = list(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder":
            name = builder.name(node.name)
            _set_shape(graph, name, node.meta.get("val"))
            if node.name in user_inputs:
                graph.tensor(name).is_graph_input = True
                graph.graph_inputs.append(name)
        elif node.op == "call_function":
            _add_function(graph, node, builder)
        elif node.op == "output":
            _mark_outputs(graph, node, builder, program.graph_signature.user_outputs)
    return user_inputs


def _outputs(node: torch.fx.Node) -> list[str]:
    value = node.meta.get("val")
    if isinstance(value, (list, tuple)):
        return [f"{node.name}.{index}" for index in range(len(value))]
    return [node.name]


def _add_function(graph: ModelGraph, node: torch.fx.Node, builder: AtenGraphBuilder) -> None:
    if node.target is operator.getitem:
        source, index = node.args[0], node.args[1]
        if isinstance(source, torch.fx.Node) and isinstance(index, int):
            builder.alias(node.name, f"{source.name}.{index}")
            _set_shape(graph, builder.name(node.name), node.meta.get("val"))
        return
    stack = _module_stack(node)
    for path, qualname in stack:
        builder.modules.setdefault(path, ModuleRecord(path=path, qualname=qualname))
    outputs = _outputs(node)
    call = AtenCall(
        name=node.name,
        target=_target_name(node.target),
        args=_named_args(node.target, node.args, node.kwargs),
        outputs=outputs,
        scope=(stack[-1][0] or None) if stack else None,
        module_class=stack[-1][1] if stack else None,
        stack_trace=node.meta.get("stack_trace"),
    )
    value = node.meta.get("val")
    values = value if isinstance(value, (list, tuple)) else [value]
    for name, item in zip(outputs, values, strict=False):
        _set_shape(graph, builder.name(name), item)
    builder.add(call)


def _target_name(target: Any) -> str:
    if isinstance(target, torch._ops.OpOverload):
        return str(target)  # "aten.batch_norm.default"
    if isinstance(target, torch._ops.HigherOrderOperator):
        return f"higher_order.{target.name()}"
    name = getattr(target, "__name__", str(target))
    return f"aten.{name}"


def _mark_outputs(
    graph: ModelGraph, node: torch.fx.Node, builder: AtenGraphBuilder, user_outputs: Any = None
) -> None:
    values = node.args[0] if node.args else ()
    values = values if isinstance(values, (list, tuple)) else [values]
    for value in values:
        if isinstance(value, torch.fx.Node) and (
            user_outputs is None or value.name in user_outputs
        ):
            name = builder.name(value.name)
            graph.tensor(name).is_graph_output = True
            graph.graph_outputs.append(name)


def add_symbolic_trace(
    graph: ModelGraph, module: Any, example_inputs: tuple | None, builder: AtenGraphBuilder
) -> list[str]:
    """Trace ``module`` (a copy) with ``torch.fx.symbolic_trace``; module calls become nodes."""
    traced = torch.fx.symbolic_trace(module)
    if example_inputs is not None:
        try:
            from torch.fx.passes.shape_prop import ShapeProp

            # ShapeProp prints a traceback before re-raising; shapes are a convenience here
            with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
                ShapeProp(traced).propagate(*example_inputs)
        except Exception:
            pass
    user_inputs = []
    for node in traced.graph.nodes:
        meta = node.meta.get("tensor_meta")
        if meta is not None and hasattr(meta, "shape"):
            graph.tensor(node.name).shape = tuple(int(d) for d in meta.shape)
            graph.tensor(node.name).dtype = str(meta.dtype).replace("torch.", "")
        if node.op == "placeholder":
            user_inputs.append(node.name)
            graph.tensor(node.name).is_graph_input = True
            graph.graph_inputs.append(node.name)
        elif node.op == "get_attr":
            builder.rename[node.name] = str(node.target)
        elif node.op == "call_module":
            _add_module_call(graph, node, builder)
        elif node.op in ("call_function", "call_method"):
            _add_python_call(node, builder)
        elif node.op == "output":
            _mark_outputs(graph, node, builder)
    return user_inputs


def _add_module_call(graph: ModelGraph, node: torch.fx.Node, builder: AtenGraphBuilder) -> None:
    path = str(node.target)
    record = builder.modules.get(path) or ModuleRecord(path=path)
    mapped = canonical_module_op(record)
    data = [builder.name(arg.name) for arg in node.args if isinstance(arg, torch.fx.Node)]
    op, attrs = mapped if mapped is not None else ("other", {})
    roles = ROLE_TENSORS.get(op)
    inputs = data
    if roles is not None:
        inputs = [data[0] if data else ""] + [record.tensors.get(r) or "" for r in roles]
        while len(inputs) > 1 and not inputs[-1]:
            inputs.pop()
    if op == "batch_norm":
        attrs = module_bn_attrs(record, graph.params, builder.requires_grad, builder.root_training)
    graph.add_node(
        op,
        record.class_name or "module",
        node.name,
        inputs,
        [node.name],
        attrs={**attrs, "fx": "call_module"},
        scope=path,
        location=Location(file=graph.path),
    )


def _add_python_call(node: torch.fx.Node, builder: AtenGraphBuilder) -> None:
    if node.op == "call_method":
        name = str(node.target)
        args = {"self": _value(node.args[0]) if node.args else None}
        args.update({f"arg{i}": _value(a) for i, a in enumerate(node.args[1:], start=1)})
        args.update({k: _value(v) for k, v in node.kwargs.items()})
    else:
        if node.target is operator.getitem:
            source, index = node.args[0], node.args[1]
            if isinstance(source, torch.fx.Node) and isinstance(index, int):
                builder.alias(node.name, source.name)
                return
        name = getattr(node.target, "__name__", str(node.target))
        args = _named_args(node.target, node.args, node.kwargs)
    builder.add(AtenCall(name=node.name, target=f"aten.{name}", args=args, outputs=[node.name]))
