"""TorchScript archives (``torch.jit.save``) read statically: no code from the file runs.

``data.pkl`` holds the module tree (read with :mod:`bnlint.loaders.safe_pickle`), the raw
storages live in ``data/<key>``, and each class's TorchScript source is in ``code/``. The
source is *parsed* (``ast``), never executed, for what the pickle does not hold:
``Final`` constants of scripted modules (``eps``, ``momentum``, ``affine``,
``track_running_stats``, conv geometry) and, in traced archives, the literal arguments
of ``torch.batch_norm`` / ``torch._convolution`` (where a traced training flag is baked
in). There is no dataflow graph: graph rules need ``--trust-model-code``.
"""

from __future__ import annotations

import ast
import pickle
import re
from pathlib import Path
from typing import Any

from bnlint.graph import BatchSize, GraphFacts, ModelGraph
from bnlint.loaders import LoadError
from bnlint.loaders.safe_pickle import ObjectRecord, TensorRecord, interpret, restricted_loads
from bnlint.loaders.torch_archive import ZipArchive
from bnlint.loaders.torch_modules import ModuleRecord, add_module_nodes

MAX_PICKLE_BYTES = 512 * 1024**2
MAX_SOURCE_BYTES = 8 * 1024**2  # one class file of TorchScript; real ones are kilobytes
# Module paths walked per distinct module object: sharing a submodule is legal, but a
# tree that shares at every level describes exponentially many paths.
_PATHS_PER_MODULE = 10
_PATHS_FLOOR = 10_000
_MANGLE = re.compile(r"\.___torch_mangle_\d+")
_BN_ARGS = ("input", "weight", "bias", "running_mean", "running_var", "training", "momentum", "eps")
_CONV_ARGS = (
    "input",
    "weight",
    "bias",
    "stride",
    "padding",
    "dilation",
    "transposed",
    "output_padding",
    "groups",
)
_CONVND_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")


def is_torchscript(archive: ZipArchive) -> bool:
    return archive.has("constants.pkl") or any(n.startswith("code/") for n in archive.names())


def load(path: Path, settings: Any, archive: ZipArchive | None = None) -> ModelGraph:
    return TorchScriptReader(archive or ZipArchive(path), path).build()


def demangle(qualname: str) -> str:
    """``torch.nn.modules.batchnorm.BatchNorm2d`` from a ``__torch__…___torch_mangle_3`` name."""
    name = _MANGLE.sub("", qualname)
    return name[len("__torch__.") :] if name.startswith("__torch__.") else name


def safe_unpickle(archive: ZipArchive, member: str, path: Path) -> Any:
    try:
        return interpret(restricted_loads(archive.read(member, limit=MAX_PICKLE_BYTES)))
    except LoadError:
        raise
    except (pickle.UnpicklingError, EOFError, RecursionError, MemoryError) as error:
        raise LoadError(path, f"cannot parse {member}: {type(error).__name__}: {error}") from None
    except (TypeError, ValueError, AttributeError, IndexError, KeyError, OverflowError) as error:
        raise LoadError(path, f"malformed {member}: {type(error).__name__}: {error}") from None


class ClassInfo:
    """What a class's TorchScript source declares, read with ``ast`` (not executed)."""

    def __init__(self) -> None:
        self.parameters: list[str] | None = None
        self.buffers: list[str] | None = None
        self.constants: dict[str, Any] = {}
        self.calls: dict[str, dict[str, Any]] = {}  # "batch_norm"/"conv" -> literal args


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _UNKNOWN


_UNKNOWN = object()


def parse_class(source: str, class_name: str) -> ClassInfo:
    info = ClassInfo()
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return info
    node = next(
        (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name), None
    )
    if node is None:
        return info
    for item in node.body:
        if isinstance(item, ast.Assign) and len(item.targets) == 1:
            target = item.targets[0]
            value = _literal(item.value)
            if isinstance(target, ast.Name) and isinstance(value, list):
                if target.id == "__parameters__":
                    info.parameters = [str(v) for v in value]
                elif target.id == "__buffers__":
                    info.buffers = [str(v) for v in value]
        elif isinstance(item, ast.AnnAssign) and item.value is not None:
            annotation = ast.unparse(item.annotation)
            if annotation.startswith("Final[") and isinstance(item.target, ast.Name):
                value = _literal(item.value)
                if value is not _UNKNOWN:
                    info.constants[item.target.id] = value
        elif isinstance(item, ast.FunctionDef):
            for call in ast.walk(item):
                if isinstance(call, ast.Call):
                    _record_call(info, call)
    return info


def _record_call(info: ClassInfo, call: ast.Call) -> None:
    func = call.func
    if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)):
        return
    if func.value.id != "torch":
        return
    names = {"batch_norm": _BN_ARGS, "_convolution": _CONV_ARGS}.get(func.attr)
    if names is None and re.fullmatch(r"conv[123]d", func.attr):
        names = _CONVND_ARGS
    if names is None:
        return
    values = {}
    for name, arg in zip(names, call.args, strict=False):
        value = _literal(arg)
        if value is not _UNKNOWN:
            values[name] = value
    info.calls["batch_norm" if func.attr == "batch_norm" else "conv"] = values


class TorchScriptReader:
    def __init__(self, archive: ZipArchive, path: Path) -> None:
        self.archive = archive
        self.path = path
        self.big_endian = False
        self._sources: dict[str, str | None] = {}
        self._classes: dict[str, ClassInfo] = {}
        self._walked = 0
        self._distinct: set[int] = set()
        self.graph: ModelGraph | None = None

    def build(self) -> ModelGraph:
        if not self.archive.has("data.pkl"):
            raise LoadError(self.path, "TorchScript archive without data.pkl")
        if self.archive.has("byteorder"):
            self.big_endian = self.archive.read("byteorder", limit=16).strip() == b"big"
        root = safe_unpickle(self.archive, "data.pkl", self.path)
        if not isinstance(root, ObjectRecord):
            described = f" (it describes {root!r}, never called)" if root is not None else ""
            raise LoadError(self.path, f"data.pkl does not hold a TorchScript module{described}")
        facts = GraphFacts(
            format="torchscript", default_phase="inference", has_edges=False, has_modules=True
        )
        facts.partial.append(
            "TorchScript read statically (module tree, attributes, weights; no dataflow "
            "graph); --trust-model-code loads it with torch.jit.load"
        )
        graph = self.graph = ModelGraph(self.path, facts)
        records: dict[str, ModuleRecord] = {}
        requires_grad: dict[str, bool] = {}
        self._walk(root, "", records, requires_grad, depth=0)
        facts.mode = "training" if records[""].training else "inference"
        add_module_nodes(graph, records, requires_grad)
        self._traced_batch(facts)
        graph.extras["module_records"] = records
        return graph.finalize()

    def _class_info(self, qualname: str) -> ClassInfo:
        if qualname not in self._classes:
            self._classes[qualname] = self._parse_class_info(qualname)
        return self._classes[qualname]

    def _parse_class_info(self, qualname: str) -> ClassInfo:
        module, _, class_name = qualname.rpartition(".")
        member = "code/" + module.replace(".", "/") + ".py"
        if member not in self._sources:
            try:
                text = (
                    self.archive.read(member, limit=MAX_SOURCE_BYTES)
                    if self.archive.has(member)
                    else None
                )
                self._sources[member] = text.decode("utf-8", "replace") if text else None
            except LoadError:
                self._sources[member] = None
        source = self._sources[member]
        return parse_class(source, class_name) if source else ClassInfo()

    def _walk(
        self,
        obj: ObjectRecord,
        path: str,
        records: dict[str, ModuleRecord],
        requires_grad: dict[str, bool],
        depth: int,
    ) -> None:
        if depth > 100:
            raise LoadError(self.path, "module tree deeper than 100 levels")
        self._walked += 1
        self._distinct.add(id(obj))
        if self._walked > _PATHS_FLOOR + _PATHS_PER_MODULE * len(self._distinct):
            raise LoadError(
                self.path,
                f"module tree reaches {len(self._distinct)} modules through more than "
                f"{self._walked} paths (submodules shared at every level)",
            )
        info = self._class_info(obj.qualname)
        record = ModuleRecord(path=path, qualname=demangle(obj.qualname))
        record.constants.update(info.constants)
        declared = set(info.parameters or []) | set(info.buffers or [])
        children = []
        prefix = f"{path}." if path else ""
        for key, value in obj.state.items():
            if key == "training" and isinstance(value, bool):
                record.training = value
            elif isinstance(value, ObjectRecord) and "training" in value.state:
                children.append((f"{prefix}{key}", value))
            elif isinstance(value, TensorRecord):
                fqn = f"{prefix}{key}"
                record.tensors[key] = fqn
                self._register(fqn, value)
                is_param = key in (info.parameters or ("weight", "bias"))
                if is_param:
                    requires_grad[fqn] = value.requires_grad
            elif value is None and (key in declared or key in ("running_mean", "running_var")):
                record.tensors[key] = None
        self._apply_calls(record, info)
        record.has_children = bool(children)
        records[path] = record
        for child_path, child in children:
            self._walk(child, child_path, records, requires_grad, depth + 1)

    def _apply_calls(self, record: ModuleRecord, info: ClassInfo) -> None:
        bn = info.calls.get("batch_norm", {})
        if isinstance(bn.get("training"), bool):
            record.constants["traced_training"] = bn["training"]
        for key in ("momentum", "eps"):
            if key in bn and key not in record.constants:
                record.constants[key] = bn[key]
        if "running_mean" in bn and bn["running_mean"] is None:
            record.constants.setdefault("track_running_stats", False)
        conv = info.calls.get("conv", {})
        for key in ("stride", "padding", "dilation", "groups", "output_padding"):
            if key in conv and key not in record.constants:
                record.constants[key] = conv[key]

    def _register(self, fqn: str, tensor: TensorRecord) -> None:
        graph = self.graph
        assert graph is not None
        dtype = tensor.storage.dtype
        key = tensor.storage.key
        if (
            not key
            or not all(c.isalnum() or c in "_-" for c in key)
            or not self.archive.has(f"data/{key}")
        ):
            raise LoadError(self.path, f"tensor {fqn!r} points to {key!r}, not a storage in data/")
        if dtype is None:
            graph.facts.partial.append(f"tensor {fqn!r} has an unsupported storage type")
            return
        loader = self.archive.tensor_loader(
            f"data/{tensor.storage.key}",
            dtype,
            tensor.size,
            tensor.stride,
            tensor.offset,
            self.big_endian,
            tensor=fqn,
        )
        graph.params.add(fqn, loader, shape=tensor.size, dtype=dtype)
        record = graph.tensor(fqn)
        record.shape, record.dtype, record.is_param = tensor.size, dtype, True

    def _traced_batch(self, facts: GraphFacts) -> None:
        """Traced archives keep the example inputs' layout in ``traced_inputs.pkl``."""
        if not self.archive.has("traced_inputs.pkl"):
            return
        try:
            traced = safe_unpickle(self.archive, "traced_inputs.pkl", self.path)
        except LoadError:
            return
        inputs = traced.get("forward") if isinstance(traced, dict) else None
        for index, value in enumerate(inputs or []):
            if isinstance(value, TensorRecord) and value.size:
                facts.batch_sizes[f"input_{index}"] = BatchSize(
                    int(value.size[0]), "traced example input"
                )
