"""safetensors files, read with the ``safetensors`` package's NumPy API: no torch, no pickle.

Like a bare state dict, the file holds only named tensors: layers are recognised by their
parameters, producer->BN edges inferred from names and shapes
(:mod:`bnlint.loaders.torch_infer`), and there is no phase. Tensors are read on demand.
NumPy has no bfloat16, so BF16 tensors are widened to float32 from their raw bytes
(offsets from the file's header).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from bnlint.graph import GraphFacts, ModelGraph, UnreadableParameter
from bnlint.loaders.files import LoadError
from bnlint.loaders.torch_infer import add_inferred_graph
from bnlint.loaders.torch_modules import records_from_tensor_names

_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}
_HEADER_LIMIT = 100_000_000


def load(path: Path, settings: Any) -> ModelGraph:
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError:
        raise LoadError(
            path, "reading safetensors needs the safetensors package: pip install 'bnlint[torch]'"
        ) from None
    try:
        with safe_open(str(path), framework="numpy") as handle:
            names = list(handle.keys())
            metadata = handle.metadata() or {}
            layout = {
                name: (
                    tuple(handle.get_slice(name).get_shape()),
                    handle.get_slice(name).get_dtype(),
                )
                for name in names
            }
    except (SafetensorError, OSError, ValueError, TypeError, OverflowError) as error:
        raise LoadError(path, f"not a valid safetensors file: {error}") from None
    facts = GraphFacts(
        format="safetensors", default_phase=None, has_edges=False, has_modules=False, mode=None
    )
    if metadata.get("format"):
        facts.producer = f"safetensors (format={metadata['format']})"
    graph = ModelGraph(path, facts)
    for name, (shape, code) in layout.items():
        dtype = _DTYPES.get(code)
        if dtype is None:
            facts.partial.append(f"tensor {name!r} has unsupported dtype {code}")
            continue
        graph.params.add(name, _loader(path, name, code), shape=shape, dtype=dtype)
        record = graph.tensor(name)
        record.shape, record.dtype, record.is_param = shape, dtype, True
    shapes = {name: graph.params.shape(name) for name in names if name in graph.params}
    facts.has_producer_edges = True
    add_inferred_graph(graph, records_from_tensor_names(shapes), None, sequential_by_class=False)
    return graph.finalize()


def _loader(path: Path, name: str, code: str):
    def load_tensor() -> np.ndarray:
        try:
            if code == "BF16":
                return _bfloat16(path, name)
            from safetensors import safe_open

            with safe_open(str(path), framework="numpy") as handle:
                return handle.get_tensor(name)
        except Exception as error:  # the file changed or lies about a tensor: BN901, not BN902
            raise UnreadableParameter(name, f"cannot be read: {error}") from None

    return load_tensor


def _bfloat16(path: Path, name: str) -> np.ndarray:
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > _HEADER_LIMIT:
            raise ValueError("safetensors header too large")
        header = json.loads(handle.read(length))
        entry = header[name]
        start, end = entry["data_offsets"]
        handle.seek(8 + length + int(start))
        raw = handle.read(int(end) - int(start))
    shape = tuple(int(d) for d in entry["shape"])
    bits = np.frombuffer(raw, dtype="<u2")
    if bits.size != int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"tensor {name!r}: {bits.size} values for shape {shape}")
    return (bits.astype(np.uint32) << 16).view(np.float32).reshape(shape)
