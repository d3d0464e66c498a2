"""BN input statistics from ONNX Runtime (the ``ort`` extra).

The session's model is the loaded one plus, for every requested BN, a few nodes that
summarise a tensor per sample and channel inside the runtime — ``a = GlobalAveragePool(t)``
and ``w = GlobalAveragePool(t * t)`` (float32) — so only (samples x channels) numbers leave
the session instead of every activation, and the model's own outputs and any node no
statistic needs are pruned.

Where the statistic is taken:

* ``point="centred"`` (the drift check): the BN's input minus its running mean. The model
  is rewritten so that ``d = Add(x, -running_mean)`` feeds both the BN (now with a zero
  running mean: the same normalisation) and the statistics, which come back as the
  moments of ``x`` exactly (``mean = running_mean + mean(d)``). Centring keeps the mean
  square free of cancellation wherever the data match their statistics (where they do
  not, the drift is gross anyway). ONNX Runtime's graph optimizations stay on: the Add
  folds into a producing convolution's bias, the BN becomes one fused pass
  (scale, shift, the following ReLU or residual Add), and the statistics read the
  convolution's own output. Reading the BN's *output* instead keeps the BN folded into
  the convolution but leaves the ReLU and residual Add unfused (three extra full-size
  passes instead of one: measured in BENCHMARKS.md). Models in other dtypes are centred
  on a float32 copy, with the BN untouched.
* ``point="input"`` (re-estimation): the BN's input itself, centred per sample. Running
  statistics are fed as graph inputs, so they can change from run to run without a new
  session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bnlint.drift.samples import InputSpec
from bnlint.drift.sites import BnSite
from bnlint.drift.summaries import Overrides, RowStats, Summaries
from bnlint.graph import ModelGraph
from bnlint.runtime import RunnerUnavailable

if TYPE_CHECKING:
    from onnx import ModelProto

PREFIX = "bnlint_drift"


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
        point: str = "centred",
        optimize: bool | None = None,
    ) -> None:
        from bnlint.onnx.runtime import import_onnxruntime

        import_onnxruntime()  # fail fast without the ort extra
        from bnlint.onnx.model_io import has_external_in_subgraphs

        self.graph = graph
        self.model = graph.source.onnx_model
        if has_external_in_subgraphs(self.model.graph):
            raise RunnerUnavailable("external data inside If/Loop/Scan bodies is not supported")
        self.point = point
        if point not in ("centred", "input"):
            raise ValueError(f"unknown statistics point {point!r}")
        self.optimize = (point == "centred") if optimize is None else optimize
        self.sites = {site.id: site for site in sites}
        self.inputs = data_inputs(graph)
        self.fixed_batch = fixed_batch(self.inputs)
        self._sessions: dict[tuple[int, ...], Any] = {}
        self._centred: set[int] = set()  # sites whose statistics are about the running mean

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
            before: dict[int, list] = {}  # node index -> nodes inserted before it
            after: dict[int, list] = {}  # node index -> the statistics nodes that follow it
            tails: list = []  # the nodes that produce the session's outputs
            for site in wanted:
                index = site.node.location.node_index
                bn = graph.node[index]
                if bn.op_type != "BatchNormalization":
                    raise RunnerUnavailable(f"BN {site.name!r} is not where the model has it")
                if self.point == "centred":
                    tensor, before[index] = self._centre(model, site, bn)
                else:
                    tensor = site.node.inputs[0]
                nodes, outputs = self._statistic_nodes(site, tensor)
                after[index] = nodes[: len(nodes) - len(outputs)]
                tails.extend(nodes[len(nodes) - len(outputs) :])
                graph.output.extend(ValueInfoProto(name=name) for name in outputs)
            nodes = []
            for index, node in enumerate(graph.node):
                nodes.extend(before.get(index, ()))
                nodes.append(node)
                nodes.extend(after.get(index, ()))
            # ONNX Runtime orders execution by a depth-first search from the graph's last
            # nodes, the most recently added first. With the output nodes last and in
            # reverse, it computes each BN's summaries as soon as their tensor exists,
            # which it then frees (measured: peak memory about halved, cache-warm reads),
            # instead of running every convolution first and keeping every tensor alive.
            nodes.extend(reversed(tails))
            del graph.node[:]
            graph.node.extend(nodes)
            _prune(model)

        return edit

    def _centre(self, model: ModelProto, site: BnSite, bn: Any) -> tuple[str, list]:
        """The BN input minus the running mean, and the nodes that compute it; in float32
        models the BN then reads that tensor with a zero running mean."""
        from onnx import TensorProto, helper, numpy_helper

        tensor = site.node.inputs[0]
        rank = self._rank(tensor)
        if rank is not None and rank <= 2:  # one value per sample and channel: read as is
            return tensor, []
        base = f"{PREFIX}/{site.id}"
        nodes = []
        in_graph = (
            rank is not None
            and self.graph.dtype(tensor) == "float32"
            and self.graph.dtype(site.node.input("mean")) == "float32"
        )
        if self.graph.dtype(tensor) not in (None, "float32"):
            nodes.append(helper.make_node("Cast", [tensor], [f"{base}/f32"], to=TensorProto.FLOAT))
            tensor = f"{base}/f32"
        if rank is None:  # no broadcast shape for the mean: raw moments (rare)
            return tensor, nodes
        shape = (site.channels,) + (1,) * (rank - 2)
        negated = (-site.mean).astype(np.float32).reshape(shape)
        model.graph.initializer.append(numpy_helper.from_array(negated, f"{base}/neg_mean"))
        nodes.append(helper.make_node("Add", [tensor, f"{base}/neg_mean"], [f"{base}/d"]))
        if in_graph:
            zeros = np.zeros(site.channels, dtype=np.float32)
            model.graph.initializer.append(numpy_helper.from_array(zeros, f"{base}/zero_mean"))
            bn.input[0], bn.input[3] = f"{base}/d", f"{base}/zero_mean"
        self._centred.add(site.id)
        return f"{base}/d", nodes

    def _statistic_nodes(self, site: BnSite, tensor: str) -> tuple[list, list[str]]:
        """Per-sample channel mean ``a`` and mean square (centred point) or variance about
        ``a`` (input point) of ``tensor``, inside the session, as (samples, channels).
        The last ``len(outputs)`` nodes produce the outputs."""
        from onnx import TensorProto, helper

        a, w = self._stat_names(site)
        rank = self._rank(tensor if self.point == "input" else site.node.inputs[0])
        if rank is not None and rank <= 2:
            return [helper.make_node("Identity", [tensor], [a], name=a)], [a]
        base = f"{PREFIX}/{site.id}"
        nodes = []
        if self.point == "input" and self.graph.dtype(tensor) not in (None, "float32"):
            nodes.append(helper.make_node("Cast", [tensor], [f"{base}/f32"], to=TensorProto.FLOAT))
            tensor = f"{base}/f32"
        nodes.append(helper.make_node("GlobalAveragePool", [tensor], [f"{base}/a4"]))
        if self.point == "input":  # statistics that may be written: centred per sample
            nodes.append(helper.make_node("Sub", [tensor, f"{base}/a4"], [f"{base}/c"]))
            tensor = f"{base}/c"
        nodes.append(helper.make_node("Mul", [tensor, tensor], [f"{base}/sq"]))
        nodes.append(helper.make_node("GlobalAveragePool", [f"{base}/sq"], [f"{base}/w4"]))
        nodes.append(helper.make_node("Flatten", [f"{base}/a4"], [a]))
        nodes.append(helper.make_node("Flatten", [f"{base}/w4"], [w]))
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
            from bnlint.onnx.runtime import OnnxRunner, graph_arrays

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
                if self.point == "centred":  # a mean square (about the running mean)
                    w2 = np.maximum(w2 - a2 * a2, 0.0)
                    a2 = a2 + site.mean if site.id in self._centred else a2
            else:  # a rank-2 input: each sample is one value per channel
                positions, a2, w2 = 1, a.astype(np.float64), np.zeros(a.shape)
            found[site.id] = RowStats(a2, w2, positions)
        return found

    def _positions(self, site: BnSite) -> int:
        shape = self.graph.shape(site.node.inputs[0]) or ()
        spatial = list(shape[2:])
        if all(isinstance(d, int) and d > 0 for d in spatial):
            return int(np.prod(spatial)) if spatial else 1
        return 1  # only the sampling-error estimate uses it, and it is per sample anyway


def _prune(model: ModelProto) -> None:
    """Keep only the nodes the graph's outputs need (nodes are in topological order)."""
    from bnlint.onnx.model_io import names_read

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
