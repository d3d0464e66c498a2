"""TorchScript archives (``torch.jit.save``) read statically: no code from the file runs.

``data.pkl`` holds the module tree (read with :mod:`bnlint.loaders.safe_pickle`), the raw
storages live in ``data/<key>``, and each class's TorchScript source is in ``code/``. The
source is parsed and checked (:mod:`bnlint.loaders.torch_script_code`) and its ``forward``
interpreted over abstract values (:mod:`bnlint.loaders.torch_script_eval`), never compiled
or executed: the result is the same aten-level graph ``torch.jit.load`` would give the
trusted reader, with ``Final`` constants (``eps``, ``momentum``) from the class source,
modes and weights from the pickle, source lines from the archive's debug information and
input shapes from a traced archive's ``traced_inputs.pkl`` (or ``--input-shape``).
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

from bnlint.graph import BatchSize, GraphFacts, ModelGraph
from bnlint.loaders.files import LoadError
from bnlint.loaders.safe_pickle import describe, restricted_loads
from bnlint.loaders.torch_archive import ZipArchive
from bnlint.loaders.torch_aten import Ref
from bnlint.loaders.torch_infer import assume_linear_features
from bnlint.loaders.torch_modules import ModuleRecord, add_module_nodes
from bnlint.loaders.torch_pickle import ObjectRecord, TensorRecord, interpret
from bnlint.loaders.torch_program import ProgramWriter, script_builder
from bnlint.loaders.torch_scalars import UNKNOWN
from bnlint.loaders.torch_script_code import ScriptCode
from bnlint.loaders.torch_script_eval import ScriptInterpreter

MAX_PICKLE_BYTES = 512 * 1024**2
# Module paths walked per distinct module object: sharing a submodule is legal, but a
# tree that shares at every level describes exponentially many paths.
_PATHS_PER_MODULE = 10
_PATHS_FLOOR = 10_000
_MANGLE = re.compile(r"\.___torch_mangle_\d+")


def is_torchscript(archive: ZipArchive) -> bool:
    return archive.has("constants.pkl") or any(n.startswith("code/") for n in archive.names())


def load(path: Path, settings: Any, archive: ZipArchive | None = None) -> ModelGraph:
    shapes = dict(getattr(settings, "input_shapes", {}) or {})
    return TorchScriptReader(archive or ZipArchive(path), path).build(shapes)


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


def traced_input_shapes(archive: ZipArchive, path: Path) -> list[tuple[int, ...]] | None:
    """The example inputs' shapes a traced archive keeps in ``traced_inputs.pkl``."""
    if not archive.has("traced_inputs.pkl"):
        return None
    try:
        traced = safe_unpickle(archive, "traced_inputs.pkl", path)
    except LoadError:
        return None
    inputs = traced.get("forward") if isinstance(traced, dict) else None
    if not isinstance(inputs, (list, tuple)):
        return None
    return [tuple(v.size) if isinstance(v, TensorRecord) else () for v in inputs[:64]]


class _NoForward(Exception):
    pass


class TorchScriptReader:
    def __init__(self, archive: ZipArchive, path: Path) -> None:
        self.archive = archive
        self.path = path
        self.big_endian = False
        self.code = ScriptCode(archive, path)
        self._walked = 0
        self._distinct: dict[int, str] = {}  # id(module object) -> its first path
        self.graph: ModelGraph | None = None

    def build(self, input_shapes: dict[str, tuple[int, ...]] | None = None) -> ModelGraph:
        if not self.archive.has("data.pkl"):
            raise LoadError(self.path, "TorchScript archive without data.pkl")
        if self.archive.has("byteorder"):
            self.big_endian = self.archive.read("byteorder", limit=16).strip() == b"big"
        root = safe_unpickle(self.archive, "data.pkl", self.path)
        if not isinstance(root, ObjectRecord):
            raise LoadError(
                self.path,
                f"data.pkl does not hold a TorchScript module (it holds {describe(root)})",
            )
        facts = GraphFacts(format="torchscript", default_phase="inference", has_modules=True)
        graph = self.graph = ModelGraph(self.path, facts)
        records: dict[str, ModuleRecord] = {}
        requires_grad: dict[str, bool] = {}
        self._walk(root, "", records, requires_grad, depth=0)
        cls = self.code.cls(root.qualname)
        try:
            if cls is None or "forward" not in cls.methods:
                raise _NoForward(f"{demangle(root.qualname)[:200]} has no forward method in code/")
            self._interpret(root, records, requires_grad, input_shapes or {})
            assume_linear_features(graph)
        except LoadError:
            raise
        except Exception as error:  # no forward, or an interpreter gap: the module tree, BN901
            detail = " ".join(f"{type(error).__name__}: {error}".split())[:200]
            if isinstance(error, _NoForward):
                detail = str(error)
            graph = self.graph = ModelGraph(self.path, facts)
            facts.has_edges = False
            facts.partial[:] = [
                f"the TorchScript code could not be interpreted ({detail}); "
                "only the module tree was read"
            ]
            records, requires_grad = {}, {}
            self._walked, self._distinct = 0, {}
            self._walk(root, "", records, requires_grad, depth=0)
            add_module_nodes(graph, records, requires_grad)
        bns = graph.nodes_of("batch_norm")
        if bns:
            facts.mode = "training" if any(bn.attrs["training"] for bn in bns) else "inference"
        else:
            facts.mode = "training" if records[""].training else "inference"
        return graph.finalize()

    def _interpret(
        self,
        root: ObjectRecord,
        records: dict[str, ModuleRecord],
        requires_grad: dict[str, bool],
        given: dict[str, tuple[int, ...]],
    ) -> None:
        graph = self.graph
        assert graph is not None
        builder = script_builder(graph, records, requires_grad)
        interpreter = ScriptInterpreter(
            self.code,
            ProgramWriter(graph, builder),
            paths=dict(self._distinct),
            constants=self._constants(),
        )
        arguments = interpreter.forward_arguments(root)
        traced = traced_input_shapes(self.archive, self.path)
        shapes, source = _input_shapes(arguments, given, traced)
        inputs: list[Any] = []
        for (name, is_tensor), shape in zip(arguments, shapes, strict=True):
            if not is_tensor:
                inputs.append(None if shape is None else shape)
                continue
            graph.tensor(name).is_graph_input = True
            graph.tensor(name).shape = shape
            graph.graph_inputs.append(name)
            if shape:
                graph.facts.batch_sizes[name] = BatchSize(int(shape[0]), source)
            inputs.append(Ref(name))
        from bnlint.loaders.torch_script_ops import DeadPath

        try:
            result = interpreter.run(root, inputs)
        except DeadPath:
            graph.facts.partial.append("forward always raises an exception")
            return
        except RecursionError:
            raise LoadError(self.path, "TorchScript code nested too deeply to read") from None
        for ref in _refs(result):
            name = builder.name(ref.name)
            graph.tensor(name).is_graph_output = True
            graph.graph_outputs.append(name)

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
        if id(obj) in self._distinct:
            return  # a shared submodule: one record, at its first path
        self._distinct[id(obj)] = path
        if self._walked > _PATHS_FLOOR + _PATHS_PER_MODULE * len(self._distinct):
            raise LoadError(
                self.path,
                f"module tree reaches {len(self._distinct)} modules through more than "
                f"{self._walked} paths (submodules shared at every level)",
            )
        code = self.code.cls(obj.qualname)
        record = ModuleRecord(path=path, qualname=demangle(obj.qualname))
        declared: set[str] = set()
        parameters: list[str] | tuple[str, ...] = ("weight", "bias")
        if code is not None:
            record.constants.update(code.constants)
            declared = set(code.parameters or []) | set(code.buffers or [])
            parameters = code.parameters if code.parameters is not None else parameters
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
                if key in parameters:
                    requires_grad[fqn] = value.requires_grad
            elif value is None and (key in declared or key in ("running_mean", "running_var")):
                record.tensors[key] = None
        counter = record.tensors.get("num_batches_tracked")
        if counter is not None and self.graph is not None:
            try:
                array = self.graph.param(counter)
                if array is not None and array.size == 1:
                    record.constants["num_batches_tracked"] = int(array.reshape(-1)[0])
            except Exception:  # an unreadable counter is simply unknown
                pass
        record.has_children = bool(children)
        records[path] = record
        for child_path, child in children:
            self._walk(child, child_path, records, requires_grad, depth + 1)

    def _constants(self) -> dict[str, Any]:
        """``CONSTANTS.c<i>`` of the code: a one-element tensor as its value (arithmetic on
        sizes, as the trusted reader gets it from the constant), larger ones as tensors."""
        if not self.archive.has("constants.pkl"):
            return {}
        values = safe_unpickle(self.archive, "constants.pkl", self.path)
        found: dict[str, Any] = {}
        for index, value in enumerate(values if isinstance(values, (tuple, list)) else ()):
            name = f"c{index}"
            if isinstance(value, (bool, int, float, str)):
                found[name] = value
            elif isinstance(value, TensorRecord):
                found[name] = self._constant_tensor(f"CONSTANTS.{name}", value)
        return found

    def _constant_tensor(self, fqn: str, tensor: TensorRecord) -> Any:
        self._register(fqn, tensor, folder="constants")
        graph = self.graph
        assert graph is not None
        if fqn not in graph.params or any(d != 1 for d in tensor.size):
            return Ref(fqn) if fqn in graph.params else UNKNOWN
        try:
            array = graph.param(fqn)
        except Exception:  # unreadable: unknown, and reported by the rule that needs it
            return UNKNOWN
        item = array.reshape(-1)[0].item() if array is not None and array.size == 1 else None
        return item if isinstance(item, (bool, int, float)) else UNKNOWN

    def _register(self, fqn: str, tensor: TensorRecord, folder: str = "data") -> None:
        graph = self.graph
        assert graph is not None
        dtype = tensor.storage.dtype
        key = tensor.storage.key
        if (
            not key
            or not all(c.isalnum() or c in "_-" for c in key)
            or not self.archive.has(f"{folder}/{key}")
        ):
            raise LoadError(
                self.path, f"tensor {fqn!r} points to {key!r}, not a storage in {folder}/"
            )
        if fqn in graph.params:
            return
        if dtype is None:
            graph.facts.partial.append(f"tensor {fqn!r} has an unsupported storage type")
            return
        loader = self.archive.tensor_loader(
            f"{folder}/{tensor.storage.key}",
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


def _input_shapes(
    arguments: list[tuple[str, bool]],
    given: dict[str, tuple[int, ...]],
    traced: list[tuple[int, ...]] | None,
) -> tuple[list[tuple[int, ...] | None], str]:
    """Each ``forward`` argument's shape: ``--input-shape`` by name (else in order), else
    the traced example inputs, else unknown."""
    if given:
        names = [name for name, _ in arguments]
        if set(given) <= set(names):
            return [tuple(given[n]) if n in given else None for n in names], "--input-shape"
        ordered = list(given.values())
        shapes = [tuple(ordered[i]) if i < len(ordered) else None for i in range(len(names))]
        return shapes, "--input-shape"
    if traced is not None:
        shapes = [traced[i] if i < len(traced) else None for i in range(len(arguments))]
        return shapes, "traced example input"
    return [None] * len(arguments), ""


def _refs(value: Any) -> list[Ref]:
    if isinstance(value, Ref):
        return [value]
    if isinstance(value, (list, tuple)):
        return [ref for item in value[:256] for ref in _refs(item)]
    return []
