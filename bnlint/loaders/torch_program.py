"""One TorchScript operator call -> one graph node, for both TorchScript readers.

The static reader (:mod:`bnlint.loaders.torch_script_eval`, which interprets the archive's
code) and the trusted one (:mod:`bnlint.loaders.torch_trusted`, which walks the graph
``torch.jit.load`` compiled) meet here, so they name nodes alike (``relu__4``: the operator
and its running count), give them the same scope (the module owning the weight or running
statistics), record a traced training flag the same way and compute the same output
shapes (:mod:`bnlint.loaders.torch_shapes`). Their findings can then be compared one for
one.
"""

from __future__ import annotations

from typing import Any

from bnlint.graph import ModelGraph
from bnlint.loaders.torch_aten import AtenCall, AtenGraphBuilder, Ref
from bnlint.loaders.torch_modules import ModuleRecord
from bnlint.loaders.torch_shapes import Shape, concat_shape, infer_shapes, split_shapes

LIST_OUTPUT_OPS = frozenset({"unbind", "split", "split_with_sizes", "chunk", "tensor_split"})
_SCOPE_ROLES = ("weight", "running_mean")


def script_builder(
    graph: ModelGraph,
    modules: dict[str, ModuleRecord],
    requires_grad: dict[str, bool],
) -> AtenGraphBuilder:
    """The aten builder both TorchScript readers use (module facts decide BN attributes)."""
    return AtenGraphBuilder(
        graph,
        modules=modules,
        requires_grad=requires_grad,
        root_training=modules[""].training if "" in modules else None,
        default_training_evidence="traced or scripted with training=True",
    )


class ProgramWriter:
    """Adds operator calls in program order; counts calls per operator for names."""

    def __init__(self, graph: ModelGraph, builder: AtenGraphBuilder) -> None:
        self.graph = graph
        self.builder = builder
        self.counts: dict[str, int] = {}

    def shape(self, value: Any) -> Shape | None:
        if isinstance(value, Ref):
            shape = self.graph.shape(self.builder.name(value.name))
            if shape is not None and all(d is None or isinstance(d, int) for d in shape):
                return tuple(shape)  # type: ignore[arg-type]
        return None

    def scope(self, args: dict[str, Any], fallback: str | None = None) -> str | None:
        for role in _SCOPE_ROLES:
            tensor = args.get(role)
            if isinstance(tensor, Ref):
                name = self.builder.name(tensor.name)
                if name in self.graph.params and "." in name:
                    return name.rsplit(".", 1)[0]
        return fallback

    def node_name(self, op_name: str) -> str:
        self.counts[op_name] = count = self.counts.get(op_name, -1) + 1
        return f"{op_name}_{count}" if count else op_name

    def add(
        self,
        target: str,
        args: dict[str, Any],
        outputs: list[str],
        source: tuple[str, int] | None = None,
        scope: str | None = None,
    ) -> None:
        """Add ``target`` (``aten.relu_``, ``higher_order.cond`` …) with named arguments."""
        op_name = target.split(".")[1] if "." in target else target
        scope = self.scope(args, scope)
        self._note_traced_mode(op_name, scope, args)
        self.builder.add(
            AtenCall(
                name=self.node_name(op_name),
                target=target,
                args=args,
                outputs=outputs,
                scope=scope,
                source=source,
            )
        )
        if target.startswith("aten."):
            self._set_shapes(op_name, args, outputs)

    def _set_shapes(self, op_name: str, args: dict[str, Any], outputs: list[str]) -> None:
        if op_name in LIST_OUTPUT_OPS:
            first = args.get("self", args.get("input"))
            shapes = split_shapes(op_name, args, self.shape(first), len(outputs))
        elif op_name in ("cat", "concat", "stack"):
            tensors = args.get("tensors")
            items = tensors if isinstance(tensors, list) else []
            shapes = [
                concat_shape([self.shape(t) for t in items], args.get("dim"), op_name == "stack")
            ]
        else:
            shapes = infer_shapes(op_name, args, self.shape, len(outputs))
        for name, shape in zip(outputs, shapes, strict=False):
            if name and shape is not None:
                record = self.graph.tensor(self.builder.name(name))
                if record.shape is None:
                    record.shape = shape

    def _note_traced_mode(self, op_name: str, scope: str | None, args: dict[str, Any]) -> None:
        """A traced archive keeps the training flag it was traced with, whatever .eval() says."""
        record = self.builder.modules.get(scope) if scope is not None else None
        baked = args.get("training")
        if op_name != "batch_norm" or record is None:
            return
        if isinstance(baked, bool) and record.training is not None and record.training != baked:
            record.constants["traced_training"] = baked
