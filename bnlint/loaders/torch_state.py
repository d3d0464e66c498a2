"""``torch.save`` files: state dicts, training checkpoints and whole pickled modules.

Every file is first read by bnlint itself, with the restricted unpickler (nothing is
imported or called, memory and nesting are bounded while it reads) and every storage's
declared size is checked against the bytes present. A refusal there is final: torch never
sees the file. Then:

- a zip archive (``torch.save``'s format since 1.6) is read entirely statically: a state
  dict or checkpoint becomes BN layers (and inferred producer edges, see
  :mod:`bnlint.loaders.torch_infer`) over tensors read as raw bytes; a whole pickled
  ``nn.Module`` becomes its module tree (:mod:`bnlint.loaders.torch_pickled`);
- a legacy (pre-1.6) file holding a plain state dict is loaded with
  ``torch.load(weights_only=True)``, passed explicitly;
- anything whose objects could only be understood by running code is refused with an
  explanation. Only ``--trust-model-code`` loads with ``weights_only=False``, and only
  after the static read accepted the file.

``--arch module:factory`` puts a state dict's weights into their architecture instead.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from bnlint.graph import GraphFacts, ModelGraph
from bnlint.loaders.files import ZIP_MAGIC, LoadError
from bnlint.loaders.safe_pickle import PickledObject, RestrictedUnpickler, StorageRef, describe
from bnlint.loaders.torch_archive import ZipArchive
from bnlint.loaders.torch_infer import add_inferred_graph
from bnlint.loaders.torch_modules import records_from_tensor_names
from bnlint.loaders.torch_pickle import TensorRecord, interpret
from bnlint.loaders.torch_pickled import find_module, module_records
from bnlint.loaders.torchscript import MAX_PICKLE_BYTES

CHECKPOINT_KEYS = (
    "state_dict",
    "model_state_dict",
    "model",
    "module",
    "net",
    "network",
    "model_ema",
    "ema",
    "state_dict_ema",
    "params",
)
_PREFIXES = ("module.", "model.", "_orig_mod.")
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
LEGACY_MODULE = (
    "holds a whole pickled module in the legacy (pre-1.6) torch.save format, which bnlint "
    "does not read statically; re-save it with a current torch, save its state_dict, or pass "
    "--trust-model-code if you trust this file"
)
REFUSAL = (
    "holds pickled Python objects{what}, not a plain state dict; unpickling them would run "
    "code from the file, so bnlint does not load it. Save the weights with "
    "torch.save(model.state_dict(), path) or export the model with torch.export.save, "
    "or pass --trust-model-code if you trust this file"
)
# Globals PyTorch's own files call while loading, which the static reader understands.
_INERT = {
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "collections.OrderedDict",
    "copyreg._reconstructor",
    "builtins.set",
    "builtins.frozenset",
    "torch.Size",
}


class StaticRead:
    """The file as the restricted unpickler saw it (before anything else reads it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as handle:
            zipped = handle.read(4) == ZIP_MAGIC
        self.archive = ZipArchive(path) if zipped else None  # refuses a zip bomb up front
        try:
            unpickler = self._unpickle()
            self.value = interpret(unpickler.root)
        except LoadError:
            raise
        except (pickle.UnpicklingError, EOFError, RecursionError, MemoryError) as error:
            raise LoadError(path, f"cannot read the pickle: {_describe(error)}") from None
        except (TypeError, ValueError, AttributeError, IndexError, KeyError) as error:
            raise LoadError(path, f"malformed pickle: {_describe(error)}") from None
        self.calls = sorted(unpickler.called - _INERT)  # globals a full unpickle would call
        self._check_storages(unpickler.storages)

    def _unpickle(self) -> _Recorder:
        if self.archive is not None:
            unpickler = _Recorder(self.archive.read("data.pkl", limit=MAX_PICKLE_BYTES))
            unpickler.root = unpickler.load()
            return unpickler
        with self.path.open("rb") as handle:
            first = _Recorder(handle)
            first.root = first.load()
            if first.root != LEGACY_MAGIC:  # a bare pickle, not a torch.save file
                return first
            for _ in range(2):  # protocol version and system information
                _Recorder(handle).load()
            unpickler = _Recorder(handle)
            unpickler.root = unpickler.load()
            return unpickler

    def _check_storages(self, refs: list[StorageRef]) -> None:
        """Refuse storages whose declared size the file cannot hold, before anything
        allocates them (``torch.load`` allocates what the pickle declares)."""
        unique: dict[str, StorageRef] = {}  # views of one storage reference it several times
        for ref in refs:
            if ref.key not in unique or (ref.numel or 0) > (unique[ref.key].numel or 0):
                unique[ref.key] = ref
        if self.archive is not None:
            for ref in unique.values():
                member = f"data/{ref.key}"
                available = self.archive.size(member) if self.archive.has(member) else 0
                _check(self.path, [ref], available)
        else:
            _check(self.path, list(unique.values()), self.path.stat().st_size)


class _Recorder(RestrictedUnpickler):
    """The restricted unpickler, noting which globals the stream would call."""

    root: Any = None

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self.called: set[str] = set()

    def load_reduce(self) -> None:
        super().load_reduce()
        _note(self, self.stack[-1])

    dispatch: ClassVar[dict] = dict(RestrictedUnpickler.dispatch)
    dispatch[pickle.REDUCE[0]] = load_reduce


def _note(unpickler: _Recorder, value: Any) -> None:
    if isinstance(value, PickledObject) and len(unpickler.called) < 64:
        unpickler.called.add(value.qualname[:200])


def load(path: Path, settings: Any) -> ModelGraph:
    reading = StaticRead(path)
    if getattr(settings, "trust_model_code", False):
        return _trusted(path, settings)
    module, key = find_module(reading.value, CHECKPOINT_KEYS)
    if module is not None:
        if reading.archive is None:
            raise LoadError(path, LEGACY_MODULE)
        return pickled_module_graph(path, reading.archive, module, key)
    state, key = find_state_dict(reading.value)
    if state is not None:
        if getattr(settings, "arch", None) or reading.archive is None:
            return _with_torch(path, settings)  # --arch, or a legacy file: torch (weights only)
        return state_dict_graph(path, state, key, reading.archive)
    if reading.calls:
        raise LoadError(path, REFUSAL.format(what=f" ({', '.join(reading.calls[:3])})"))
    detail = ""
    if isinstance(reading.value, dict):
        keys = [k if isinstance(k, (str, int)) else describe(k) for k in list(reading.value)[:8]]
        detail = f" (top-level keys: {keys})"
    raise LoadError(path, f"holds {describe(reading.value)} with no state dict of tensors{detail}")


def find_state_dict(loaded: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The tensors of a state dict, or of the state dict inside a training checkpoint."""

    def tensors(value: Any) -> dict[str, Any] | None:
        if not isinstance(value, Mapping) or not value:
            return None
        found = {str(k): v for k, v in value.items() if _is_tensor(v)}
        return found if found and len(found) * 2 >= len(value) else None

    direct = tensors(loaded)
    if direct is not None:
        return direct, None
    if isinstance(loaded, Mapping):
        for key in CHECKPOINT_KEYS:
            nested = tensors(loaded.get(key))
            if nested is not None:
                return nested, key
    return None, None


def _is_tensor(value: Any) -> bool:
    if isinstance(value, TensorRecord):
        return True
    kind = type(value)
    return kind.__module__ == "torch" and kind.__name__ in ("Tensor", "Parameter")


def _check(path: Path, refs: list[StorageRef], available: int) -> None:
    declared = sum((ref.numel or 0) * _ITEMSIZE.get(ref.dtype or "", 1) for ref in refs)
    if declared > available:
        keys = ", ".join(repr(ref.key) for ref in refs[:3]) + (" …" if len(refs) > 3 else "")
        raise LoadError(
            path,
            f"storage {keys} declares {declared} bytes but the file holds {available}: "
            "refusing to allocate it",
        )


_ITEMSIZE = {
    "bool": 1,
    "uint8": 1,
    "int8": 1,
    "int16": 2,
    "float16": 2,
    "bfloat16": 2,
    "int32": 4,
    "float32": 4,
    "int64": 8,
    "float64": 8,
}


class _Tensors:
    """Registers tensors read as raw bytes from a ``torch.save`` archive's ``data/``."""

    def __init__(self, graph: ModelGraph, archive: ZipArchive) -> None:
        self.graph = graph
        self.archive = archive
        self.big_endian = (
            archive.has("byteorder") and archive.read("byteorder", limit=16).strip() == b"big"
        )

    def __call__(self, name: str, tensor: TensorRecord) -> None:
        if name in self.graph.params:
            return
        dtype = tensor.storage.dtype
        if dtype is None:
            self.graph.facts.partial.append(f"tensor {name!r} has an unsupported storage type")
            return
        key = tensor.storage.key
        if not key or not all(c.isalnum() or c in "_-" for c in key):
            raise LoadError(self.archive.path, f"tensor {name!r} points to {key!r}")
        loader = self.archive.tensor_loader(
            f"data/{key}", dtype, tensor.size, tensor.stride, tensor.offset, self.big_endian, name
        )
        self.graph.params.add(name, loader, shape=tensor.size, dtype=dtype)
        record = self.graph.tensor(name)
        record.shape, record.dtype, record.is_param = tensor.size, dtype, True


def state_dict_graph(
    path: Path, state: Mapping[str, Any], key: str | None, archive: ZipArchive
) -> ModelGraph:
    """BN layers and inferred producer->BN edges (no phase) over the state dict's tensors."""
    facts = GraphFacts(
        format="state_dict", default_phase=None, has_edges=False, has_modules=False, mode=None
    )
    if key is not None:
        facts.producer = f"checkpoint[{key!r}]"
    graph = ModelGraph(path, facts)
    register = _Tensors(graph, archive)
    for name, tensor in state.items():
        register(name, tensor)
    shapes = {name: graph.params.shape(name) for name in state if name in graph.params}
    facts.has_producer_edges = True
    add_inferred_graph(graph, records_from_tensor_names(shapes), None, sequential_by_class=False)
    return graph.finalize()


def pickled_module_graph(
    path: Path, archive: ZipArchive, module: Any, key: str | None
) -> ModelGraph:
    """A whole pickled ``nn.Module``: its module tree, modes and hyper-parameters, and the
    edges ``nn.Sequential`` order and names and shapes imply."""
    facts = GraphFacts(format="pickled_module", has_modules=True, has_producer_edges=True)
    if key is not None:
        facts.producer = f"checkpoint[{key!r}]"
    graph = ModelGraph(path, facts)
    records, requires_grad = module_records(module, _Tensors(graph, archive))
    root = records[""]
    facts.mode = facts.default_phase = "training" if root.training else "inference"
    for record in records.values():
        counter = record.tensors.get("num_batches_tracked")
        if counter:
            try:
                array = graph.param(counter)
                if array is not None and array.size == 1:
                    record.constants["num_batches_tracked"] = int(array.reshape(-1)[0])
            except Exception:  # an unreadable counter is simply unknown
                pass
    add_inferred_graph(graph, records, requires_grad, sequential_by_class=True)
    return graph.finalize()


# -- torch itself: --trust-model-code, --arch, legacy files -----------------------------------
def _torch_load(path: Path, weights_only: bool) -> Any:
    from bnlint.loaders.files import require_torch

    torch = require_torch(path)

    try:
        # torch warns about odd pickle protocols and the like: a crafted file must not be
        # able to print to the terminal; what matters becomes the one error line below.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError:
        raise LoadError(path, REFUSAL.format(what="")) from None
    except Exception as error:
        raise LoadError(path, f"cannot load with torch.load: {_describe(error)}") from None


def _trusted(path: Path, settings: Any) -> ModelGraph:
    import torch

    loaded = _torch_load(path, weights_only=False)
    if isinstance(loaded, torch.nn.Module):
        from bnlint.loaders.torch_live import graph_from_module

        return graph_from_module(loaded, None, settings, path=str(path))
    return _from_torch_state(path, loaded, settings)


def _with_torch(path: Path, settings: Any) -> ModelGraph:
    return _from_torch_state(path, _torch_load(path, weights_only=True), settings)


def _from_torch_state(path: Path, loaded: Any, settings: Any) -> ModelGraph:
    state, key = find_state_dict(loaded)
    if state is None:
        raise LoadError(path, f"holds {describe(loaded)} with no state dict of tensors")
    arch = getattr(settings, "arch", None)
    if arch:
        return _with_arch(path, state, arch, settings)
    facts = GraphFacts(
        format="state_dict", default_phase=None, has_edges=False, has_modules=False, mode=None
    )
    facts.has_producer_edges = True
    if key is not None:
        facts.producer = f"checkpoint[{key!r}]"
    graph = ModelGraph(path, facts)
    from bnlint.loaders.torch_live import register_tensors

    register_tensors(graph, state.items())
    shapes = {name: graph.params.shape(name) for name in state}
    add_inferred_graph(graph, records_from_tensor_names(shapes), None, sequential_by_class=False)
    return graph.finalize()


def _with_arch(path: Path, state: dict[str, Any], arch: str, settings: Any) -> ModelGraph:
    from bnlint.loaders.files import is_entry_point
    from bnlint.loaders.torch_entry import build_from_entry_point
    from bnlint.loaders.torch_live import graph_from_module

    if not is_entry_point(arch):
        raise LoadError(path, f"--arch {arch!r} is not module:factory or file.py:factory")
    model, inputs = build_from_entry_point(arch, settings)
    expected = set(model.state_dict())
    state = _match_prefix(state, expected)
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise LoadError(
            path,
            f"checkpoint does not match --arch {arch}: missing {missing[:3]}"
            f"{' …' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}"
            f"{' …' if len(unexpected) > 3 else ''}",
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise LoadError(
            path, f"checkpoint does not fit --arch {arch}: {_describe(error)}"
        ) from None
    graph = graph_from_module(model, inputs, settings, path=str(path), fmt="state_dict")
    graph.facts.producer = f"checkpoint with --arch {arch}"
    return graph


def _match_prefix(state: dict[str, Any], expected: set[str]) -> dict[str, Any]:
    """Strip a wrapper prefix (DataParallel ``module.``, Lightning ``model.``) if that fits."""
    if set(state) & expected:
        return state
    for prefix in _PREFIXES:
        if all(name.startswith(prefix) for name in state):
            stripped = {name[len(prefix) :]: value for name, value in state.items()}
            if set(stripped) & expected:
                return stripped
    return state


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
