"""BN input statistics from ONNX Runtime (the ``ort`` extra).

The session's model is the loaded one plus, for every requested BN, a few nodes that
summarise a tensor per sample and channel inside the runtime — ``a = GlobalAveragePool(t)``
and ``w = GlobalAveragePool((t - a)^2)`` after a Cast to float32 — so only (samples x
channels) numbers leave the session instead of every activation, and the model's own
outputs and any node no statistic needs are pruned.

Where the statistic is taken:

* ``point="input"`` (re-estimation): the BN's input itself. Running statistics are fed as
  graph inputs, so they can change from run to run without a new session.
* ``point="output"`` (the drift check): the BN's output, mapped back to its input through
  the BN's own affine map, ``x = mean + (y - beta) * sqrt(var + eps) / gamma`` (exact; a
  channel whose gamma is too small for the inversion to be precise is reported as
  unmeasured — its output does not depend on its input anyway). Because every statistic
  then hangs off a tensor the session must produce unchanged, ONNX Runtime's graph
  optimizations can stay on without fusing away anything that is read (measured in
  BENCHMARKS.md: optimizations off cost about twice the inference time of a ResNet-50).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bnlint.drift.collect import Overrides, RowStats, Summaries
from bnlint.drift.samples import InputSpec
from bnlint.drift.sites import BnSite
from bnlint.graph import ModelGraph
from bnlint.runtime import RunnerUnavailable

if TYPE_CHECKING:
    from onnx import ModelProto

PREFIX = "bnlint_drift"
GAMMA_FLOOR = 1e-6  # |gamma| / max |gamma| below this: the output cannot be inverted


def data_inputs(graph: ModelGraph) -> list[InputSpec]:
    """The model's inputs that take data (an input with an initializer has a default)."""
    return [
        InputSpec(name, graph.shape(name), graph.dtype(name))
        for name in graph.graph_inputs
        if name not in graph.params
    ]


def fixed_batch(inputs: Sequence[InputSpec]) -> int | None:
    if not inputs or not inputs[0].shape:
        return None
    first = inputs[0].shape[0]
    return first if isinstance(first, int) and first > 0 else None


class OnnxCollector:
    def __init__(
        self,
        graph: ModelGraph,
        sites: Sequence[BnSite],
        *,
        point: str = "output",
        optimize: bool | None = None,
    ) -> None:
        from bnlint.runtime_onnx import _onnxruntime

        _onnxruntime()  # fail fast without the ort extra
        from bnlint.onnx_io import has_external_in_subgraphs

        self.graph = graph
        self.model = graph.extras["onnx_model"]
        if has_external_in_subgraphs(self.model.graph):
            raise RunnerUnavailable("external data inside If/Loop/Scan bodies is not supported")
        self.point = point
        self.optimize = (point == "output") if optimize is None else optimize
        self.sites = {site.id: site for site in sites}
        self.inputs = data_inputs(graph)
        self.fixed_batch = fixed_batch(self.inputs)
        self._sessions: dict[tuple[int, ...], Any] = {}

    # -- the session's model -------------------------------------------------------------
    def _stat_names(self, site: BnSite) -> tuple[str, str]:
        return f"{PREFIX}/{site.id}/a", f"{PREFIX}/{site.id}/w"

    def _param_input(self, site: BnSite, role: str) -> str:
        return f"{PREFIX}/{site.id}/{role}"

    def _edit(self, wanted: Sequence[BnSite]):
        from onnx import ValueInfoProto

        def edit(model: ModelProto) -> None:
            graph = model.graph
            if self.point == "input":
                self._rewire_statistics(model)
            del graph.output[:]
            extra: dict[int, list] = {}  # node index -> the statistics nodes that follow it
            for site in wanted:
                tensor = site.node.inputs[0] if self.point == "input" else site.node.outputs[0]
                nodes, outputs = self._statistic_nodes(site, tensor)
                extra[site.node.location.node_index] = nodes
                graph.output.extend(ValueInfoProto(name=name) for name in outputs)
            # Each summary right after its BN: ONNX Runtime then frees the activation as it
            # goes instead of keeping every BN's tensor alive until the end of the graph.
            nodes = []
            for index, node in enumerate(graph.node):
                nodes.append(node)
                nodes.extend(extra.get(index, ()))
            del graph.node[:]
            graph.node.extend(nodes)
            _prune(model)

        return edit

    def _statistic_nodes(self, site: BnSite, tensor: str) -> tuple[list, list[str]]:
        """Per-sample channel mean ``a`` and mean square (output point) or variance about
        ``a`` (input point) of ``tensor``, inside the session."""
        from onnx import TensorProto, helper

        a, w = self._stat_names(site)
        rank = self._rank(tensor)
        if rank is not None and rank <= 2:
            return [helper.make_node("Identity", [tensor], [a], name=a)], [a]
        base = f"{PREFIX}/{site.id}"
        nodes = []
        if self.graph.dtype(tensor) not in (None, "float32"):
            nodes.append(helper.make_node("Cast", [tensor], [f"{base}/f32"], to=TensorProto.FLOAT))
            tensor = f"{base}/f32"
        nodes.append(helper.make_node("GlobalAveragePool", [tensor], [a]))
        if self.point == "input":  # statistics that may be written: centred per sample
            nodes.append(helper.make_node("Sub", [tensor, a], [f"{base}/c"]))
            tensor = f"{base}/c"
        # A BN's output is standardised per channel (|mean| / sd is that of the running
        # statistics' scale), so the mean square loses no useful precision to cancellation;
        # one full-size pass fewer keeps ONNX Runtime's fused kernels busy.
        nodes.append(helper.make_node("Mul", [tensor, tensor], [f"{base}/sq"]))
        nodes.append(helper.make_node("GlobalAveragePool", [f"{base}/sq"], [w]))
        return nodes, [a, w]

    def _rank(self, tensor: str) -> int | None:
        shape = self.graph.shape(tensor)
        return len(shape) if shape is not None else None

    def _rewire_statistics(self, model: ModelProto) -> None:
        from onnx import helper

        for site in self.sites.values():
            onnx_node = model.graph.node[site.node.location.node_index]
            if onnx_node.op_type != "BatchNormalization":
                raise RunnerUnavailable(f"BN {site.name!r} is not where the model has it")
            onnx_node.input[3] = self._param_input(site, "mean")
            onnx_node.input[4] = self._param_input(site, "var")
        for site in self.sites.values():
            for role in ("mean", "var"):
                dtype = self.graph.dtype(site.node.input(role)) or "float32"
                model.graph.input.append(
                    helper.make_tensor_value_info(
                        self._param_input(site, role), _onnx_type(dtype), [site.channels]
                    )
                )

    def _session(self, wanted: Sequence[BnSite]) -> Any:
        key = tuple(site.id for site in wanted)
        session = self._sessions.get(key)
        if session is None:
            from bnlint.runtime_onnx import OnnxRunner, graph_arrays

            self._sessions.clear()  # one live session at a time: memory stays flat
            session = OnnxRunner(
                self.model,
                arrays=graph_arrays(self.graph),
                edit=self._edit(wanted),
                optimize=self.optimize,
            )
            self._sessions[key] = session
        return session

    # -- running ------------------------------------------------------------------------
    def summaries(
        self, feeds: Mapping[str, np.ndarray], sites: Sequence[BnSite], overrides: Overrides
    ) -> Summaries:
        runner = self._session(sites)
        feeds = dict(feeds)
        if self.point == "input":
            for site in self.sites.values():
                mean, var = overrides.get(site.id, (site.mean, site.var))
                for role, values in (("mean", mean), ("var", var)):
                    dtype = self.graph.dtype(site.node.input(role)) or "float32"
                    feeds[self._param_input(site, role)] = _as_dtype(values, dtype)
        outputs = dict(zip(runner.output_names, runner.run(feeds), strict=False))
        found: Summaries = {}
        for site in sites:
            a_name, w_name = self._stat_names(site)
            a = outputs[a_name]
            if w_name in outputs:
                positions = self._positions(site)
                a2 = a.reshape(a.shape[0], a.shape[1]).astype(np.float64)
                w2 = outputs[w_name].reshape(a2.shape).astype(np.float64)
                if self.point == "output":  # a mean square: the variance about the mean
                    w2 = np.maximum(w2 - a2 * a2, 0.0)
            else:  # a rank-2 input: each sample is one value per channel
                positions, a2, w2 = 1, a.astype(np.float64), np.zeros(a.shape)
            if self.point == "output":
                mean, var = overrides.get(site.id, (site.mean, site.var))
                a2, w2 = invert(site, mean, var, a2, w2)
            found[site.id] = RowStats(a2, w2, positions)
        return found

    def _positions(self, site: BnSite) -> int:
        shape = self.graph.shape(site.node.inputs[0]) or ()
        spatial = list(shape[2:])
        if all(isinstance(d, int) and d > 0 for d in spatial):
            return int(np.prod(spatial)) if spatial else 1
        return 1  # only the sampling-error estimate uses it, and it is per sample anyway


def invert(
    site: BnSite, mean: np.ndarray, var: np.ndarray, a: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample summaries of a BN's output mapped back to its input (NaN where gamma is
    too small for that to be precise)."""
    gamma = site.scale
    scale = np.sqrt(np.asarray(var, dtype=np.float64) + site.eps)
    floor = GAMMA_FLOOR * max(float(np.abs(gamma).max(initial=0.0)), np.finfo(np.float32).tiny)
    usable = np.abs(gamma) > floor
    factor = np.where(usable, scale / np.where(usable, gamma, 1.0), np.nan)
    a_in = np.asarray(mean, dtype=np.float64) + (a - site.bias) * factor
    w_in = w * factor * factor
    return a_in, w_in


def _prune(model: ModelProto) -> None:
    """Keep only the nodes the graph's outputs need (nodes are in topological order)."""
    from bnlint.onnx_io import names_read

    needed = {value.name for value in model.graph.output}
    kept = []
    for node in reversed(model.graph.node):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed |= names_read([node])
    if len(kept) != len(model.graph.node):
        nodes = list(reversed(kept))
        del model.graph.node[:]
        model.graph.node.extend(nodes)


def _as_dtype(values: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        import ml_dtypes

        return np.asarray(values, dtype=np.float32).astype(ml_dtypes.bfloat16)
    return np.asarray(values, dtype=dtype)


def _onnx_type(dtype: str) -> int:
    from onnx import TensorProto

    return {
        "float32": TensorProto.FLOAT,
        "float16": TensorProto.FLOAT16,
        "float64": TensorProto.DOUBLE,
        "bfloat16": TensorProto.BFLOAT16,
    }.get(dtype, TensorProto.FLOAT)
