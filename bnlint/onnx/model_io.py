"""ONNX model plumbing for fold and verify: tensors in and out, full data, atomic writes.

The loader keeps external data on disk and reads it through a validated resolver; fold and
verify need whole models in memory, so :func:`materialize` inlines every external tensor
through that same resolver (``ModelGraph.params``), never through onnx's own unchecked
reader. :func:`save_atomic` writes a model (and its external data file) next to the target
under temporary names and renames them into place, so a crash never leaves half a model.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import Error as ProtobufError
from onnx import AttributeProto, ModelProto, NodeProto, TensorProto, numpy_helper

from bnlint.graph import ModelGraph

# Models whose serialized size nears protobuf's 2 GiB limit must keep weights external.
PROTOBUF_LIMIT = 2**31 - 2**26
EXTERNAL_THRESHOLD = 1024  # bytes: tensors at least this large go to the data file


class FoldIOError(Exception):
    """A model cannot be written or prepared; the message is one line for the user."""


def to_tensor(
    values: np.ndarray, dtype_name: str, name: str, into: TensorProto | None = None
) -> TensorProto:
    """A TensorProto named ``name`` holding ``values`` cast (round to nearest) to ``dtype_name``.

    ``into``: an existing tensor to overwrite (cleared first) instead of a new one, so a
    large weight's bytes are not copied once more by ``CopyFrom``.
    """
    tensor = TensorProto() if into is None else into
    tensor.Clear()
    if dtype_name == "bfloat16":
        bits = _float32_to_bfloat16_bits(np.asarray(values, dtype=np.float32))
        tensor.name, tensor.data_type = name, TensorProto.BFLOAT16
        tensor.dims.extend(bits.shape)
        tensor.raw_data = bits.astype("<u2").tobytes()
        return tensor
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is verification's to report
        cast = np.asarray(values).astype(np.dtype(dtype_name), copy=False)
    data_type = _RAW_TYPES.get(cast.dtype.name)
    if data_type is None:
        tensor.CopyFrom(numpy_helper.from_array(cast, name))
        return tensor
    # What numpy_helper.from_array writes for these dtypes, without its per-call overhead.
    tensor.name, tensor.data_type = name, data_type
    tensor.dims.extend(cast.shape)
    tensor.raw_data = cast.astype(cast.dtype.newbyteorder("<"), copy=False).tobytes()
    return tensor


_RAW_TYPES = {
    "float32": TensorProto.FLOAT,
    "float16": TensorProto.FLOAT16,
    "float64": TensorProto.DOUBLE,
    "int64": TensorProto.INT64,
    "int32": TensorProto.INT32,
    "int8": TensorProto.INT8,
    "uint8": TensorProto.UINT8,
}


def _float32_to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    bits = values.view(np.uint32).astype(np.uint64)
    rounding = ((bits >> 16) & 1) + 0x7FFF  # round half to even
    rounded = ((bits + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(values)
    rounded[nan] = 0x7FC0
    return rounded


def round_to(values: np.ndarray, dtype_name: str) -> np.ndarray:
    """``values`` as float64 after a round trip through ``dtype_name`` (what a write keeps)."""
    if dtype_name == "bfloat16":
        bits = _float32_to_bfloat16_bits(np.asarray(values, dtype=np.float32))
        return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(values).astype(np.dtype(dtype_name)).astype(np.float64)


def materialize(model: ModelProto, graph: ModelGraph) -> ModelProto:
    """A copy of ``model`` whose external tensors are inlined, read through ``graph.params``."""
    copy = ModelProto()
    copy.CopyFrom(model)
    for index, tensor in enumerate(copy.graph.initializer):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        dtype = graph.dtype(tensor.name)
        try:
            values = graph.params.get(tensor.name)
        except Exception as error:
            raise FoldIOError(f"cannot read external tensor {tensor.name!r}: {error}") from None
        copy.graph.initializer[index].CopyFrom(to_tensor(values, dtype or "float32", tensor.name))
    if has_external_in_subgraphs(copy.graph):
        raise FoldIOError("external data inside If/Loop/Scan bodies is not supported")
    return copy


def has_external_in_subgraphs(graph: onnx.GraphProto) -> bool:
    """Whether any If/Loop/Scan body (at any depth) keeps an initializer in external data."""
    for node in graph.node:
        for attribute in node.attribute:
            bodies = [attribute.g] if attribute.HasField("g") else list(attribute.graphs)
            for body in bodies:
                if any(t.data_location == TensorProto.EXTERNAL for t in body.initializer):
                    return True
                if has_external_in_subgraphs(body):
                    return True
    return False


def names_read(nodes: Iterable[NodeProto | None]) -> set[str]:
    """Every tensor name read by ``nodes`` and by all bodies nested in them."""
    read: set[str] = set()
    for node in nodes:
        if node is None:
            continue
        read.update(node.input)
        if len(node.attribute):
            for attribute in node.attribute:
                if attribute.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
                    bodies = [attribute.g] if attribute.HasField("g") else attribute.graphs
                    for body in bodies:
                        read |= names_read(body.node)
    read.discard("")
    return read


def uses_external_data(model: ModelProto) -> bool:
    return any(t.data_location == TensorProto.EXTERNAL for t in model.graph.initializer)


def external_files(model: ModelProto, model_path: Path) -> set[Path]:
    """The resolved data files an on-disk model refers to."""
    files = set()
    for tensor in model.graph.initializer:
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), None)
        if location:
            files.add((model_path.absolute().parent / location).resolve())
    return files


def serialized_size(model: ModelProto) -> int:
    return model.ByteSize()


def save_atomic(
    model: ModelProto,
    path: Path,
    *,
    external: bool,
    check: Callable[[Path], str | None] | None = None,
) -> list[Path]:
    """Write ``model`` to ``path`` (and ``path.data`` when ``external``, which the caller
    decides, e.g. by :func:`serialized_size`); returns files written.

    Both files are first written under temporary names in the target folder, then renamed,
    data first, so the model file never refers to a missing or partial data file. ``check``
    inspects the written file before it is moved into place; a problem it returns aborts
    the write (:class:`FoldIOError`) and nothing reaches ``path``.
    """
    path = Path(path)
    folder = path.absolute().parent
    if not folder.is_dir():
        raise FoldIOError(f"{folder}: output folder does not exist")
    data_name = path.name + ".data"
    with tempfile.TemporaryDirectory(dir=folder, prefix=".bnlint-") as scratch:
        staged = Path(scratch) / path.name
        try:
            if external:
                copy = ModelProto()
                copy.CopyFrom(model)  # save_model rewrites tensors it externalises in place
                onnx.save_model(
                    copy,
                    str(staged),
                    save_as_external_data=True,
                    all_tensors_to_one_file=True,
                    location=data_name,
                    size_threshold=EXTERNAL_THRESHOLD,
                    convert_attribute=False,
                )
            else:
                onnx.save_model(model, str(staged))
        except (OSError, ValueError, ProtobufError) as error:  # incl. a model over 2 GiB
            raise FoldIOError(f"{path}: cannot write: {error}") from None
        problem = check(staged) if check is not None else None
        if problem is not None:
            raise FoldIOError(problem)
        written = []
        staged_data = Path(scratch) / data_name
        if external and staged_data.exists():
            # onnx writes external data 0600; the data file gets the model file's mode
            os.chmod(staged_data, os.stat(staged).st_mode & 0o777)
            os.replace(staged_data, folder / data_name)
            written.append(folder / data_name)
        os.replace(staged, path)
        written.insert(0, path)
    return written
