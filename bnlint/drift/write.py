"""Write a re-estimated model: only the running statistics change.

ONNX. When every statistic tensor to change is an initializer stored as raw bytes in the
model file itself and read by its BatchNorm alone (what exporters write), the output is
the input file's bytes with exactly those bytes replaced: everything else is
byte-identical, whatever the file holds. Otherwise (a statistic shared with another node,
produced by a Constant node or kept in external data, or a model whose functions were
inlined when loading) the statistics become new initializers wired to their BatchNorm and
the model is re-serialized (external data written beside the output, as ``bnlint fold``
does); every other node and tensor keeps its value. Writes are atomic and never replace an
input (the model, its external data, the sample file, the configuration).

PyTorch. A ``.pt2`` output from a ``.pt2`` input is the same ExportedProgram with its
running-statistic buffers replaced; from a ``module:factory`` model it is a fresh
``torch.export`` of the re-estimated module (batch dimension dynamic). Any other suffix
gets the module's state dict (``torch.save``), loadable with ``weights_only=True``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bnlint.drift.recalibrate import Recalibration, RecalibrationError
from bnlint.graph import ModelGraph

ROLES = (("mean", 3), ("var", 4))


def check_target(target: Path, inputs: Sequence[str | Path]) -> None:
    """Refuse an output that is one of the inputs (through links), as every writer does."""
    from bnlint.report.write import UnsafeOutput, refuse_input_target

    try:
        refuse_input_target(target, [str(p) for p in inputs])
    except UnsafeOutput as error:
        raise RecalibrationError(f"{target}: {error}") from None


def _write_bytes(target: Path, payload: bytes) -> None:
    from bnlint.report.write import REPLACE, OutputTarget, UnsafeOutput, write_output

    if not target.absolute().parent.is_dir():
        raise RecalibrationError(f"{target.absolute().parent}: output folder does not exist")
    try:
        write_output(OutputTarget(target, REPLACE), payload)
    except (OSError, UnsafeOutput) as error:
        raise RecalibrationError(
            f"{target}: cannot write: {getattr(error, 'strerror', None) or error}"
        ) from None


# -- ONNX ------------------------------------------------------------------------------------
def write_onnx(
    graph: ModelGraph, result: Recalibration, target: Path, inputs: Sequence
) -> list[Path]:
    check_target(target, inputs)
    changes = _changes(graph, result)
    payload = _patched_file(graph, changes)
    if payload is not None:
        _write_bytes(target, payload)
        return [target]
    return _write_model(graph, changes, target, inputs)


def _changes(graph: ModelGraph, result: Recalibration) -> list[tuple[Any, int, str, np.ndarray]]:
    """(site, input index, tensor name, new values in the tensor's dtype) per statistic."""
    from bnlint.onnx.model_io import round_to

    changes = []
    for site in result.sites:
        mean, var = result.new[site.id]
        for (role, index), values in zip(ROLES, (mean, var), strict=True):
            name = site.node.input(role)
            dtype = graph.dtype(name) or "float32"
            stored = np.asarray(round_to(values, dtype))
            if not np.isfinite(stored).all():
                worst = float(np.max(np.abs(values)))
                raise RecalibrationError(
                    f"the re-estimated running {role} of BatchNorm {site.name!r} reaches "
                    f"{worst:.3g}, which {dtype} cannot hold: the samples overflow this "
                    "model's precision (check the preprocessing)"
                )
            changes.append((site, index, name, stored, dtype))
    return changes


def _read_only_by(model: Any, name: str, node_index: int) -> bool:
    from bnlint.onnx.model_io import names_read

    readers = [i for i, node in enumerate(model.graph.node) if name in names_read([node])]
    return readers == [node_index] and name not in {o.name for o in model.graph.output}


def _patched_file(graph: ModelGraph, changes: list) -> bytes | None:
    """The model file's bytes with the statistics replaced in place, or None."""
    from bnlint.params import MappedTensor

    buffer = graph.source.file_buffer
    model = graph.source.onnx_model
    if buffer is None or model is None or len(model.functions):
        return None
    patched = bytearray(buffer)
    for site, _index, name, values, dtype in changes:
        source = graph.params.source(name)
        if not isinstance(source, MappedTensor) or dtype == "bfloat16":
            return None
        raw = np.ascontiguousarray(values.astype(np.dtype(dtype).newbyteorder("<"))).tobytes()
        if len(raw) != source.length:
            return None
        if not _read_only_by(model, name, site.node.location.node_index):
            return None
        patched[source.offset : source.offset + source.length] = raw
    return bytes(patched)


def _write_model(graph: ModelGraph, changes: list, target: Path, inputs: Sequence) -> list[Path]:
    from onnx import ModelProto

    from bnlint.onnx.model_io import (
        FoldIOError,
        external_files,
        materialize,
        save_atomic,
        to_tensor,
        uses_external_data,
    )

    original = graph.source.onnx_model
    external = uses_external_data(original)
    try:
        model = materialize(original, graph) if external else ModelProto()
    except FoldIOError as error:
        raise RecalibrationError(str(error)) from None
    if not external:
        model.CopyFrom(original)
    by_name = {tensor.name: i for i, tensor in enumerate(model.graph.initializer)}
    taken = set(by_name) | {n for node in model.graph.node for n in node.output}
    for site, index, name, values, dtype in changes:
        onnx_node = model.graph.node[site.node.location.node_index]
        if name in by_name and _read_only_by(model, name, site.node.location.node_index):
            model.graph.initializer[by_name[name]].CopyFrom(to_tensor(values, dtype, name))
            continue
        fresh = _unique(f"{name}_recalibrated", taken)
        model.graph.initializer.append(to_tensor(values, dtype, fresh))
        onnx_node.input[index] = fresh
    source = Path(graph.path)
    if external:
        data_file = (target.absolute().parent / (target.name + ".data")).resolve()
        if data_file in external_files(original, source):
            raise RecalibrationError(
                f"{data_file}: refusing to overwrite the input model's external data"
            )
        check_target(data_file, inputs)
    try:
        return save_atomic(model, target, external=external)
    except FoldIOError as error:
        raise RecalibrationError(str(error)) from None


def _unique(base: str, taken: set[str]) -> str:
    name, count = base, 1
    while name in taken:
        count += 1
        name = f"{base}_{count}"
    taken.add(name)
    return name


# -- PyTorch ---------------------------------------------------------------------------------
def write_torch(
    graph: ModelGraph, result: Recalibration, target: Path, inputs: Sequence, example: Any
) -> list[Path]:
    import torch

    check_target(target, inputs)
    module = result.collector.module  # the private copy, holding the new statistics
    for site in result.sites:
        for role, values in zip(("mean", "var"), result.new[site.id], strict=True):
            stored = result.collector.buffer(site, role).detach().double().numpy()
            if not np.isfinite(stored).all():
                dtype = str(result.collector.buffer(site, role).dtype).replace("torch.", "")
                raise RecalibrationError(
                    f"the re-estimated running {role} of BatchNorm {site.name!r} reaches "
                    f"{float(np.max(np.abs(values))):.3g}, which {dtype} cannot hold: the "
                    "samples overflow this model's precision (check the preprocessing)"
                )
    stream = io.BytesIO()
    try:
        if target.suffix == ".pt2":
            program = _program(graph, result, module, example)
            torch.export.save(program, stream)
        else:
            torch.save(module.state_dict(), stream)
    except RecalibrationError:
        raise
    except Exception as error:
        text = " ".join(str(error).split())[:300]
        raise RecalibrationError(
            f"{target}: cannot export the model: {type(error).__name__}: {text}"
        ) from None
    _write_bytes(target, stream.getvalue())
    return [target]


def _program(graph: ModelGraph, result: Recalibration, module: Any, example: Any) -> Any:
    import torch

    if graph.facts.format == "pt2":
        program = torch.export.load(graph.path)  # trusted: the loader already did this
        for site in result.sites:
            for role, values in zip(("mean", "var"), result.new[site.id], strict=True):
                name = site.node.input(role)
                if name not in program.state_dict:
                    raise RecalibrationError(f"the exported program has no buffer {name!r}")
                current = program.state_dict[name]
                program.state_dict[name] = torch.as_tensor(values, dtype=current.dtype)
        return program
    batch = torch.export.Dim("batch", min=1)
    shapes = tuple({0: batch} for _ in example)
    return torch.export.export(module.eval(), tuple(example), dynamic_shapes=shapes)
