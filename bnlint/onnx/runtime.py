"""ONNX Runtime behind :class:`bnlint.runtime.ModelRunner` (the ``ort`` extra), imported lazily.

Sessions run with graph optimizations disabled: ONNX Runtime folds BatchNormalization into
Conv itself at its basic level, which would make an original model and its fold agree by
construction. ``probe(names)`` gives a runner that also returns intermediate tensors, which
is how verification compares the tensors around each fold and BN018 locates the BN that
couples samples.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bnlint.runtime import InputSpec, RunnerUnavailable

if TYPE_CHECKING:
    from onnx import ModelProto

    from bnlint.graph import ModelGraph

INSTALL_HINT = "onnxruntime is not installed (pip install 'bnlint[ort]')"
# A run's deadline: a few KB of Loop with a trip count of 10**12 would run for days, and ORT
# holds the interpreter meanwhile. Real models run probe inputs far faster than 1 s per MB.
RUN_BASE_SECONDS = 60.0


def import_onnxruntime() -> Any:
    # ONNX Runtime otherwise writes a telemetry device id under ~/.cache and $TMPDIR on
    # import: a linter leaves nothing behind in the user's home.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    try:
        import onnxruntime
    except ImportError:
        raise RunnerUnavailable(INSTALL_HINT) from None
    return onnxruntime


ArrayProvider = Callable[[str], "np.ndarray | None"]
IN_MEMORY = "__bnlint_in_memory__"  # the location of initializers handed to ORT as arrays
SPLIT_MIN_BYTES = 4096  # smaller initializers stay inside the serialized model


class OnnxRunner:
    """One inference session over an in-memory model.

    Large initializers are not serialized into the session: they are handed to ONNX
    Runtime as arrays (``SessionOptions.add_external_initializers``), taken from ``arrays``
    when given (a ModelGraph's parameters: memory-mapped, external data read through the
    validated resolver) or from the tensor's own bytes. A 100 MB model is then neither
    copied nor serialized to create a session, and external data never has to be inlined.
    """

    def __init__(
        self,
        model: ModelProto,
        *,
        extra_outputs: Sequence[str] = (),
        arrays: ArrayProvider | None = None,
        edit: Callable[[ModelProto], None] | None = None,
        optimize: bool = False,
        spin: bool = True,
    ) -> None:
        """``edit`` changes the session's model (a copy whose large weights are held
        apart) before the session is created, e.g. to add nodes; ``optimize`` turns ONNX
        Runtime's graph optimizations on (callers that make every tensor they read a
        graph output, so nothing they read can be fused away); ``spin=False`` lets idle
        pool threads sleep instead of spinning (a few short runs on cores other
        processes share: spinning threads then only take time from the working one)."""
        ort = import_onnxruntime()
        self._model = model
        self._arrays = arrays
        declared = {value.name for value in model.graph.output}
        inputs = {value.name for value in model.graph.input}
        self._extra = [n for n in dict.fromkeys(extra_outputs) if n not in declared | inputs]
        options = ort.SessionOptions()
        level = "ORT_ENABLE_ALL" if optimize else "ORT_DISABLE_ALL"
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        options.log_severity_level = 3
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            light, names, values = _split_weights(ort, model, arrays)
            from onnx import ValueInfoProto

            light.graph.output.extend(ValueInfoProto(name=name) for name in self._extra)
            if edit is not None:
                edit(light)
                names, values = _still_read(light, names, values)
            if names:
                options.add_external_initializers(names, values)
            self._values = values  # the session reads these buffers: keep them alive
            self._session = _session(ort, light, options)
            weights = sum(getattr(value, "nbytes", 0) for value in values or ())
            self._seconds = RUN_BASE_SECONDS + (light.ByteSize() + weights) / 1e6
            self._run_options = ort.RunOptions
        except RunnerUnavailable:
            raise
        except Exception as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise RunnerUnavailable(f"onnxruntime cannot load the model: {message}") from None
        initializers = {t.name for t in model.graph.initializer}
        self._inputs = [
            InputSpec(arg.name, tuple(arg.shape), _dtype(arg.type))
            for arg in self._session.get_inputs()
            if arg.name not in initializers
        ]
        self._outputs = [arg.name for arg in self._session.get_outputs()]
        self.declared_outputs = [name for name in self._outputs if name not in self._extra]

    @property
    def inputs(self) -> Sequence[InputSpec]:
        return self._inputs

    @property
    def output_names(self) -> Sequence[str]:
        return self._outputs

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The outputs for ``feeds``, stopped by ONNX Runtime's terminate flag (checked
        between nodes, Loop iterations included) when the run outlives its deadline."""
        import threading

        options = self._run_options()
        options.log_severity_level = 4  # the stop is ours to report, in one line
        timer = threading.Timer(self._seconds, setattr, (options, "terminate", True))
        timer.daemon = True
        timer.start()
        try:
            return list(self._session.run(None, dict(feeds), options))
        except Exception as error:
            if options.terminate:
                raise RunnerUnavailable(
                    f"onnxruntime did not finish the model within {self._seconds:.0f} s"
                ) from None
            message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise RunnerUnavailable(f"onnxruntime failed to run the model: {message}") from None
        finally:
            timer.cancel()

    def probe(self, names: Sequence[str]) -> OnnxRunner:
        """A runner over the same model that also outputs the intermediate tensors ``names``."""
        return OnnxRunner(self._model, extra_outputs=[*self._extra, *names], arrays=self._arrays)


def _repeated(field: Any) -> bool:
    found = getattr(field, "is_repeated", None)
    return bool(found) if found is not None else getattr(field, "label", None) == 3


def _copy_fields(target: Any, source: Any, skip: str) -> None:
    for field, value in source.ListFields():
        if field.name == skip:
            continue
        if _repeated(field):
            getattr(target, field.name).extend(value)
        elif field.message_type is not None:
            getattr(target, field.name).CopyFrom(value)
        else:
            setattr(target, field.name, value)


def _split_weights(ort: Any, model: ModelProto, arrays: ArrayProvider | None):
    """(model without its large initializers' data, their names, their OrtValues)."""
    from onnx import ModelProto, TensorProto

    from bnlint.onnx.elem_types import numpy_dtype
    from bnlint.onnx.model_io import names_read

    light = ModelProto()
    _copy_fields(light, model, "graph")
    _copy_fields(light.graph, model.graph, "initializer")
    names, values = [], []
    used = names_read(model.graph.node) | {value.name for value in model.graph.output}
    for tensor in model.graph.initializer:
        if tensor.name not in used:
            # ORT drops unused initializers before binding external ones, then fails to find
            # them; an initializer nothing reads changes no output, so it is left out.
            continue
        external = tensor.data_location == TensorProto.EXTERNAL
        dtype = numpy_dtype(tensor.data_type)
        if dtype is None or (not external and tensor.ByteSize() < SPLIT_MIN_BYTES):
            if external:
                raise RunnerUnavailable(f"external tensor {tensor.name!r} has no readable type")
            light.graph.initializer.append(tensor)
            continue
        array = arrays(tensor.name) if arrays is not None else None
        dims = tuple(tensor.dims)
        if array is None or array.shape != dims or array.dtype != dtype:
            if external:
                raise RunnerUnavailable(f"external tensor {tensor.name!r} could not be read")
            if not tensor.raw_data:
                light.graph.initializer.append(tensor)
                continue
            array = np.frombuffer(tensor.raw_data, dtype=dtype).reshape(dims)
        stub = light.graph.initializer.add()
        stub.name, stub.data_type = tensor.name, tensor.data_type
        stub.dims.extend(dims)
        stub.data_location = TensorProto.EXTERNAL
        entry = stub.external_data.add()
        entry.key, entry.value = "location", IN_MEMORY
        names.append(tensor.name)
        values.append(ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array)))
    return light, names, values


def _still_read(light: ModelProto, names: list[str], values: list[Any]) -> tuple[list, list]:
    """Drop the held-apart weights an edit left unread (ONNX Runtime refuses them)."""
    from bnlint.onnx.model_io import names_read

    used = names_read(light.graph.node) | {value.name for value in light.graph.output}
    kept = [(n, v) for n, v in zip(names, values, strict=True) if n in used]
    stubs = [t for t in light.graph.initializer if t.name in used or t.name not in names]
    if len(stubs) != len(light.graph.initializer):
        del light.graph.initializer[:]
        light.graph.initializer.extend(stubs)
    return [n for n, _ in kept], [v for _, v in kept]


def _session(ort: Any, model: ModelProto, options: Any) -> Any:
    providers = ["CPUExecutionProvider"]
    try:
        serialized = model.SerializeToString()
    except Exception:  # over protobuf's 2 GiB: hand ONNX Runtime a file with external data
        serialized = None
    if serialized is not None:
        return ort.InferenceSession(serialized, options, providers=providers)
    import onnx

    with tempfile.TemporaryDirectory(prefix="bnlint-ort-") as folder:
        path = Path(folder) / "model.onnx"
        onnx.save_model(model, str(path), save_as_external_data=True, location="model.data")
        return ort.InferenceSession(str(path), options, providers=providers)


_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(bfloat16)": "bfloat16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def _dtype(ort_type: str) -> str:
    return _ORT_TYPES.get(ort_type, ort_type)


def runner_for_graph(graph: ModelGraph) -> OnnxRunner:
    """The ``ModelGraph.runner_factory`` of ONNX graphs: a session over the loaded model,
    its weights (external data included) read through the graph's parameters."""
    model = graph.source.onnx_model
    if model is None:
        raise RunnerUnavailable("the ONNX model is not available to run")
    import_onnxruntime()  # fail fast, before reading any weights
    from bnlint.onnx.model_io import has_external_in_subgraphs

    if has_external_in_subgraphs(model.graph):
        raise RunnerUnavailable("external data inside If/Loop/Scan bodies is not supported")
    return OnnxRunner(model, arrays=graph_arrays(graph))


def graph_arrays(graph: ModelGraph) -> ArrayProvider:
    """A provider of ``graph``'s parameter arrays (None for names it cannot read)."""

    def read(name: str) -> np.ndarray | None:
        try:
            return graph.params.get(name) if name in graph.params else None
        except Exception:
            return None

    return read
