"""Static TorchScript: the archive's code interpreted symbolically, never executed.

Starting at the root module's ``forward``, every statement of the printed code (see
:mod:`bnlint.loaders.torch_script_code`) is evaluated over abstract values: tensors are
graph references, modules are the objects of ``data.pkl``, attributes and ``Final``
constants are read from the pickle and the class source, and scalar arithmetic on sizes is
evaluated (:mod:`bnlint.loaders.torch_scalars`). Calls of submodules and functions are
followed into their code, so a ``Conv2d`` becomes the ``torch.conv2d`` its ``forward``
calls, exactly as ``torch.jit.load`` inlines it. Each ``torch.*`` operator with a tensor
argument becomes a graph node through :class:`~bnlint.loaders.torch_program.ProgramWriter`.

Branches on module attributes (``self.training``, ``self.use_residual``) are decided from
the pickled attributes, as freezing a loaded module decides them; a branch that always
raises is dead. A branch on data, and every loop, stays one opaque node (as in the trusted
reader), whose outputs are the variables the body assigns.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

from bnlint.loaders.files import LoadError
from bnlint.loaders.torch_aten import Ref
from bnlint.loaders.torch_pickle import ObjectRecord, TensorRecord
from bnlint.loaders.torch_program import ProgramWriter
from bnlint.loaders.torch_scalars import NOT_SCALAR, UNKNOWN, scalar_op
from bnlint.loaders.torch_script_code import ScriptCode, SourceFile
from bnlint.loaders.torch_script_ops import (
    Builtin,
    DeadPath,
    Frame,
    ModuleValue,
    Namespace,
    OperatorCalls,
    PendingList,
    has_tensor,
)

MAX_STEPS = 2_000_000
MAX_CALL_DEPTH = 64
_BUILTINS = frozenset(
    {"annotate", "unchecked_cast", "uninitialized", "getattr", "isinstance", "int", "float"}
    | {"bool", "str", "len", "print", "range", "sorted", "fork", "wait", "min", "max", "abs"}
)
_CONVERSIONS = {"int": "Int", "float": "Float", "bool": "Bool"}


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


@dataclass
class ScriptInterpreter(OperatorCalls):
    code: ScriptCode
    writer: ProgramWriter
    paths: dict[int, str] = field(default_factory=dict)  # id(ObjectRecord) -> module path
    steps: int = 0
    dry: int = 0
    names: dict[str, int] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)  # CONSTANTS.c<i>

    # -- entry -----------------------------------------------------------------------------
    def run(self, root: ObjectRecord, inputs: list[Any]) -> Any:
        return self.call_method(ModuleValue(root, ""), "forward", inputs, {}, None)

    def forward_arguments(self, root: ObjectRecord) -> list[tuple[str, bool]]:
        """(name, is a tensor) of ``forward``'s parameters after ``self``."""
        method = self._method(ModuleValue(root, ""), "forward")
        found = []
        for arg in method[0].args.args[1:]:
            annotation = ast.unparse(arg.annotation) if arg.annotation else ""
            tensor = "Tensor" in annotation and not annotation.startswith(("List", "Tuple", "Dict"))
            found.append((arg.arg, tensor))
        return found

    def _fail(self, problem: str) -> LoadError:
        return LoadError(self.code.path, problem)

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise self._fail(f"the TorchScript code takes more than {MAX_STEPS} steps to read")

    # -- calls -----------------------------------------------------------------------------
    def _method(self, module: ModuleValue, name: str) -> tuple[ast.FunctionDef, SourceFile]:
        cls = self.code.cls(module.obj.qualname)
        if cls is None or name not in cls.methods:
            raise self._fail(f"{module.obj.qualname[:200]} has no method {name!r} in code/")
        source = self.code.source_of(cls.member)
        assert source is not None
        return cls.methods[name], source

    def call_method(
        self, module: ModuleValue, name: str, args: list, kwargs: dict, caller: Frame | None
    ) -> Any:
        function, source = self._method(module, name)
        return self._invoke(function, source, [module, *args], kwargs, caller, module.path)

    def call_function(self, qualname: str, args: list, kwargs: dict, caller: Frame | None) -> Any:
        found = self.code.function(qualname)
        if found is None:
            raise self._fail(f"function {qualname[:200]} is not defined in code/")
        return self._invoke(found[0], found[1], args, kwargs, caller)

    def _invoke(
        self,
        function: ast.FunctionDef,
        source: SourceFile,
        args: list,
        kwargs: dict,
        caller: Frame | None,
        module: str | None = None,
    ) -> Any:
        depth = caller.depth + 1 if caller is not None else 0
        if depth > MAX_CALL_DEPTH:
            raise self._fail(f"TorchScript calls nested deeper than {MAX_CALL_DEPTH}")
        if module is None and caller is not None:
            module = caller.module  # a free function runs on behalf of its caller's module
        frame = Frame({}, source, caller, None, depth, module)
        params = function.args
        names = [a.arg for a in (*params.args, *params.kwonlyargs)]
        defaults = [None] * (len(params.args) - len(params.defaults)) + list(params.defaults)
        defaults += list(params.kw_defaults)
        for index, (name, default) in enumerate(zip(names, defaults, strict=True)):
            if index < len(args) and index < len(params.args):
                frame.env[name] = args[index]
            elif name in kwargs:
                frame.env[name] = kwargs[name]
            else:
                frame.env[name] = self.eval(default, frame) if default is not None else UNKNOWN
        try:
            self.block(function.body, frame)
        except _Return as returned:
            return returned.value
        return None

    # -- statements --------------------------------------------------------------------------
    def block(self, statements: list[ast.stmt], frame: Frame) -> None:
        for statement in statements:
            self.statement(statement, frame)

    def statement(self, node: ast.stmt, frame: Frame) -> None:
        self.step()
        frame.node = node
        if isinstance(node, ast.Assign):
            want = len(node.targets[0].elts) if isinstance(node.targets[0], ast.Tuple) else 1
            value = self.eval(node.value, frame, _hint(node.targets[0]), want)
            for target in node.targets:
                self.bind(target, value, frame)
        elif isinstance(node, ast.AnnAssign):
            if node.value is not None:
                self.bind(node.target, self.eval(node.value, frame, _hint(node.target)), frame)
        elif isinstance(node, ast.Expr):
            self.eval(node.value, frame)
        elif isinstance(node, ast.If):
            self._if(node, frame)
        elif isinstance(node, (ast.For, ast.While)):
            self._opaque(node, [node.body], frame, "prim::Loop")
        elif isinstance(node, ast.With):
            for item in node.items:
                self.eval(item.context_expr, frame)
            self.block(node.body, frame)
        elif isinstance(node, ast.Return):
            raise _Return(self.eval(node.value, frame) if node.value is not None else None)
        elif isinstance(node, (ast.Break, ast.Continue)):
            raise DeadPath()  # only inside a loop body, which is read once, never iterated
        # Pass, Import and class-level declarations do nothing

    def bind(self, target: ast.expr, value: Any, frame: Frame) -> None:
        if isinstance(target, ast.Name):
            frame.env[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            items = self._unpack(value, len(target.elts))
            for element, item in zip(target.elts, items, strict=True):
                self.bind(element, item, frame)
        # obj.attr = value (prim::SetAttr) changes module state at run time: not modelled

    def _unpack(self, value: Any, count: int) -> list[Any]:
        if isinstance(value, PendingList):
            return list(self._materialize(value, count))
        if isinstance(value, (list, tuple)) and len(value) == count:
            return list(value)
        return [UNKNOWN] * count

    def _if(self, node: ast.If, frame: Frame) -> None:
        decided = _truth(self.eval(node.test, frame))
        if decided is not UNKNOWN:
            self.block(node.body if decided else node.orelse, frame)
            return
        dead = (_always_raises(node.body), _always_raises(node.orelse))
        if all(dead):
            raise DeadPath()
        if dead[0] or dead[1]:
            self.block(node.orelse if dead[0] else node.body, frame)
            return
        self._opaque(node, [node.body, node.orelse], frame, "prim::If")

    def _opaque(
        self, node: ast.stmt, blocks: list[list[ast.stmt]], frame: Frame, kind: str
    ) -> None:
        """Read ``blocks`` without adding nodes; what they assign becomes one opaque node's
        outputs (tensors) or unknown (anything else)."""
        results: list[dict[str, Any]] = []
        self.dry += 1
        try:
            for statements in blocks:
                branch = Frame(
                    dict(frame.env), frame.source, frame.caller, node, frame.depth, frame.module
                )
                try:
                    self.block(statements, branch)
                except (DeadPath, _Return):
                    continue
                results.append(branch.env)
        finally:
            self.dry -= 1
        assigned = {
            n.id
            for s in blocks
            for t in s
            for n in ast.walk(t)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
        }
        tensors = [
            name for name in sorted(assigned) if any(has_tensor(env.get(name)) for env in results)
        ]
        for name in assigned - set(tensors):
            values = [env.get(name, UNKNOWN) for env in results]
            frame.env[name] = (
                values[0] if values and all(v is values[0] for v in values) else UNKNOWN
            )
        if not tensors:
            return
        used = {n.id for s in blocks for t in s for n in ast.walk(t) if isinstance(n, ast.Name)}
        inputs = {
            f"arg{i}": frame.env[name]
            for i, name in enumerate(sorted(used))
            if isinstance(frame.env.get(name), Ref)
        }
        outputs = [self.fresh(name) for name in tensors]
        self.writer.graph.facts.partial.append(f"control flow ({kind}) kept as an opaque node")
        self.writer.graph.facts.unsupported.append(f"TorchScript {kind}")
        target = "higher_order.cond" if kind == "prim::If" else "higher_order.while_loop"
        self.writer.add(target, inputs, outputs, self.location(frame), frame.module or None)
        for name, output in zip(tensors, outputs, strict=True):
            frame.env[name] = Ref(output)

    # -- expressions -----------------------------------------------------------------------
    def eval(self, node: ast.expr, frame: Frame, hint: str = "", want: int = 1) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self._name(node.id, frame)
        if isinstance(node, ast.Attribute):
            return self.attribute(self.eval(node.value, frame), node.attr)
        if isinstance(node, ast.Call):
            return self.call(node, frame, hint, want)
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self.eval(element, frame) for element in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict):
            keys = [self.eval(k, frame) if k is not None else UNKNOWN for k in node.keys]
            values = [self.eval(v, frame) for v in node.values]
            pairs = zip(keys, values, strict=True)
            return {k: v for k, v in pairs if isinstance(k, (str, int, float, bool))}
        if isinstance(node, ast.Subscript):
            return self._subscript(node, frame)
        if isinstance(node, ast.UnaryOp):
            operand = self.eval(node.operand, frame)
            if isinstance(node.op, ast.Not):
                return scalar_op("__not__", [operand])
            sign = -1 if isinstance(node.op, ast.USub) else 1
            return scalar_op("mul", [sign, operand])
        return UNKNOWN

    def _name(self, name: str, frame: Frame) -> Any:
        if name in frame.env:
            return frame.env[name]
        if name in ("torch", "ops", "__torch__", "CONSTANTS"):
            return Namespace(name)
        if name in _BUILTINS:
            return Builtin(name)
        return UNKNOWN

    def _subscript(self, node: ast.Subscript, frame: Frame) -> Any:
        base = self.eval(node.value, frame)
        if isinstance(node.slice, ast.Slice):
            bounds = [
                self.eval(b, frame) if b is not None else None
                for b in (node.slice.lower, node.slice.upper)
            ]
            if isinstance(base, (list, tuple)) and all(
                b is None or isinstance(b, int) for b in bounds
            ):
                return base[bounds[0] : bounds[1]]
            return UNKNOWN
        index = self.eval(node.slice, frame)
        if isinstance(base, PendingList) and isinstance(index, int) and index >= 0:
            items = self._materialize(base, index + 1)
            return items[index] if index < len(items) else UNKNOWN
        value = scalar_op("__getitem__", [base, index])
        return UNKNOWN if value is NOT_SCALAR else value

    def attribute(self, owner: Any, name: str) -> Any:
        if isinstance(owner, Namespace):
            if owner.name == "CONSTANTS":
                return self.constants.get(name, UNKNOWN)
            return Namespace(f"{owner.name}.{name}")
        if isinstance(owner, ModuleValue):
            state = owner.obj.state
            path = f"{owner.path}.{name}" if owner.path else name
            if name in state:
                return self._state_value(state[name], path)
            cls = self.code.cls(owner.obj.qualname)
            if cls is not None and name in cls.constants:
                return cls.constants[name]
        return UNKNOWN

    def _state_value(self, value: Any, path: str) -> Any:
        if isinstance(value, ObjectRecord):
            return ModuleValue(value, self.paths.get(id(value), path))
        if isinstance(value, TensorRecord):
            return Ref(path)
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        plain = isinstance(value, (list, tuple)) and len(value) <= 64
        if plain and all(v is None or isinstance(v, (bool, int, float, str)) for v in value):
            return list(value) if isinstance(value, list) else tuple(value)
        return UNKNOWN

    def call(self, node: ast.Call, frame: Frame, hint: str, want: int) -> Any:
        func = node.func
        if (
            isinstance(func, ast.Name)
            and func.id in ("annotate", "unchecked_cast")
            and len(node.args) == 2
        ):
            return self.eval(node.args[1], frame)
        if isinstance(func, ast.Attribute):
            owner = self.eval(func.value, frame)
            if isinstance(owner, ModuleValue):
                args, kwargs = self._arguments(node, frame)
                frame.node = node  # the call site locates what the callee adds
                return self.call_method(owner, func.attr, args, kwargs, frame)
            callee = self.attribute(owner, func.attr)
        else:
            callee = self.eval(func, frame)
        args, kwargs = self._arguments(node, frame)
        frame.node = node
        if isinstance(callee, Builtin):
            return self._builtin(callee.name, args)
        if not isinstance(callee, Namespace):
            return UNKNOWN
        if callee.name.startswith("__torch__."):
            if callee.name.endswith(".__new__"):
                return UNKNOWN  # a TorchScript class instance created at run time
            return self.call_function(callee.name, args, kwargs, frame)
        return self.operator(callee.name, args, kwargs, frame, hint, want)

    def _arguments(self, node: ast.Call, frame: Frame) -> tuple[list, dict]:
        args = [self.eval(arg, frame) for arg in node.args]
        kwargs = {kw.arg: self.eval(kw.value, frame) for kw in node.keywords if kw.arg}
        return args, kwargs

    def _builtin(self, name: str, args: list) -> Any:
        if name == "getattr" and len(args) == 2 and isinstance(args[1], str):
            return self.attribute(args[0], args[1])
        if name in _CONVERSIONS and len(args) == 1:
            return scalar_op(_CONVERSIONS[name], args)
        if name == "len" and len(args) == 1:
            return scalar_op("len", args)
        return UNKNOWN


def _hint(target: ast.expr) -> str:
    return target.id if isinstance(target, ast.Name) else ""


def _truth(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return bool(value)
    if isinstance(value, (int, float)):
        return value != 0
    return UNKNOWN


def _always_raises(statements: list[ast.stmt]) -> bool:
    for statement in statements:
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
            func = statement.value.func
            if isinstance(func, ast.Attribute) and func.attr == "RaiseException":
                return True
        both = isinstance(statement, ast.If) and statement.orelse
        if both and _always_raises(statement.body) and _always_raises(statement.orelse):
            return True
    return False
