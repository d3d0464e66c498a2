"""Operator calls of static TorchScript: ``torch.*`` and ``ops.*`` on abstract values.

A call with a tensor argument becomes a graph node (never in a dry run, which only learns
what a block assigns); size queries on tensors of known shape and integer arithmetic give
values; list-returning operators (``unbind``, ``chunk``) become a :class:`PendingList`,
added to the graph on first use with the number of outputs that use needs. Arguments are
named from :mod:`bnlint.loaders.torch_schemas`, as the trusted reader names them from the
operator's schema.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from bnlint.loaders.torch_aten import Ref
from bnlint.loaders.torch_pickle import ObjectRecord
from bnlint.loaders.torch_program import LIST_OUTPUT_OPS, ProgramWriter
from bnlint.loaders.torch_scalars import NOT_SCALAR, UNKNOWN, scalar_op, size_of
from bnlint.loaders.torch_schemas import argument_names
from bnlint.loaders.torch_script_code import SourceFile, user_frame

_SCALAR_QUERIES = frozenset({"size", "dim", "numel", "len", "format", "warn", "append", "list"})


@dataclass(frozen=True)
class Namespace:
    """``torch``, ``ops.prim``, ``__torch__.torch.nn.functional.relu`` …: a name, unresolved."""

    name: str


@dataclass(frozen=True)
class Builtin:
    name: str


@dataclass
class ModuleValue:
    obj: ObjectRecord
    path: str


@dataclass
class PendingList:
    """The list a list-returning operator (``unbind``, ``chunk`` …) makes, added on first use
    with as many outputs as the use needs."""

    target: str
    args: dict[str, Any]
    source: tuple[str, int] | None
    scope: str | None = None
    items: list[Ref] | None = None


class DeadPath(Exception):
    """``ops.prim.RaiseException`` was reached: this path produces nothing."""


@dataclass
class Frame:
    env: dict[str, Any]
    source: SourceFile
    caller: Frame | None = None
    node: ast.AST | None = None
    depth: int = 0
    module: str | None = None  # path of the innermost module whose method is running


class OperatorCalls:
    """The operator half of :class:`~bnlint.loaders.torch_script_eval.ScriptInterpreter`."""

    writer: ProgramWriter
    dry: int
    names: dict[str, int]

    def operator(
        self, name: str, args: list, kwargs: dict, frame: Frame, hint: str, want: int
    ) -> Any:
        parts = name.split(".")
        namespace = parts[1] if parts[0] == "ops" and len(parts) > 2 else parts[0]
        op = parts[-1]
        if namespace == "prim":
            if op == "RaiseException":
                raise DeadPath()
            if op in ("NumToTensor", "unchecked_unwrap_optional") and args:
                return args[0]
        if namespace not in ("torch", "aten", "prim") or len(parts) > (
            3 if parts[0] == "ops" else 2
        ):
            namespace = ".".join(parts[1:-1]) if parts[0] == "ops" else parts[0]
        named = self._named(op, args, kwargs)
        if op in _SCALAR_QUERIES:
            found = self._query(op, args, named)
            if found is not NOT_SCALAR:
                return found
        if not any(has_tensor(value) for value in (*args, *kwargs.values())):
            value = scalar_op(op, args)  # no tensor in (as the trusted reader): no node
            return UNKNOWN if value is NOT_SCALAR else value
        target = f"{'aten' if namespace in ('torch', 'aten') else namespace}.{op}"
        if op in LIST_OUTPUT_OPS and want == 1:
            return PendingList(target, named, self.location(frame), frame.module or None)
        outputs = [self.fresh(hint or op) for _ in range(max(want, 1))]
        if not self.dry:
            self.writer.add(target, named, outputs, self.location(frame), frame.module or None)
        refs = [Ref(output) for output in outputs]
        return refs[0] if want <= 1 else tuple(refs)

    def _named(self, op: str, args: list, kwargs: dict) -> dict[str, Any]:
        positional, _ = argument_names(op)
        names = list(positional) or ["self"]
        names += [f"arg{i}" for i in range(len(names), len(args))]
        named = dict(zip(names, args, strict=False))
        named.update(kwargs)
        return named

    def _query(self, op: str, args: list, named: dict[str, Any]) -> Any:
        first = args[0] if args else None
        if isinstance(first, Ref):
            shape = self.writer.shape(first)
            if op == "size":
                return size_of(shape, args[1] if len(args) > 1 else None)
            if op == "dim":
                return len(shape) if shape is not None else UNKNOWN
            if op == "numel" and shape is not None and None not in shape:
                product = 1
                for d in shape:
                    product *= d  # type: ignore[operator]
                return product
            return UNKNOWN
        if op == "append" and isinstance(first, list) and len(args) == 2:
            if not self.dry:
                first.append(args[1])
            return first
        if op == "len":
            return scalar_op("len", args)
        if op in ("format", "warn", "list"):
            return UNKNOWN
        return NOT_SCALAR

    def _materialize(self, pending: PendingList, count: int) -> list[Ref]:
        if pending.items is None:
            outputs = [self.fresh(pending.target.split(".")[-1]) for _ in range(count)]
            if not self.dry:
                self.writer.add(
                    pending.target, pending.args, outputs, pending.source, pending.scope
                )
            pending.items = [Ref(o) for o in outputs]
        return pending.items

    def fresh(self, hint: str) -> str:
        base = "".join(c if c.isalnum() or c == "_" else "_" for c in hint)[:40] or "t"
        taken = self.writer.graph.tensors
        while True:
            self.names[base] = count = self.names.get(base, 0) + 1
            name = f"{base}.{count}" if count > 1 else base
            if name not in taken:
                return name

    def location(self, frame: Frame | None) -> tuple[str, int] | None:
        """The user's source line for the current statement, innermost user frame first."""
        while frame is not None:
            if frame.node is not None:
                found = user_frame(frame.source.frames(frame.node))
                if found is not None:
                    return found
            frame = frame.caller
        return None


def has_tensor(value: Any) -> bool:
    if isinstance(value, (Ref, PendingList)):
        return True
    if isinstance(value, (list, tuple)):
        return any(has_tensor(item) for item in value[:256])
    return False
