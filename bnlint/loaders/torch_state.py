"""``torch.save`` files: state dicts, training checkpoints and pickled modules.

Always ``torch.load(..., weights_only=True)``, passed explicitly; a file that needs more
(a whole pickled ``nn.Module``, custom classes) is refused with an explanation and is
never retried without it. Only ``--trust-model-code`` loads with ``weights_only=False``,
as the user's explicit choice. BN layers of a bare state dict are recognised by their
buffers; ``--arch module:factory`` puts the weights into their architecture instead.
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bnlint.graph import GraphFacts, ModelGraph
from bnlint.loaders import ZIP_MAGIC, LoadError
from bnlint.loaders.safe_pickle import RestrictedUnpickler, StorageRef
from bnlint.loaders.torch_archive import ZipArchive
from bnlint.loaders.torch_modules import add_module_nodes, records_from_tensor_names
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
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
REFUSAL = (
    "holds pickled Python objects{what}, not a plain state dict; unpickling them would run "
    "code from the file, so bnlint does not load it. Save the weights with "
    "torch.save(model.state_dict(), path) or export the model with torch.export.save, "
    "or pass --trust-model-code if you trust this file"
)


def load(path: Path, settings: Any) -> ModelGraph:
    import torch

    check_storage_sizes(path)
    trusted = bool(getattr(settings, "trust_model_code", False))
    try:
        # torch warns about odd pickle protocols and the like: a crafted file must not be
        # able to print to the terminal; what matters becomes the one error line below.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if trusted:
                loaded = torch.load(path, map_location="cpu", weights_only=False)
            else:
                loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        names = sorted(set(_GLOBAL.findall(str(error))))
        what = f" ({', '.join(names[:3])})" if names else ""
        raise LoadError(path, REFUSAL.format(what=what)) from None
    except Exception as error:
        message = " ".join(str(error).split())[:300]
        raise LoadError(
            path, f"cannot load with torch.load: {type(error).__name__}: {message}"
        ) from None
    if isinstance(loaded, torch.nn.Module):
        from bnlint.loaders.torch_live import graph_from_module

        return graph_from_module(loaded, None, settings, path=str(path))
    state, key = find_state_dict(loaded)
    if state is None:
        kind = type(loaded).__name__
        keys = list(loaded)[:8] if isinstance(loaded, Mapping) else []
        detail = f" (top-level keys: {keys})" if keys else ""
        raise LoadError(path, f"holds a {kind} with no state dict of tensors{detail}")
    arch = getattr(settings, "arch", None)
    if arch:
        return _with_arch(path, state, arch, settings)
    return state_dict_graph(path, state, key)


def check_storage_sizes(path: Path) -> None:
    """Refuse storages whose declared size the file cannot hold, before torch allocates them.

    ``torch.load`` allocates each storage at the size the pickle declares and only then
    reads its bytes. The pickle is first read here with the inert unpickler (nothing is
    imported or called) to compare each declaration with the bytes really present. When
    the pickle is not one torch wrote, torch.load itself refuses it.
    """
    with path.open("rb") as handle:
        zipped = handle.read(4) == ZIP_MAGIC
    if zipped:
        archive = ZipArchive(path)  # refuses a zip bomb from its central directory
        refs = _storages(lambda: [archive.read("data.pkl", limit=MAX_PICKLE_BYTES)])
        for ref in refs:
            member = f"data/{ref.key}"
            _check(path, [ref], archive.size(member) if archive.has(member) else 0)
    else:
        with path.open("rb") as handle:
            refs = _storages(lambda: _legacy_pickles(handle))
        _check(path, refs, path.stat().st_size)


def _storages(read: Any) -> list[StorageRef]:
    """Storages referenced by the last pickle ``read()`` yields; none if it is not torch's."""
    try:
        *_, data = read()
        unpickler = RestrictedUnpickler(data)
        unpickler.load()
    except LoadError:
        raise
    except Exception:
        return []
    unique: dict[str, StorageRef] = {}  # views of one storage reference it several times
    for ref in unpickler.storages:
        if ref.key not in unique or (ref.numel or 0) > (unique[ref.key].numel or 0):
            unique[ref.key] = ref
    return list(unique.values())


def _legacy_pickles(handle: Any) -> list[Any]:
    """A pre-1.6 ``torch.save`` file: magic, version and sys info, then the object."""
    headers = [RestrictedUnpickler(handle).load() for _ in range(3)]
    if headers[0] != LEGACY_MAGIC:
        raise ValueError("not a legacy torch.save file")
    return [handle]


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


def find_state_dict(loaded: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The tensors of a state dict, or of the state dict inside a training checkpoint."""
    import torch

    def tensors(value: Any) -> dict[str, Any] | None:
        if not isinstance(value, Mapping) or not value:
            return None
        found = {str(k): v for k, v in value.items() if isinstance(v, torch.Tensor)}
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


def _to_numpy(tensor: Any):
    import torch

    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.numpy().copy()


def state_dict_graph(path: Path, state: Mapping[str, Any], key: str | None) -> ModelGraph:
    """BN nodes (no edges, no phase) from buffer names; every tensor is a parameter."""
    facts = GraphFacts(
        format="state_dict", default_phase=None, has_edges=False, has_modules=False, mode=None
    )
    if key is not None:
        facts.producer = f"checkpoint[{key!r}]"
    graph = ModelGraph(path, facts)
    for name, tensor in state.items():
        shape = tuple(int(d) for d in tensor.shape)
        dtype = str(tensor.dtype).replace("torch.", "")
        graph.params.add(name, lambda t=tensor: _to_numpy(t), shape=shape, dtype=dtype)
        record = graph.tensor(name)
        record.shape, record.dtype, record.is_param = shape, dtype, True
    add_module_nodes(graph, records_from_tensor_names(state))
    return graph.finalize()


def _with_arch(path: Path, state: dict[str, Any], arch: str, settings: Any) -> ModelGraph:
    from bnlint.loaders import is_entry_point
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
        detail = " ".join(str(error).split())[:300]
        raise LoadError(path, f"checkpoint does not fit --arch {arch}: {detail}") from None
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
