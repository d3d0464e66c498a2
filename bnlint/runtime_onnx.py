"""ONNX Runtime behind :class:`bnlint.runtime.ModelRunner` (the ``ort`` extra), imported lazily.

Sessions run with graph optimizations disabled: ONNX Runtime folds BatchNormalization into
Conv itself at its basic level, which would make an original model and its fold agree by
construction. ``probe(names)`` gives a runner that also returns intermediate tensors, which
is how verification compares the tensors around each fold and BN018 locates the BN that
couples samples.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bnlint.runtime import InputSpec, RunnerUnavailable

if TYPE_CHECKING:
    from onnx import ModelProto

    from bnlint.graph import ModelGraph

INSTALL_HINT = "onnxruntime is not installed (pip install 'bnlint[ort]')"
PROBE_EXTENT = 32  # size given to symbolic non-batch dimensions


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise RunnerUnavailable(INSTALL_HINT) from None
    return onnxruntime


class OnnxRunner:
    """One inference session over an in-memory model (external data already inlined)."""

    def __init__(self, model: ModelProto, *, extra_outputs: Sequence[str] = ()) -> None:
        ort = _onnxruntime()
        from onnx import ModelProto, ValueInfoProto

        self._model = model
        declared = {value.name for value in model.graph.output}
        inputs = {value.name for value in model.graph.input}
        self._extra = [n for n in dict.fromkeys(extra_outputs) if n not in declared | inputs]
        if self._extra:
            probed = ModelProto()
            probed.CopyFrom(model)
            probed.graph.output.extend(ValueInfoProto(name=name) for name in self._extra)
            model = probed
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
        try:
            self._session = _session(ort, model, options)
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
        try:
            return list(self._session.run(None, dict(feeds)))
        except Exception as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise RunnerUnavailable(f"onnxruntime failed to run the model: {message}") from None

    def probe(self, names: Sequence[str]) -> OnnxRunner:
        """A runner over the same model that also outputs the intermediate tensors ``names``."""
        return OnnxRunner(self._model, extra_outputs=[*self._extra, *names])


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
    """The ``ModelGraph.runner_factory`` of ONNX graphs: a session over the loaded model."""
    from bnlint.onnx_io import FoldIOError, materialize

    model = graph.extras.get("onnx_model")
    if model is None:
        raise RunnerUnavailable("the ONNX model is not available to run")
    _onnxruntime()  # fail fast, before materialising external data
    try:
        return OnnxRunner(materialize(model, graph))
    except FoldIOError as error:
        raise RunnerUnavailable(str(error)) from None


def make_feeds(
    specs: Sequence[InputSpec],
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    batch: int = 2,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Seeded inputs: standard normal floats, zeros for integers and booleans.

    Symbolic dimensions take ``--input-shape`` values when given, the batch size on axis 0
    and a small probe extent elsewhere.
    """
    rng = np.random.default_rng(seed)
    given = dict(input_shapes or {})
    feeds = {}
    for position, spec in enumerate(specs):
        shape = given.get(spec.name) or (given.get("") if position == 0 else None)
        if shape is None:
            shape = tuple(
                dim if isinstance(dim, int) and dim >= 0 else (batch if axis == 0 else PROBE_EXTENT)
                for axis, dim in enumerate(spec.shape)
            )
        feeds[spec.name] = random_array(rng, tuple(int(d) for d in shape), spec.dtype)
    return feeds


def random_array(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if dtype in ("float32", "float16", "float64"):
        return rng.standard_normal(shape).astype(dtype)
    if dtype == "bfloat16":
        import ml_dtypes

        return rng.standard_normal(shape).astype(np.float32).astype(ml_dtypes.bfloat16)
    return np.zeros(shape, dtype=dtype)
