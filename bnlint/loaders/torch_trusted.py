"""Loaders that execute code from the model file: used only with ``--trust-model-code``.

- ``.pt2`` through ``torch.export.load`` (it unpickles parts of the archive): the same
  aten graph as the static reader plus a runnable module for the verify pass and BN018.
- TorchScript through ``torch.jit.load`` (it runs the archive's code, ``__setstate__``
  included): the module is frozen with parameters preserved (``training`` flags become
  constants, so mode-dependent branches disappear), inlined, and its aten nodes become
  the graph; module attributes come from the loaded modules.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bnlint.graph import BatchSize, GraphFacts, ModelGraph
from bnlint.loaders.files import LoadError
from bnlint.loaders.torch_aten import AtenGraphBuilder, Ref, is_torch_source
from bnlint.loaders.torch_infer import assume_linear_features
from bnlint.loaders.torch_live import register_tensors
from bnlint.loaders.torch_modules import ModuleRecord, plain_constants
from bnlint.loaders.torch_program import ProgramWriter, script_builder
from bnlint.loaders.torch_scalars import NOT_SCALAR, UNKNOWN, scalar_op, size_of
from bnlint.loaders.torchscript import demangle

_SOURCE_FRAME = re.compile(r"^(.+?)\((\d+)\): ", re.MULTILINE)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"


def _finish(graph: ModelGraph, module: Any, inputs: tuple | None, names: list[str]) -> None:
    bns = graph.nodes_of("batch_norm")
    graph.facts.mode = "training" if any(bn.attrs["training"] for bn in bns) else "inference"
    graph.source.torch_module = module
    graph.source.example_inputs = inputs
    if inputs:
        from bnlint.loaders.torch_runtime import TorchRunner

        graph.runner_factory = lambda: TorchRunner.from_module(module, inputs, names)
        for index, value in enumerate(inputs):
            if hasattr(value, "shape") and len(value.shape) > 0:
                name = names[index] if index < len(names) else f"input_{index}"
                graph.facts.batch_sizes.setdefault(
                    name, BatchSize(int(value.shape[0]), "example input")
                )


def load_pt2(path: Path, settings: Any) -> ModelGraph:
    import torch

    from bnlint.loaders.torch_fx import add_exported_program

    try:
        program = torch.export.load(str(path))
    except Exception as error:
        raise LoadError(path, f"torch.export.load failed: {_describe(error)}") from None
    facts = GraphFacts(format="pt2", default_phase="inference", has_modules=True)
    facts.producer = f"torch {torch.__version__} (torch.export.load)"
    graph = ModelGraph(path, facts)
    register_tensors(graph, program.state_dict.items())
    register_tensors(
        graph, ((k, v) for k, v in program.constants.items() if isinstance(v, torch.Tensor))
    )
    flags = {
        name: bool(value.requires_grad)
        for name, value in program.state_dict.items()
        if isinstance(value, torch.nn.Parameter)
    }
    builder = AtenGraphBuilder(graph, requires_grad=flags)
    names = add_exported_program(graph, program, builder)
    inputs = None
    if program.example_inputs is not None:
        inputs = tuple(program.example_inputs[0])
    module = program.module()
    _finish(graph, module, inputs, names)
    return graph.finalize()


def _records(module: Any) -> tuple[dict[str, ModuleRecord], dict[str, bool]]:
    records: dict[str, ModuleRecord] = {}
    flags: dict[str, bool] = {}
    for path, sub in module.named_modules():
        qualname = demangle(sub._c._type().qualified_name())
        record = ModuleRecord(path=path, qualname=qualname, training=bool(sub.training))
        record.constants.update(plain_constants(sub))
        prefix = f"{path}." if path else ""
        for name, tensor in sub.named_parameters(recurse=False):
            record.tensors[name] = prefix + name
            flags[prefix + name] = bool(tensor.requires_grad)
        for name, _ in sub.named_buffers(recurse=False):
            record.tensors[name] = prefix + name
        record.has_children = any(True for _ in sub.named_children())
        records[path] = record
    return records, flags


def load_torchscript(path: Path, settings: Any) -> ModelGraph:
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:
        raise LoadError(path, f"torch.jit.load failed: {_describe(error)}") from None
    records, flags = _records(module)
    facts = GraphFacts(format="torchscript", default_phase="inference", has_modules=True)
    facts.producer = f"torch {torch.__version__} (torch.jit.load)"
    graph = ModelGraph(path, facts)
    register_tensors(graph, module.named_parameters())
    register_tensors(graph, module.named_buffers())
    builder = script_builder(graph, records, flags)
    inputs = _example_inputs(module, settings)
    try:
        frozen = torch._C._freeze_module(module._c, [], True, True)
        ts_graph = frozen._get_method("forward").graph
        torch._C._jit_pass_inline(ts_graph)
    except Exception as error:
        # No dataflow graph: keep the static reading, still runnable for the dynamic checks.
        from bnlint.loaders import torchscript

        graph = torchscript.load(path, settings)
        graph.facts.partial[:] = [
            f"the loaded TorchScript could not be inlined ({_describe(error)})"
        ]
        _finish(graph, module, inputs, [])
        return graph
    names = _TorchScriptGraph(graph, builder).add(ts_graph, _input_shapes(path, inputs))
    assume_linear_features(graph)
    _finish(graph, module, inputs, names)
    return graph.finalize()


def _input_shapes(path: Path, inputs: tuple | None) -> list[tuple[int, ...] | None]:
    """Example inputs' shapes: --input-shape, else what a traced archive recorded."""
    if inputs:
        return [tuple(int(d) for d in value.shape) for value in inputs]
    from bnlint.loaders.torch_archive import ZipArchive
    from bnlint.loaders.torchscript import traced_input_shapes

    try:
        return list(traced_input_shapes(ZipArchive(path), path) or [])
    except LoadError:
        return []


def _example_inputs(module: Any, settings: Any) -> tuple | None:
    shapes = dict(getattr(settings, "input_shapes", {}) or {})
    if shapes:
        from bnlint.loaders.torch_live import example_inputs_from_shapes

        return example_inputs_from_shapes(shapes)[1]
    return None


class _TorchScriptGraph:
    """Walks an inlined, frozen TorchScript graph and feeds aten calls to the shared writer
    (:class:`~bnlint.loaders.torch_program.ProgramWriter`), as the static reader does."""

    def __init__(self, graph: ModelGraph, builder: AtenGraphBuilder) -> None:
        self.graph = graph
        self.builder = builder
        self.writer = ProgramWriter(graph, builder)
        self.values: dict[Any, Any] = {}  # torch._C.Value -> python value / Ref / module path

    def add(self, ts_graph: Any, shapes: list[tuple[int, ...] | None]) -> list[str]:
        inputs = list(ts_graph.inputs())
        self.values[inputs[0]] = _ModulePath("")
        names = []
        for index, value in enumerate(inputs[1:]):
            name = value.debugName()
            self.values[value] = Ref(name)
            record = self.graph.tensor(name)
            record.is_graph_input = True
            if index < len(shapes) and shapes[index] is not None:
                record.shape = shapes[index]
            self.graph.graph_inputs.append(name)
            names.append(name)
        for index, node in enumerate(ts_graph.nodes()):
            self._node(node, index)
        for value in ts_graph.outputs():
            resolved = self.values.get(value)
            for ref in resolved if isinstance(resolved, (list, tuple)) else [resolved]:
                if isinstance(ref, Ref):
                    name = self.builder.name(ref.name)
                    self.graph.tensor(name).is_graph_output = True
                    self.graph.graph_outputs.append(name)
        return names

    def _node(self, node: Any, index: int) -> None:
        kind = node.kind()
        outputs = list(node.outputs())
        if kind == "prim::Constant":
            self.values[outputs[0]] = _constant(outputs[0])
        elif kind == "prim::GetAttr":
            owner = self.values.get(node.input())
            if isinstance(owner, _ModulePath):
                path = owner.child(node.s("name"))
                if outputs[0].type().kind() in ("TensorType", "OptionalType"):
                    # an attribute that is None (a Conv2d without bias) is not a tensor
                    self.values[outputs[0]] = (
                        Ref(path.path) if path.path in self.graph.params else None
                    )
                else:
                    self.values[outputs[0]] = path
        elif kind in ("prim::ListConstruct", "prim::TupleConstruct"):
            self.values[outputs[0]] = [self.values.get(v) for v in node.inputs()]
        elif kind in ("prim::ListUnpack", "prim::TupleUnpack"):
            items = self.values.get(node.input())
            for position, value in enumerate(outputs):
                if isinstance(items, list) and position < len(items):
                    self.values[value] = items[position]
                else:
                    self.values[value] = Ref(value.debugName())
        elif kind in ("prim::NumToTensor", "aten::Int", "aten::Float", "aten::ScalarImplicit"):
            self.values[outputs[0]] = scalar_op(
                kind.split("::")[1], [self.values.get(node.input())]
            )
        elif kind == "prim::If" and self._decided(node, outputs):
            return
        elif kind.startswith(("aten::", "prim::If", "prim::Loop")):
            self._call(node, kind, outputs, index)

    def _decided(self, node: Any, outputs: list) -> bool:
        """Walk the branch a known condition takes, or the only one that does not raise
        (the static reader decides the same branches from the same values)."""
        condition = self.values.get(node.input())
        blocks = list(node.blocks())
        if isinstance(condition, bool):
            chosen = blocks[0 if condition else 1]
        else:
            raising = [_raises(block) for block in blocks]
            if raising[0] == raising[1]:
                return False
            chosen = blocks[1 if raising[0] else 0]
        for index, inner in enumerate(chosen.nodes()):
            self._node(inner, index)
        for output, value in zip(outputs, chosen.outputs(), strict=False):
            self.values[output] = self.values.get(value)
        return True

    def _call(self, node: Any, kind: str, outputs: list, index: int) -> None:
        tensor_outputs = [o for o in outputs if _is_tensor(o)]
        if not tensor_outputs:
            self._scalar(node, kind, outputs)
            return
        if kind.startswith("aten::") and not any(self._holds_ref(v) for v in node.inputs()):
            # no tensor in: arithmetic on sizes (a NumToTensor'd int), or a factory; both
            # readers keep the value when it is known and add no node (as statically)
            self._scalar(node, kind, outputs)
            return
        names = [o.debugName() for o in outputs]
        if kind.startswith("prim::"):
            self.graph.facts.partial.append(f"control flow ({kind}) kept as an opaque node")
            self.graph.facts.unsupported.append(f"TorchScript {kind}")
            args = {f"arg{i}": self.values.get(v) for i, v in enumerate(node.inputs())}
            target = "higher_order.cond" if kind == "prim::If" else "higher_order.while_loop"
        else:
            target = kind.replace("::", ".")
            args = self._named_args(node)
        listed = _unpacked(outputs[0]) if len(outputs) == 1 and _is_list(outputs[0]) else None
        if listed is not None:  # a tensor list: one graph output per unpacked tensor
            names = [value.debugName() for value in listed]
            self.values[outputs[0]] = [Ref(name) for name in names]
        else:
            for value in outputs:
                self.values[value] = Ref(value.debugName())
        self.writer.add(target, args, names, _source(node), _module_path(node))

    def _holds_ref(self, value: Any) -> bool:
        found = self.values.get(value)
        if isinstance(found, list):
            return any(isinstance(item, Ref) for item in found)
        return isinstance(found, Ref)

    def _scalar(self, node: Any, kind: str, outputs: list) -> None:
        """Integer arithmetic on sizes, so a later reshape knows its target shape."""
        if len(outputs) != 1 or not kind.startswith("aten::"):
            return
        op = kind.split("::")[1]
        args = [self.values.get(v) for v in node.inputs()]
        first = args[0] if args else None
        if op in ("size", "dim") and isinstance(first, Ref):
            shape = self.writer.shape(first)
            if op == "dim":
                value = len(shape) if shape is not None else UNKNOWN
            else:
                value = size_of(shape, args[1] if len(args) > 1 else None)
        else:
            value = scalar_op(op, [UNKNOWN if a is None else a for a in args])
        if value is not NOT_SCALAR and value is not UNKNOWN:
            self.values[outputs[0]] = value

    def _named_args(self, node: Any) -> dict[str, Any]:
        import torch

        try:
            schema = torch._C.parse_schema(node.schema())
            names = [argument.name for argument in schema.arguments]
        except Exception:
            names = []
        values = [self.values.get(v) for v in node.inputs()]
        names += [f"arg{i}" for i in range(len(names), len(values))]
        return dict(zip(names, values, strict=False))


class _ModulePath:
    def __init__(self, path: str) -> None:
        self.path = path

    def child(self, name: str) -> _ModulePath:
        return _ModulePath(f"{self.path}.{name}" if self.path else name)


def _constant(value: Any) -> Any:
    try:
        constant = value.toIValue()
    except Exception:
        return None
    if isinstance(constant, (bool, int, float, str)) or constant is None:
        return constant
    if hasattr(constant, "numel") and constant.numel() == 1 and not constant.is_complex():
        return constant.item()  # a scalar tensor constant: arithmetic on sizes, as statically
    if isinstance(constant, (list, tuple)) and all(
        isinstance(c, (bool, int, float)) for c in constant
    ):
        return list(constant)
    return None


_HIERARCHY = re.compile(r"(\w+)\(([^()]*)\)")


def _module_path(node: Any) -> str | None:
    """``classifier.2`` from ``classifier(Sequential).2(Dropout).UNKNOWN_INSTANCE(…)``: the
    innermost module whose code the inlined node came from (the static reader's scope)."""
    try:
        hierarchy = node.getModuleHierarchy()
    except Exception:
        return None
    names = [m.group(1) for m in _HIERARCHY.finditer(hierarchy or "")]
    names = [name for name in names if name != "UNKNOWN_INSTANCE"]
    return ".".join(names) or None


def _raises(block: Any) -> bool:
    return any(inner.kind() == "prim::RaiseException" for inner in block.nodes())


def _is_tensor(value: Any) -> bool:
    kind = value.type().kind()
    return kind == "TensorType" or (_is_list(value) and _unpacked(value) is not None)


def _is_list(value: Any) -> bool:
    kind = value.type()
    return kind.kind() == "ListType" and kind.getElementType().kind() == "TensorType"


def _unpacked(value: Any) -> list | None:
    """The values a list of tensors is unpacked into, when its one use is an unpack."""
    uses = value.uses()
    if len(uses) == 1 and uses[0].user.kind() == "prim::ListUnpack":
        return list(uses[0].user.outputs())
    return None


def _source(node: Any) -> tuple[str, int] | None:
    try:
        text = str(node.sourceRange())
    except Exception:
        return None
    for match in _SOURCE_FRAME.finditer(text):
        if not is_torch_source(match.group(1)):
            return match.group(1).strip(), int(match.group(2))
    return None
