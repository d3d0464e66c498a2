"""Whole pickled modules (``torch.save(model)``) read statically: class names stay strings.

The restricted unpickler (:mod:`bnlint.loaders.safe_pickle`) turns every module into an
:class:`~bnlint.loaders.torch_pickle.ObjectRecord`: its class's qualified name (never
imported) and its ``__dict__`` - ``training``, ``_parameters``, ``_buffers``, ``_modules``
and the hyper-parameters (``eps``, ``momentum``, ``affine``, ``track_running_stats``,
``stride`` …). That is everything the parameter and mode rules need; the edge rules get
what ``nn.Sequential`` order and names and shapes imply (:mod:`bnlint.loaders.torch_infer`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bnlint.loaders.torch_modules import CONSTANT_ATTRS, ModuleRecord
from bnlint.loaders.torch_pickle import ObjectRecord, TensorRecord

MAX_DEPTH = 100
_PLAIN_ITEMS = 64


def is_module(value: Any) -> bool:
    """An ``nn.Module`` as pickled: an object with ``_modules`` and a ``training`` flag."""
    return (
        isinstance(value, ObjectRecord)
        and isinstance(value.state.get("_modules"), dict)
        and isinstance(value.state.get("training"), bool)
    )


def _plain(value: Any) -> Any:
    """A hyper-parameter's value when it is a scalar or a short list of scalars (bounded:
    a pickled value is never walked without a limit)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    short = isinstance(value, (list, tuple)) and len(value) <= _PLAIN_ITEMS
    if short and all(item is None or isinstance(item, (bool, int, float, str)) for item in value):
        return list(value)
    return _NOT_PLAIN


_NOT_PLAIN = object()


def module_records(
    root: ObjectRecord,
    register: Callable[[str, TensorRecord], None],
    prefix: str = "",
) -> tuple[dict[str, ModuleRecord], dict[str, bool]]:
    """Records of every module under ``root`` in ``_modules`` order, and ``requires_grad``
    of each parameter; ``register(fqn, tensor)`` makes each tensor a graph parameter."""
    records: dict[str, ModuleRecord] = {}
    requires_grad: dict[str, bool] = {}
    seen: set[int] = set()
    pending: list[tuple[ObjectRecord, str, int]] = [(root, prefix, 0)]
    while pending:
        obj, path, depth = pending.pop()
        if id(obj) in seen:
            continue  # a shared submodule: one record, at its first path
        if depth > MAX_DEPTH:
            raise ValueError(f"module tree deeper than {MAX_DEPTH} levels")
        seen.add(id(obj))
        record = ModuleRecord(path=path, qualname=obj.qualname, training=obj.state["training"])
        for name in CONSTANT_ATTRS:
            value = _plain(obj.state.get(name, _NOT_PLAIN))
            if value is not _NOT_PLAIN:
                record.constants[name] = value
        dot = f"{path}." if path else ""
        for kind in ("_parameters", "_buffers"):
            tensors = obj.state.get(kind)
            for name, tensor in tensors.items() if isinstance(tensors, dict) else ():
                if not isinstance(name, str):
                    continue
                if isinstance(tensor, TensorRecord):
                    record.tensors[name] = f"{dot}{name}"
                    register(f"{dot}{name}", tensor)
                    if kind == "_parameters":
                        requires_grad[f"{dot}{name}"] = tensor.requires_grad
                elif tensor is None:
                    record.tensors[name] = None
        children = [
            (f"{dot}{name}", child)
            for name, child in obj.state["_modules"].items()
            if isinstance(name, str) and is_module(child)
        ]
        record.has_children = bool(children)
        records[path] = record
        pending.extend((child, child_path, depth + 1) for child_path, child in reversed(children))
    return records, requires_grad


def find_module(value: Any, keys: tuple[str, ...]) -> tuple[ObjectRecord | None, str | None]:
    """The pickled module itself, or the one a checkpoint keeps under one of ``keys``."""
    if is_module(value):
        return value, None
    if isinstance(value, dict):
        for key in keys:
            if is_module(value.get(key)):
                return value[key], key
    return None, None
