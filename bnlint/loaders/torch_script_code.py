"""The TorchScript source of an archive: parsed with ``ast``, checked, never compiled or run.

``torch.jit.save`` writes each class and function as Python source under ``code/``
(``code/__torch__/torch/nn/modules/conv.py`` holds ``Conv2d``). That source comes from
TorchScript's printer, which emits a small subset of Python: assignments, ``if``/``for``/
``while``/``with``, calls, attribute loads, literals and ``return``; operators are calls
(``torch.add``), never ``+``. Every file is checked against that subset before anything
reads it, and anything else (``__import__``, dunder attributes such as ``__class__`` or
``__globals__``, lambdas, comprehensions, ``try``, operators, decorators …) refuses the
archive with the file and line: an archive torch did not write is not guessed at.

``.debug_pkl`` members map byte offsets of the printed code to the original source
(scripted: the user's file and line; traced: the Python call stack at trace time); they are
read with the restricted unpickler.
"""

from __future__ import annotations

import ast
import bisect
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bnlint.loaders.files import LoadError
from bnlint.loaders.safe_pickle import restricted_loads
from bnlint.loaders.torch_archive import ZipArchive
from bnlint.loaders.torch_aten import is_torch_source
from bnlint.loaders.torch_pickle import interpret

MAX_SOURCE_BYTES = 8 * 1024**2  # one class file of TorchScript; real ones are kilobytes
MAX_DEBUG_BYTES = 64 * 1024**2

_ALLOWED = (
    ast.Module,
    ast.ClassDef,
    ast.FunctionDef,
    ast.arguments,
    ast.arg,
    ast.Assign,
    ast.AnnAssign,
    ast.Expr,
    ast.If,
    ast.For,
    ast.While,
    ast.With,
    ast.withitem,
    ast.Return,
    ast.Pass,
    ast.Break,
    ast.Continue,
    ast.Import,
    ast.alias,
    ast.Name,
    ast.Attribute,
    ast.Call,
    ast.keyword,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Dict,
    ast.Subscript,
    ast.Slice,
    ast.UnaryOp,
    ast.USub,
    ast.UAdd,
    ast.Not,
    ast.Load,
    ast.Store,
)
# Names with double underscores that the printer writes: the class namespace, module
# metadata in class bodies, forked closures.
_DUNDER_NAMES = {
    "__torch__",
    "__annotations__",
    "__parameters__",
    "__buffers__",
    "__forward_pre_hooks__",
    "__forward_hooks__",
}
# aten operators spelled as dunders, callable only as torch.__x__ / ops.aten.__x__
_OPERATOR_WORDS = "and or xor lshift rshift iand ior ixor ilshift irshift is isnot not contains"
_DUNDER_OPERATORS = frozenset(f"__{name}__" for name in [*_OPERATOR_WORDS.split(), "getitem"])
_FORBIDDEN_CALLS = {
    "eval",
    "exec",
    "compile",
    "open",
    "globals",
    "locals",
    "vars",
    "input",
    "breakpoint",
    "setattr",
    "delattr",
    "type",
    "object",
    "super",
    "memoryview",
    "exit",
    "quit",
    "help",
    "classmethod",
    "staticmethod",
    "property",
}
_FRAME = re.compile(r"^(.+?)\((\d+)\): ", re.MULTILINE)


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__") and len(name) > 4


def _root(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _namespace(node: ast.AST) -> bool:
    """``torch`` or ``ops.<namespace>``: where operators live."""
    if isinstance(node, ast.Name):
        return node.id == "torch"
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "ops"
    )


class _Refusal(Exception):
    def __init__(self, node: ast.AST, problem: str) -> None:
        super().__init__(problem)
        self.line = getattr(node, "lineno", 0)


def _check_node(node: ast.AST, parents: dict[int, ast.AST]) -> None:
    if not isinstance(node, _ALLOWED):
        raise _Refusal(node, f"{type(node).__name__} is not in the TorchScript subset")
    if isinstance(node, ast.Name) and _dunder(node.id) and node.id not in _DUNDER_NAMES:
        if not node.id.startswith("__forked_function"):
            raise _Refusal(node, f"the name {node.id!r} is not in the TorchScript subset")
    elif isinstance(node, ast.Attribute) and _dunder(node.attr):
        operator = node.attr in _DUNDER_OPERATORS and _namespace(node.value)  # torch.__is__
        constructor = node.attr == "__new__" and _root(node.value) == "__torch__"
        if not (operator or constructor):
            raise _Refusal(node, f"the attribute {node.attr!r} is not in the TorchScript subset")
    elif isinstance(node, ast.Call):
        _check_call(node)
    elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        if node.decorator_list:
            raise _Refusal(node, f"decorators on {node.name!r} are not in the TorchScript subset")
        if isinstance(node, ast.ClassDef) and node.keywords:
            raise _Refusal(
                node, f"class keywords on {node.name!r} are not in the TorchScript subset"
            )
        if isinstance(node, ast.FunctionDef) and (node.args.vararg or node.args.kwarg):
            raise _Refusal(
                node, f"*args/**kwargs of {node.name!r} are not in the TorchScript subset"
            )
    elif isinstance(node, ast.Import):
        if parents.get(id(node)) is not None or any(
            alias.asname or alias.name.split(".")[0] not in ("torch", "__torch__")
            for alias in node.names
        ):
            raise _Refusal(node, "an import of anything but torch is not in the TorchScript subset")
    elif isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        in_class = isinstance(parents.get(id(node)), ast.ClassDef)
        for target in targets:
            for part in ast.walk(target):
                stored = isinstance(part, ast.Subscript) and isinstance(part.ctx, ast.Store)
                if stored and not in_class:
                    raise _Refusal(node, "item assignment is not in the TorchScript subset")


def _check_call(node: ast.Call) -> None:
    if any(keyword.arg is None for keyword in node.keywords):
        raise _Refusal(node, "**kwargs in a call is not in the TorchScript subset")
    func = node.func
    if isinstance(func, ast.Name) and func.id in _FORBIDDEN_CALLS:
        raise _Refusal(node, f"a call of {func.id}() is not in the TorchScript subset")
    if isinstance(func, ast.Name) and func.id == "getattr":
        name = node.args[1] if len(node.args) == 2 and not node.keywords else None
        if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
            raise _Refusal(node, "getattr() with a computed name is not in the TorchScript subset")
        if _dunder(name.value):
            raise _Refusal(node, f"getattr(…, {name.value!r}) is not in the TorchScript subset")
    if not isinstance(func, (ast.Name, ast.Attribute, ast.Subscript)):
        raise _Refusal(node, f"calling a {type(func).__name__} is not in the TorchScript subset")


def check_source(tree: ast.Module) -> None:
    """Raise ``_Refusal`` at the first construct outside the printer's subset."""
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            if not isinstance(node, ast.Module):
                parents[id(child)] = node
        _check_node(node, parents)


@dataclass
class ClassCode:
    """A class of the archive: its methods and what its body declares."""

    name: str
    member: str
    methods: dict[str, ast.FunctionDef] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)  # Final[...] = value
    parameters: list[str] | None = None
    buffers: list[str] | None = None


class _Unknown:
    pass


def _literal(node: ast.AST | None) -> Any:
    if node is None:
        return _NO_VALUE
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NO_VALUE


_NO_VALUE = _Unknown()


def _class_code(node: ast.ClassDef, member: str) -> ClassCode:
    code = ClassCode(node.name, member)
    for item in node.body:
        if isinstance(item, ast.FunctionDef):
            code.methods[item.name] = item
        elif isinstance(item, ast.Assign) and len(item.targets) == 1:
            target, value = item.targets[0], _literal(item.value)
            if isinstance(target, ast.Name) and isinstance(value, list):
                if target.id == "__parameters__":
                    code.parameters = [str(v) for v in value]
                elif target.id == "__buffers__":
                    code.buffers = [str(v) for v in value]
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            annotation = item.annotation
            final = isinstance(annotation, ast.Subscript) and _root(annotation.value) == "Final"
            value = _literal(item.value)
            if final and value is not _NO_VALUE:
                code.constants[item.target.id] = list(value) if isinstance(value, tuple) else value
    return code


class DebugLines:
    """Byte offset in a printed file -> the source frames it came from."""

    def __init__(self, entries: list[tuple[int, list[tuple[str, int]]]]) -> None:
        self.offsets = [offset for offset, _ in entries]
        self.frames = [frames for _, frames in entries]

    def at(self, offset: int) -> list[tuple[str, int]]:
        index = bisect.bisect_right(self.offsets, offset) - 1
        return self.frames[index] if index >= 0 else []


def parse_debug(data: Any) -> DebugLines | None:
    """``.debug_pkl`` contents (with or without a string table) as :class:`DebugLines`."""
    strings: tuple = ()
    if isinstance(data, tuple) and len(data) == 3 and data[0] == "FORMAT_WITH_STRING_TABLE":
        strings, data = data[1], data[2]
    if not isinstance(data, tuple):
        return None
    entries = []
    for entry in data[:200_000]:
        if not (isinstance(entry, tuple) and len(entry) >= 2 and isinstance(entry[0], int)):
            continue
        frames = _frames(entry[1], strings)
        entries.append((entry[0], frames))
    entries.sort(key=lambda item: item[0])
    return DebugLines(entries)


def _text(part: Any, strings: tuple) -> str | None:
    if isinstance(part, str):
        return part
    if isinstance(part, int) and 0 <= part < len(strings) and isinstance(strings[part], str):
        return strings[part]
    if isinstance(part, list) and all(isinstance(i, int) for i in part):
        pieces = [_text(i, strings) for i in part]
        return "".join(p for p in pieces if p)
    return None


def _frames(source_range: Any, strings: tuple) -> list[tuple[str, int]]:
    """Frames of one range: ``((text, filename, start_line), start, end)``."""
    if not (isinstance(source_range, tuple) and len(source_range) == 3):
        return []
    source, start, end = source_range
    if not (isinstance(source, tuple) and len(source) == 3 and isinstance(start, int)):
        return []
    text, filename, first_line = _text(source[0], strings), _text(source[1], strings), source[2]
    if not text or not isinstance(first_line, int):
        return []
    stack = text[start : end if isinstance(end, int) else None]
    traced = [(m.group(1).strip(), int(m.group(2))) for m in _FRAME.finditer(stack)]
    if traced:
        return traced
    if filename:
        return [(filename, first_line + text.count("\n", 0, max(start, 0)))]
    return []


def user_frame(frames: list[tuple[str, int]]) -> tuple[str, int] | None:
    return next((frame for frame in frames if not is_torch_source(frame[0])), None)


@dataclass
class SourceFile:
    member: str
    classes: dict[str, ClassCode]
    functions: dict[str, ast.FunctionDef]
    line_starts: list[int]
    debug: DebugLines | None

    def frames(self, node: ast.AST) -> list[tuple[str, int]]:
        if self.debug is None or not hasattr(node, "lineno"):
            return []
        line = node.lineno - 1
        if not 0 <= line < len(self.line_starts):
            return []
        return self.debug.at(self.line_starts[line] + node.col_offset)


class ScriptCode:
    """Every class and function of an archive's ``code/``, parsed on first use."""

    def __init__(self, archive: ZipArchive, path: Path) -> None:
        self.archive = archive
        self.path = path
        self._files: dict[str, SourceFile | None] = {}

    def _file(self, module: str) -> SourceFile | None:
        member = "code/" + module.replace(".", "/") + ".py"
        if member not in self._files:
            self._files[member] = self._parse(member) if self.archive.has(member) else None
        return self._files[member]

    def _parse(self, member: str) -> SourceFile:
        data = self.archive.read(member, limit=MAX_SOURCE_BYTES)
        try:
            tree = ast.parse(data.decode("utf-8"), filename=member)
            check_source(tree)
        except _Refusal as refusal:
            raise LoadError(
                self.path, f"{member}, line {refusal.line}: {refusal}; refusing the archive"
            ) from None
        except (SyntaxError, UnicodeDecodeError, ValueError) as error:
            raise LoadError(self.path, f"{member} is not TorchScript source: {error}") from None
        except (RecursionError, MemoryError):
            raise LoadError(self.path, f"{member} is nested too deeply to read") from None
        starts, position = [], 0
        for line in data.split(b"\n"):
            starts.append(position)
            position += len(line) + 1
        classes = {n.name: _class_code(n, member) for n in tree.body if isinstance(n, ast.ClassDef)}
        functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        return SourceFile(member, classes, functions, starts, self._debug(member + ".debug_pkl"))

    def _debug(self, member: str) -> DebugLines | None:
        if not self.archive.has(member):
            return None
        try:
            data = self.archive.read(member, limit=MAX_DEBUG_BYTES)
            return parse_debug(interpret(restricted_loads(data)))
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, RecursionError):
            return None  # debug information is optional; a broken one only costs lines

    def lookup(self, qualname: str) -> tuple[SourceFile, str] | None:
        module, _, name = qualname.rpartition(".")
        source = self._file(module) if module else None
        return (source, name) if source is not None else None

    def cls(self, qualname: str) -> ClassCode | None:
        found = self.lookup(qualname)
        return found[0].classes.get(found[1]) if found else None

    def function(self, qualname: str) -> tuple[ast.FunctionDef, SourceFile] | None:
        found = self.lookup(qualname)
        if found is None or found[1] not in found[0].functions:
            return None
        return found[0].functions[found[1]], found[0]

    def source_of(self, member: str) -> SourceFile | None:
        return self._files.get(member)
