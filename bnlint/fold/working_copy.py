"""The copy of a model the ONNX rewrite edits, without copying weights it will replace.

:func:`bnlint.onnx.model_io.materialize` copies the whole model (external data inlined through
the validated resolver). Most of a CNN's bytes are the producer weights a fold rewrites
(ResNet-50: 98 of its 102 MB), so copying them first only to overwrite them doubles the
memory traffic of the rewrite. :func:`working_copy` copies everything except the data of
the top-level initializers named in ``deferred``; those start as *stubs* (name, dims,
type, no data). :meth:`WorkingCopy.fill` gives every stub the rewrite did not overwrite
its original data back, so the finished copy never differs from ``materialize``'s by a
tensor the fold did not write.
"""

from __future__ import annotations

from collections.abc import Collection

from google.protobuf.message import Message
from onnx import ModelProto, TensorProto

from bnlint.graph import ModelGraph
from bnlint.onnx.model_io import FoldIOError, has_external_in_subgraphs, to_tensor


def _repeated(field) -> bool:
    flag = getattr(field, "is_repeated", None)  # protobuf >= 5; ``label`` before
    return bool(flag) if flag is not None else field.label == field.LABEL_REPEATED


def copy_fields(source: Message, target: Message, skip: Collection[str] = ()) -> None:
    """Copy every set field of ``source`` into ``target`` except those named in ``skip``
    (read field by field: a skipped bytes field is never touched, so never copied)."""
    for field in source.DESCRIPTOR.fields:
        if field.name in skip:
            continue
        if _repeated(field):
            values = getattr(source, field.name)
            if len(values):
                getattr(target, field.name).extend(values)
        elif source.HasField(field.name):
            if field.message_type is not None:
                getattr(target, field.name).CopyFrom(getattr(source, field.name))
            else:
                setattr(target, field.name, getattr(source, field.name))


class WorkingCopy:
    """The copy (``model``) and its stubs, by position: the copy's first initializers are
    the original's, in order, until the rewrite is finished (it only appends)."""

    def __init__(self, model: ModelProto, copy: ModelProto, stubs: set[int]) -> None:
        self.model = copy
        self._original = model
        self._stubs = stubs

    def written(self, index: int) -> None:
        """The rewrite gave the top-level initializer at ``index`` new data."""
        self._stubs.discard(index)

    def fill(self) -> None:
        """Original data for every stub the rewrite left alone (call before anything
        removes or reorders initializers)."""
        for index in sorted(self._stubs):
            source = self._original.graph.initializer[index]
            self.model.graph.initializer[index].raw_data = source.raw_data
        self._stubs = set()


def working_copy(model: ModelProto, graph: ModelGraph, deferred: Collection[str]) -> WorkingCopy:
    """``materialize(model, graph)`` with the data of the embedded raw top-level
    initializers in ``deferred`` left out until :meth:`WorkingCopy.fill`."""
    copy = ModelProto()
    copy_fields(model, copy, skip=("graph",))
    copy_fields(model.graph, copy.graph, skip=("initializer",))
    stubs: set[int] = set()
    for index, tensor in enumerate(model.graph.initializer):
        target = copy.graph.initializer.add()
        if tensor.data_location == TensorProto.EXTERNAL:
            dtype = graph.dtype(tensor.name)
            try:
                values = graph.params.get(tensor.name)
            except Exception as error:
                raise FoldIOError(f"cannot read external tensor {tensor.name!r}: {error}") from None
            target.CopyFrom(to_tensor(values, dtype or "float32", tensor.name))
        elif tensor.name in deferred and tensor.HasField("raw_data"):
            copy_fields(tensor, target, skip=("raw_data",))
            stubs.add(index)
        else:
            target.CopyFrom(tensor)
    if has_external_in_subgraphs(copy.graph):
        raise FoldIOError("external data inside If/Loop/Scan bodies is not supported")
    return WorkingCopy(model, copy, stubs)
