"""aten operator calls -> ModelGraph nodes, shared by every traced PyTorch source.

The ``.pt2`` JSON reader, the live ``torch.export`` path and trusted TorchScript all
reduce a program to :class:`AtenCall` records (operator, arguments by schema name,
outputs, module path, source stack); :class:`AtenGraphBuilder` maps them to canonical
ops with ONNX-compatible attributes, so a rule sees the same graph whatever the format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from bnlint.graph import Location, ModelGraph, Node
from bnlint.loaders.torch_modules import ModuleRecord, batch_norm_attrs
from bnlint.loaders.torch_ops import (
    ROLE_ARGS,
    SKIP,
    as_float,
    aten_canonical,
    short_class,
)

_FRAME = re.compile(r'File "([^"]+)", line (\d+)')
# Frames inside torch itself (an installed package, or a source checkout's torch/nn, …).
_TORCH_FRAME = re.compile(
    r"(?:site|dist)-packages[\\/](?:torch|torchvision|functorch)[\\/]"
    r"|[\\/]torch[\\/](?:nn|fx|_dynamo|_export|export|jit|utils|ao|_ops|_tensor|functional)\b"
)


@dataclass(frozen=True)
class Ref:
    """A tensor argument, by the producing value's name."""

    name: str


@dataclass
class AtenCall:
    """One operator call of a traced program, format-neutral."""

    name: str
    target: str  # "aten.batch_norm.default"
    args: dict[str, Any]  # schema argument name -> Ref | list[Ref] | scalar | list | None
    outputs: list[str]
    scope: str | None = None
    module_class: str | None = None  # qualified class of the innermost module
    stack_trace: str | None = None
    source: tuple[str, int] | None = None  # (file, line) when known without a stack trace

    @property
    def op_name(self) -> str:
        """``batch_norm`` from ``aten.batch_norm.default`` (or ``aten::batch_norm``)."""
        text = self.target.replace("::", ".")
        parts = text.split(".")
        if parts and parts[0] == "torch":
            parts = parts[2:] if len(parts) > 2 and parts[1] == "ops" else parts[1:]
        if len(parts) >= 2 and parts[0] in ("aten", "prims", "quantized", "higher_order"):
            return parts[1]
        return parts[0] if parts else text


def is_torch_source(path: str) -> bool:
    return bool(_TORCH_FRAME.search(path))


def user_frame(stack_trace: str | None) -> tuple[str, int] | None:
    """The innermost stack frame outside torch: the user's line that called this op."""
    if not stack_trace:
        return None
    frames = [(m.group(1), int(m.group(2))) for m in _FRAME.finditer(stack_trace)]
    user = [frame for frame in frames if not is_torch_source(frame[0])]
    return user[-1] if user else None  # a line inside torch itself helps nobody


def _tensor_refs(value: Any) -> list[str]:
    if isinstance(value, Ref):
        return [value.name]
    if isinstance(value, (list, tuple)):
        return [item.name for item in value if isinstance(item, Ref)]
    return []


@dataclass
class AtenGraphBuilder:
    """Adds :class:`AtenCall` records to a ModelGraph.

    ``rename`` maps program value names to graph tensor names (placeholders of
    parameters -> state_dict names); ``modules`` holds what is known about each module
    path (class, mode, constants), used for BN attributes and ``source_op``.
    """

    graph: ModelGraph
    rename: dict[str, str] = field(default_factory=dict)
    modules: dict[str, ModuleRecord] = field(default_factory=dict)
    requires_grad: dict[str, bool] = field(default_factory=dict)
    root_training: bool | None = None
    default_training_evidence: str = "exported with training=True"
    _aliases: dict[str, str] = field(default_factory=dict)
    index: int = 0

    def name(self, value: str) -> str:
        value = self._aliases.get(value, value)
        return self.rename.get(value, value)

    def alias(self, new: str, existing: str) -> None:
        """``new`` is another name for ``existing`` (getitem of a multi-output op)."""
        self._aliases[new] = self._aliases.get(existing, existing)

    def add(self, call: AtenCall) -> Node | None:
        op_name = call.op_name
        self.index += 1
        if op_name in SKIP or self._is_bookkeeping(op_name, call):
            return None
        op, attrs = self._canonical(op_name, call)
        inputs = self._inputs(op, call)
        outputs = [self.name(out) if out else "" for out in call.outputs]
        record = self.modules.get(call.scope) if call.scope is not None else None
        if op == "batch_norm":
            attrs = self._bn_attrs(op_name, call, record, inputs)
        attrs["aten"] = call.target
        frame = user_frame(call.stack_trace) or call.source
        location = Location(
            file=self.graph.path,
            node_index=self.index - 1,
            source_file=frame[0] if frame else None,
            source_line=frame[1] if frame else None,
        )
        return self.graph.add_node(
            op,
            self._source_op(op, call, record, inputs),
            call.name,
            inputs,
            outputs,
            attrs=attrs,
            scope=call.scope,
            location=location,
        )

    # -- mapping -----------------------------------------------------------------------
    def _is_bookkeeping(self, op_name: str, call: AtenCall) -> bool:
        """``num_batches_tracked += 1`` of a training BN: a buffer update, not dataflow."""
        if op_name not in ("add_", "add"):
            return False
        target = call.args.get("self")
        return isinstance(target, Ref) and self.name(target.name).endswith("num_batches_tracked")

    def _canonical(self, op_name: str, call: AtenCall) -> tuple[str, dict[str, Any]]:
        weight = call.args.get("weight")
        shape = self.graph.shape(self.name(weight.name)) if isinstance(weight, Ref) else None
        return aten_canonical(
            op_name,
            call.target,
            call.args,
            lambda value: isinstance(value, Ref) and self.name(value.name) in self.graph.params,
            len(shape) - 2 if shape else None,
        )

    def _inputs(self, op: str, call: AtenCall) -> list[str]:
        roles = ROLE_ARGS.get(op)
        if roles is None:
            return [self.name(ref) for value in call.args.values() for ref in _tensor_refs(value)]
        inputs = []
        for names in roles:
            value = next((call.args[n] for n in names if n in call.args), None)
            inputs.append(self.name(value.name) if isinstance(value, Ref) else "")
        while inputs and not inputs[-1]:
            inputs.pop()
        return inputs

    def _bn_attrs(
        self, op_name: str, call: AtenCall, record: ModuleRecord | None, inputs: list[str]
    ) -> dict[str, Any]:
        args = call.args
        training = args.get("training")
        if op_name == "_native_batch_norm_legit_no_training" or op_name == "_batch_norm_no_update":
            training = False
        padded = [*inputs, "", "", "", "", ""][:5]
        return batch_norm_attrs(
            record,
            graph_training=bool(training) if training is not None else None,
            graph_momentum=as_float(args.get("momentum")),
            graph_eps=as_float(args.get("eps")),
            has_weight=bool(padded[1]),
            has_running_stats=bool(padded[3]),
            weight=padded[1] or None,
            bias=padded[2] or None,
            running_mean=padded[3] or None,
            params=self.graph.params,
            requires_grad=self.requires_grad,
            root_training=self.root_training,
            graph_evidence=self.default_training_evidence,
            extra_outputs=max(len([o for o in call.outputs if o]) - 1, 0),
        )

    def _source_op(
        self, op: str, call: AtenCall, record: ModuleRecord | None, inputs: list[str]
    ) -> str:
        """The module class (``BatchNorm2d``) when the op is that module's own computation."""
        qualname = record.qualname if record is not None else call.module_class
        if qualname and op not in ("other", "identity", "reshape", "add", "mul", "sub", "div"):
            own_weight = len(inputs) > 1 and inputs[1].startswith(f"{call.scope}.")
            if own_weight or qualname.startswith("torch.nn."):
                return short_class(qualname)
        return call.target
