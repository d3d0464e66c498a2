"""Models for the BN parameter-rule tests (BN005, BN006, BN010, BN013, BN014, BN015, BN020).

Real networks from ``tests.zoo.torch_models`` exported with BN preserved (cached as bytes,
parsed fresh for every case), single Conv -> BN graphs with chosen parameter values, and
edge-less graphs standing in for a bare state dict (no phase, parameters only).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from bnlint.findings import Finding
from bnlint.graph import GraphFacts, ModelGraph
from tests.zoo.onnx_builder import GraphBuilder

ROLE_SUFFIX = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


@cache
def _export(name: str, fill: bool, keep_initializers_as_inputs: bool, tweak: tuple) -> bytes:
    import torch

    from tests.zoo import torch_models

    model = torch_models.build(name, fill_stats=fill)
    for module_path, attribute, value in tweak:
        setattr(model.get_submodule(module_path), attribute, value)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is legacy
        torch.onnx.export(
            model,
            (torch_models.example_input(name),),
            buffer,
            dynamo=False,
            training=torch.onnx.TrainingMode.PRESERVE,
            do_constant_folding=False,
            keep_initializers_as_inputs=keep_initializers_as_inputs,
        )
    return buffer.getvalue()


def exported(
    name: str,
    *,
    fill: bool = True,
    keep_initializers_as_inputs: bool = False,
    tweak: Sequence[tuple[str, str, Any]] = (),
) -> onnx.ModelProto:
    """A zoo network exported to ONNX with BN kept (eval mode, no constant folding).

    ``tweak`` sets module attributes before export, e.g. ``("bn1", "eps", 1e-3)``.
    """
    return onnx.load_from_string(_export(name, fill, keep_initializers_as_inputs, tuple(tweak)))


@cache
def bn_scopes(name: str) -> tuple[str, ...]:
    """Module paths of every BatchNorm in a zoo network, in definition order."""
    from torch import nn

    from tests.zoo import torch_models

    model = torch_models.MODELS[name]()
    return tuple(
        path
        for path, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
    )


def set_initializer(model: onnx.ModelProto, name: str, array: np.ndarray) -> onnx.ModelProto:
    """Replace the value of initializer ``name`` (dtype kept unless ``array`` differs)."""
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.name == name:
            model.graph.initializer[index].CopyFrom(
                numpy_helper.from_array(np.asarray(array), name)
            )
            return model
    raise KeyError(name)


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


def trained_values(c: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "scale": rng.uniform(0.5, 1.5, c),
        "bias": rng.normal(0, 0.2, c),
        "mean": rng.normal(0, 0.5, c),
        "var": rng.uniform(0.3, 2.0, c),
    }


def conv_bn(
    channels: int = 4,
    *,
    dtype: Any = np.float32,
    opset: int = 15,
    eps: float | None = None,
    momentum: float | None = None,
    as_input: Sequence[str] = (),
    ir_version: int | None = None,
    **values: Any,
) -> onnx.ModelProto:
    """x -> Conv 'conv' -> BN 'bn' -> Relu with trained-looking parameters unless overridden.

    ``values`` maps a role (scale, bias, mean, var) to its array; ``as_input`` names the
    roles whose initializers are also graph inputs.
    """
    g = GraphBuilder(opset=opset, dtype=dtype)
    x = g.input("x", [1, 3, 8, 8])
    conv = g.conv(x, channels, name="conv")
    chosen = {**trained_values(channels), **values}
    params = [
        g.param(f"bn.{ROLE_SUFFIX[role]}", np.asarray(chosen[role]), as_input=role in as_input)
        for role in ("scale", "bias", "mean", "var")
    ]
    out = g.bn(conv, name="bn", params=params, eps=eps, momentum=momentum, c=channels)
    return g.model([g.relu(out)], ir_version=ir_version)


def bare_graph(layers: dict[str, dict[str, Any]]) -> ModelGraph:
    """An edge-less graph of BN layers, like a state dict: ``{name: {role: array, attr: v}}``."""
    graph = ModelGraph(
        "<state-dict>", GraphFacts(format="state_dict", default_phase=None, has_edges=False)
    )
    for layer, spec in layers.items():
        names = []
        for role, suffix in ROLE_SUFFIX.items():
            name = f"{layer}.{suffix}"
            graph.params.add(name, np.asarray(spec[role], dtype=np.float32))
            record = graph.tensor(name)
            record.is_param, record.shape, record.dtype = True, np.shape(spec[role]), "float32"
            names.append(name)
        attrs = {"eps": 1e-5, "momentum": 0.1, "training": False, "track_running_stats": True}
        attrs.update({k: v for k, v in spec.items() if k not in ROLE_SUFFIX})
        graph.add_node(
            "batch_norm", "BatchNorm2d", layer, ["", *names], [], attrs=attrs, scope=layer
        )
    return graph.finalize()


def lint_bare(graph: ModelGraph, code: str, **settings: Any) -> list[Finding]:
    """Run one rule on a hand-built graph through the engine (phase from the graph)."""
    from bnlint.config import Settings
    from bnlint.engine import lint_graph
    from bnlint.engine.registry import load_rules

    result = lint_graph(graph, Settings(select=(code,), **settings), load_rules())
    return [finding for finding in result.findings if finding.code == code]
