"""Fold BatchNorm modules into PyTorch Conv / ConvTranspose / Linear modules.

The ``fuse_*`` functions are pure: they return a new module and never touch the ones
given (a weight shared with another module stays as it is; the fused module gets its own
parameters). Arithmetic is float64 through :mod:`bnlint.fold.affine`, results are cast back
to each parameter's dtype and device. Unlike ``torch.nn.utils.fusion``, ConvTranspose is
group-aware (output channels on weight axis 1 within each group).

:func:`fold_module` folds a whole model along the fold plan of its ModelGraph (the
PyTorch front end puts the live module on ``graph.source.torch_module``): the producer
module is replaced by its fused copy and the BN module by ``nn.Identity``, so the model's
own ``forward`` keeps working and exports as before. :mod:`bnlint.fold.torch_verify`
checks the result.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from bnlint.fold.affine import BNAffine, fold_bias, fold_weight, forward_fold
from bnlint.fold.verdicts import FoldRecord, FoldVerdict, plan
from bnlint.graph import ModelGraph


def _bn_numbers(bn: Any) -> tuple[dict[str, np.ndarray], float]:
    if bn.training:
        raise ValueError("the BN module is in training mode; fold only in eval mode")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("the BN module has no running statistics")
    channels = bn.running_mean.shape[0]
    weight = bn.weight if bn.weight is not None else np.ones(channels)
    bias = bn.bias if bn.bias is not None else np.zeros(channels)
    params = {
        "scale": _array(weight),
        "bias": _array(bias),
        "mean": _array(bn.running_mean),
        "var": _array(bn.running_var),
    }
    return params, float(bn.eps)


def _array(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value.astype(np.float64)
    return value.detach().cpu().double().numpy()


def _family(module: Any) -> str:
    import torch.nn as nn

    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return "conv_transpose"
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    raise TypeError(f"cannot fold a BN into {type(module).__name__}")


def _with_parameters(module: Any, weight: np.ndarray, bias: np.ndarray) -> Any:
    import torch

    fused = copy.deepcopy(module)
    reference = module.weight
    fused.weight = torch.nn.Parameter(
        torch.from_numpy(weight).to(dtype=reference.dtype, device=reference.device),
        requires_grad=reference.requires_grad,
    )
    fused.bias = torch.nn.Parameter(
        torch.from_numpy(np.ascontiguousarray(bias)).to(
            dtype=reference.dtype, device=reference.device
        ),
        requires_grad=reference.requires_grad,
    )
    return fused


def fuse_conv_bn(conv: Any, bn: Any) -> Any:
    """A new Conv{1,2,3}d / ConvTranspose{1,2,3}d computing ``bn(conv(x))`` in eval mode."""
    if conv.training:
        raise ValueError("the producer module is in training mode; fold only in eval mode")
    params, eps = _bn_numbers(bn)
    affine = BNAffine.from_params(**params, eps=eps)
    family = _family(conv)
    if family == "linear":
        return fuse_linear_bn(conv, bn)
    if affine.channels != conv.out_channels:
        raise ValueError(f"BN has {affine.channels} channels, the conv {conv.out_channels}")
    weight = fold_weight(_array(conv.weight), affine, family, int(conv.groups))
    bias = fold_bias(None if conv.bias is None else _array(conv.bias), affine)
    return _with_parameters(conv, weight, bias)


def fuse_linear_bn(linear: Any, bn: Any) -> Any:
    """A new Linear computing ``bn(linear(x))`` in eval mode (BatchNorm1d on (N, C))."""
    if linear.training:
        raise ValueError("the producer module is in training mode; fold only in eval mode")
    params, eps = _bn_numbers(bn)
    affine = BNAffine.from_params(**params, eps=eps)
    if affine.channels != linear.out_features:
        raise ValueError(f"BN has {affine.channels} features, Linear {linear.out_features}")
    weight = fold_weight(_array(linear.weight), affine, "conv")  # (out, in): axis 0
    bias = fold_bias(None if linear.bias is None else _array(linear.bias), affine)
    return _with_parameters(linear, weight, bias)


def fuse_bn_conv(bn: Any, conv: Any) -> Any:
    """A new Conv computing ``conv(bn(x))``: only exact without padding and with groups 1."""
    if any(int(p) for p in np.atleast_1d(conv.padding) if not isinstance(p, str)) or (
        isinstance(conv.padding, str) and conv.padding != "valid"
    ):
        raise ValueError("a BN folds forward only into a Conv without padding")
    if conv.groups != 1 or _family(conv) != "conv":
        raise ValueError("a BN folds forward only into an ungrouped Conv")
    params, eps = _bn_numbers(bn)
    affine = BNAffine.from_params(**params, eps=eps)
    weight, bias = forward_fold(
        _array(conv.weight), None if conv.bias is None else _array(conv.bias), affine
    )
    return _with_parameters(conv, weight, bias)


def _not_layers(bn: Any, producer: Any) -> str | None:
    """Why ``bn``/``producer`` are not the layer modules a module fold replaces: a
    torch.export program (``.pt2``) runs flattened parameter holders, not nn.Conv2d and
    nn.BatchNorm2d objects."""
    import torch.nn as nn

    layers = (nn.modules.conv._ConvNd, nn.Linear)
    if isinstance(bn, nn.modules.batchnorm._BatchNorm) and isinstance(producer, layers):
        return None
    return (
        f"the program holds its parameters in a {type(producer).__name__} and a "
        f"{type(bn).__name__}, not in Conv/Linear and BatchNorm modules (torch.export "
        "flattens them): fold the source module (module:factory) or its ONNX export"
    )


def _set_submodule(root: Any, path: str, module: Any) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, module)


def _skip(verdict: FoldVerdict, code: str | None = None, reason: str | None = None):
    return FoldRecord(verdict, "not-folded", code or verdict.reason_code, reason or verdict.reason)


def fold_module(graph: ModelGraph, keep: Iterable[str] = ()) -> tuple[Any, list[FoldRecord]]:
    """A folded deep copy of ``graph.source.torch_module`` and one record per BN."""
    import torch.nn as nn

    module = graph.source.torch_module
    folded = copy.deepcopy(module)
    modules = dict(folded.named_modules())
    calls = Counter(node.scope for node in graph.nodes if node.scope)
    patterns = [re.compile(pattern) for pattern in keep]
    records = []
    for verdict in plan(graph):
        if not verdict.foldable:
            records.append(_skip(verdict))
            continue
        bn_path, producer_path = verdict.bn.scope, verdict.producer.scope
        if any(p.search(bn_path or "") for p in patterns):
            records.append(_skip(verdict, "kept", "left in place by --keep"))
            continue
        if bn_path not in modules or producer_path not in modules:
            records.append(_skip(verdict, "not-a-module", "the BN or its producer is a function"))
            continue
        if calls[bn_path] > 1 or calls[producer_path] > 1:
            records.append(
                _skip(verdict, "module-reused", "the BN or its producer module is called twice")
            )
            continue
        bn, producer = modules[bn_path], modules[producer_path]
        plain = _not_layers(bn, producer)
        if plain is not None:
            records.append(_skip(verdict, "not-a-module", plain))
            continue
        try:
            if verdict.kind == "forward_conv":
                fused = fuse_bn_conv(bn, producer)
            else:
                fused = fuse_conv_bn(producer, bn)
        except (ValueError, TypeError) as error:
            records.append(_skip(verdict, "module-not-foldable", str(error)))
            continue
        _set_submodule(folded, producer_path, fused)
        _set_submodule(folded, bn_path, nn.Identity())
        modules[producer_path] = fused
        records.append(
            FoldRecord(
                verdict,
                "folded",
                matched_by="bnlint",
                target_name=producer_path,
                target_op=type(fused).__name__,
            )
        )
    return folded, records
