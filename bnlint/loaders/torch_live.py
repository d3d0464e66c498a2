"""Live ``nn.Module`` objects -> ModelGraph (entry points, the Python API, trusted pickles).

Order matters: every module's mode and attributes are recorded first, then a deep copy
is traced (tracing in train mode updates BN running statistics, so the user's model is
never traced itself). ``torch.export`` (non-strict) is tried first, then
``torch.fx.symbolic_trace``; if both fail the module tree is kept without edges and the
engine reports which rules could not run (BN901).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from bnlint.graph import BatchSize, GraphFacts, ModelGraph
from bnlint.loaders.files import LoadError
from bnlint.loaders.torch_modules import add_module_nodes, snapshot_module

_MESSAGE_LIMIT = 200


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if len(text) > _MESSAGE_LIMIT:
        text = text[: _MESSAGE_LIMIT - 1] + "…"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def example_inputs_from_shapes(shapes: Mapping[str, Sequence[int]]) -> tuple[list[str], tuple]:
    """Seeded float32 inputs for ``--input-shape`` values (names in the order given)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    names = [name or f"input_{i}" for i, name in enumerate(shapes)]
    tensors = tuple(torch.randn(*dims, generator=generator) for dims in shapes.values())
    return names, tensors


def normalize_inputs(value: Any) -> tuple | None:
    """``example_inputs`` as a tuple of positional arguments (a lone tensor is wrapped)."""
    import torch

    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return (value,)
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, tuple):
        return value
    raise TypeError(f"example inputs must be a tensor or a tuple of tensors, not {type(value)}")


def to_numpy(tensor: Any):
    import torch

    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.numpy().copy()


def graph_from_module(
    module: Any,
    example_inputs: Any,
    settings: Any,
    *,
    path: str = "<nn.Module>",
    fmt: str = "module",
) -> ModelGraph:
    """A ModelGraph for a live module; the module itself is never run or modified."""
    import torch

    if not isinstance(module, torch.nn.Module):
        raise LoadError(path, f"expected a torch.nn.Module, got {type(module).__name__}")
    records, requires_grad = snapshot_module(module)  # before anything runs
    root_training = records[""].training
    names: list[str] = []
    try:
        inputs = normalize_inputs(example_inputs)
    except TypeError as error:
        raise LoadError(path, str(error)) from None
    shapes = dict(getattr(settings, "input_shapes", {}) or {})
    if inputs is None and shapes:
        names, inputs = example_inputs_from_shapes(shapes)
    mode = "training" if root_training else "inference"
    facts = GraphFacts(format=fmt, mode=mode, default_phase=mode, has_modules=True)
    graph, traced_inputs = _trace(path, facts, module, inputs, records, requires_grad)
    if traced_inputs is None:
        facts.has_edges = False
        add_module_nodes(graph, records, requires_grad)
    elif not names:
        names = traced_inputs
    _batch_sizes(graph, inputs, names, given=bool(shapes) and example_inputs is None)
    graph.source.torch_module = module
    graph.source.example_inputs = inputs
    if inputs is not None:
        from bnlint.loaders.torch_runtime import TorchRunner

        input_names = list(names)
        graph.runner_factory = lambda: TorchRunner.from_module(module, inputs, input_names)
    return graph.finalize()


def _register_tensors(graph: ModelGraph, module: Any) -> None:
    register_tensors(
        graph,
        [
            *module.named_parameters(remove_duplicate=False),
            *module.named_buffers(remove_duplicate=False),
        ],
    )


def register_tensors(graph: ModelGraph, named: Any) -> None:
    """Register ``(name, tensor)`` pairs as lazily converted parameters (first name wins)."""
    for name, tensor in named:
        if tensor is None or name in graph.params:
            continue
        shape = tuple(int(d) for d in tensor.shape)
        dtype = str(tensor.dtype).replace("torch.", "")
        graph.params.add(name, lambda t=tensor: to_numpy(t), shape=shape, dtype=dtype)
        record = graph.tensor(name)
        record.shape, record.dtype, record.is_param = shape, dtype, True


def _trace(
    path: str,
    facts: GraphFacts,
    module: Any,
    inputs: tuple | None,
    records: dict,
    requires_grad: dict[str, bool],
) -> tuple[ModelGraph, list[str] | None]:
    """Trace a deep copy: the graph and user input names (None when nothing traced)."""
    import torch

    from bnlint.loaders import torch_fx
    from bnlint.loaders.torch_aten import AtenGraphBuilder

    def fresh() -> tuple[ModelGraph, AtenGraphBuilder]:
        graph = ModelGraph(path, facts)
        _register_tensors(graph, module)
        builder = AtenGraphBuilder(
            graph,
            modules=dict(records),
            requires_grad=requires_grad,
            root_training=records[""].training,
        )
        return graph, builder

    if inputs is None:
        facts.partial.append(
            "no example inputs, so the model was not traced (pass --input-shape "
            "NAME:1x3x224x224, or define example_inputs next to the factory)"
        )
        return fresh()[0], None
    try:
        private = copy.deepcopy(module)
    except Exception as error:
        facts.partial.append(f"the model could not be copied for tracing ({_short(error)})")
        return fresh()[0], None
    graph, builder = fresh()
    try:
        with torch.no_grad():
            program = torch.export.export(private, inputs, strict=False)
        return graph, torch_fx.add_exported_program(graph, program, builder)
    except Exception as export_error:
        first = _short(export_error)
    graph, builder = fresh()
    try:
        private = copy.deepcopy(module)
        return graph, torch_fx.add_symbolic_trace(graph, private, inputs, builder)
    except Exception as fx_error:
        facts.partial.append(
            f"the model could not be traced (torch.export: {first}; "
            f"torch.fx.symbolic_trace: {_short(fx_error)}); only its module tree was read"
        )
        return fresh()[0], None


def _batch_sizes(graph: ModelGraph, inputs: tuple | None, names: list[str], given: bool) -> None:
    if not inputs:
        return
    import torch

    source = "--input-shape" if given else "example input"
    for index, value in enumerate(inputs):
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            name = names[index] if index < len(names) else f"input_{index}"
            graph.facts.batch_sizes[name] = BatchSize(int(value.shape[0]), source)
