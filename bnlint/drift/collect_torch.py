"""BN input statistics from PyTorch, on a private deep copy of the loaded module.

Loading follows the front end's trust rules (a ``module:factory`` runs the user's code by
design; a ``.pt2`` is only loaded into a runnable module with ``--trust-model-code``); this
module only runs what the loader produced, in each submodule's recorded mode, under
``torch.no_grad()``.

* An ``nn.Module`` tree (``module:factory``, the Python API): a forward pre-hook on each
  analysed BatchNorm module (found by the module path the graph records) summarises its
  input. Re-estimation writes its running statistics into the private copy.
* A ``GraphModule`` from ``torch.export`` (``.pt2``): BatchNorms are aten calls, not
  modules, so a ``torch.fx.Interpreter`` summarises the first argument of each analysed
  ``batch_norm`` call (the graph's BN node names are the FX node names); running
  statistics are the module's buffers, named as in the graph.

A pass stops as soon as the last requested BN has been seen: nothing after it is run.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bnlint.drift.collect_onnx import data_inputs, fixed_batch
from bnlint.drift.sites import BnSite
from bnlint.drift.summaries import Overrides, RowStats, Summaries
from bnlint.graph import ModelGraph
from bnlint.runtime import RunnerUnavailable


class _Done(Exception):
    """Raised from a hook once every requested BN has been summarised."""


def summarise(tensor: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """(a, w, positions) of a BN input (N, C, *spatial), computed in torch, float64 out."""
    import torch

    x = tensor.detach()
    if x.dim() <= 2:
        a = x.reshape(x.shape[0], -1).to(torch.float64)
        return a.numpy(), np.zeros(tuple(a.shape)), 1
    rows = x.reshape(x.shape[0], x.shape[1], -1).to(torch.float32)
    w, a = torch.var_mean(rows, dim=2, correction=0)
    return a.to(torch.float64).numpy(), w.to(torch.float64).numpy(), int(rows.shape[2])


class TorchCollector:
    def __init__(self, graph: ModelGraph, sites: Sequence[BnSite]) -> None:
        try:
            import torch
        except ImportError:
            raise RunnerUnavailable(
                "PyTorch is not installed (pip install 'bnlint[torch]')"
            ) from None
        self.graph = graph
        self.torch = torch
        try:
            with warnings.catch_warnings():  # torch's own deprecation notes while copying
                warnings.simplefilter("ignore")
                self.module = copy.deepcopy(graph.source.torch_module)
        except Exception as error:
            raise RunnerUnavailable(f"the model cannot be copied to run it: {error}") from None
        self.sites = {site.id: site for site in sites}
        self.inputs = data_inputs(graph)
        self.fixed_batch = fixed_batch(self.inputs)
        self.is_fx = isinstance(self.module, torch.fx.GraphModule)
        self._modules = {} if self.is_fx else self._bn_modules(sites)

    def _bn_modules(self, sites: Sequence[BnSite]) -> dict[int, Any]:
        found = {}
        named = dict(self.module.named_modules())
        for site in sites:
            module = named.get(site.node.scope or "")
            if module is None or not hasattr(module, "running_mean"):
                raise RunnerUnavailable(f"no BatchNorm module at {site.node.scope!r} to observe")
            found[site.id] = module
        return found

    def _set_statistics(self, overrides: Overrides) -> None:
        for site_id, (mean, var) in overrides.items():
            site = self.sites[site_id]
            for role, values in (("mean", mean), ("var", var)):
                name = site.node.input(role)
                buffer = self._buffer(site, role, name)
                buffer.copy_(self.torch.as_tensor(np.asarray(values), dtype=buffer.dtype))

    def buffer(self, site: BnSite, role: str) -> Any:
        """The tensor holding ``site``'s running ``role`` (mean or var) in the private copy."""
        return self._buffer(site, role, site.node.input(role))

    def _buffer(self, site: BnSite, role: str, name: str | None) -> Any:
        if not self.is_fx:
            attribute = "running_mean" if role == "mean" else "running_var"
            return getattr(self._modules[site.id], attribute)
        try:
            return self.module.get_buffer(name)
        except (AttributeError, TypeError) as error:
            raise RunnerUnavailable(f"no buffer {name!r} in the exported module: {error}") from None

    def summaries(
        self, feeds: Mapping[str, np.ndarray], sites: Sequence[BnSite], overrides: Overrides
    ) -> Summaries:
        torch = self.torch
        self._set_statistics(overrides)
        tensors = [torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in self.inputs]
        wanted = {site.id for site in sites}
        found: Summaries = {}

        def record(site_id: int, tensor: Any) -> None:
            if site_id in wanted and site_id not in found:
                a, w, positions = summarise(tensor)
                found[site_id] = RowStats(a, w, positions)
                if len(found) == len(wanted):
                    raise _Done

        try:
            with torch.no_grad():
                if self.is_fx:
                    self._run_fx(tensors, record)
                else:
                    self._run_hooked(tensors, record)
        except _Done:
            pass
        except Exception as error:
            text = " ".join(str(error).split())[:300]
            raise RunnerUnavailable(
                f"torch failed to run the model: {type(error).__name__}: {text}"
            ) from None
        missing = [self.sites[i].name for i in wanted if i not in found]
        if missing:
            raise RunnerUnavailable(f"BatchNorm {missing[0]!r} was never called in a forward pass")
        return found

    def _run_hooked(self, tensors: list, record) -> None:
        handles = []
        try:
            for site_id, module in self._modules.items():
                handles.append(
                    module.register_forward_pre_hook(lambda _m, args, i=site_id: record(i, args[0]))
                )
            self.module(*tensors)
        finally:
            for handle in handles:
                handle.remove()

    def _run_fx(self, tensors: list, record) -> None:
        torch = self.torch
        by_name = {site.node.name: site.id for site in self.sites.values()}

        class Observer(torch.fx.Interpreter):
            def run_node(self, node):
                site_id = by_name.get(node.name)
                if site_id is not None and node.op == "call_function":
                    args, _ = self.fetch_args_kwargs_from_env(node)
                    record(site_id, args[0])
                return super().run_node(node)

        Observer(self.module).run(*tensors)
