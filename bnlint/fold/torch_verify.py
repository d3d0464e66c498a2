"""Verify a PyTorch fold with the same criteria as ONNX (:mod:`bnlint.fold.bounds`).

Per folded BN, the *region* is the producer module followed by the BN module (or the BN
followed by the Conv for a forward fold); the fused module replaces it. Algebraic level:
both run in float64 (copies cast to double) on a seeded probe shaped for the module, the
original also on absolute weights and input for the magnitude bound. Numeric level: both
in the module's dtype on the same probe, against that float64 result. Model outputs: the
original, the folded model and a null fold of the original (producer weights and bias and
the BN's running mean times r, its weight divided by r) on the example inputs.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import numpy as np

from bnlint.fold import bounds
from bnlint.fold.results import FoldResult, Verification
from bnlint.fold.torch_fold import fold_module
from bnlint.fold.verdicts import FoldRecord
from bnlint.graph import ModelGraph

PROBE_EXTENT = 8


def _probe(module: Any, rng: np.random.Generator) -> np.ndarray:
    import torch.nn as nn

    if isinstance(module, nn.Linear):
        return rng.standard_normal((2, module.in_features))
    if isinstance(module, nn.modules.conv._ConvNd):
        dims = module.weight.ndim - 2
        return rng.standard_normal((2, module.in_channels, *([PROBE_EXTENT] * dims)))
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return rng.standard_normal((2, module.num_features, PROBE_EXTENT, PROBE_EXTENT))
    raise TypeError(f"cannot probe {type(module).__name__}")


def _absolute(module: Any) -> Any:
    import torch

    copied = copy.deepcopy(module).double()
    with torch.no_grad():
        for parameter in copied.parameters():
            parameter.abs_()
        for name in ("running_mean",):
            buffer = getattr(copied, name, None)
            if buffer is not None:
                buffer.abs_()
    return copied


def _bn_magnitude(bn: Any, mag: Any) -> Any:
    """(|x| + |mean|) |gamma / sqrt(var + eps)| + |beta| along dim 1."""
    import torch

    shape = (1, -1, *([1] * (mag.ndim - 2)))
    weight = bn.weight if bn.weight is not None else torch.ones_like(bn.running_mean)
    bias = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    mult = (weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)).abs().reshape(shape)
    return (
        mag + bn.running_mean.double().abs().reshape(shape)
    ) * mult + bias.double().abs().reshape(shape)


def _region(original: Any, fused: Any, record: FoldRecord, seed: int, scale: float) -> None:
    import torch

    modules = dict(original.named_modules())
    new = dict(fused.named_modules())
    bn, producer = modules[record.verdict.bn.scope], modules[record.verdict.producer.scope]
    forward = record.verdict.kind == "forward_conv"
    first, second = (bn, producer) if forward else (producer, bn)
    x = _probe(first, np.random.default_rng(seed))
    dtype = str(producer.weight.dtype).replace("torch.", "")
    with torch.no_grad():
        x64 = torch.from_numpy(x)
        a, b = copy.deepcopy(first).double().eval(), copy.deepcopy(second).double().eval()
        exact = b(a(x64))
        target = copy.deepcopy(new[record.verdict.producer.scope]).double().eval()
        folded = target(x64)
        if forward:
            mag = _absolute(producer)(_bn_magnitude(a, x64.abs()))
        else:
            mag = _bn_magnitude(b, _absolute(producer)(x64.abs()))
        check = bounds.algebraic(
            record.verdict.bn.scope, exact.numpy(), folded.numpy(), mag.numpy(), dtype
        )
        xt = torch.from_numpy(x).to(producer.weight.dtype)
        ours = second.eval()(first.eval()(xt))
        theirs = new[record.verdict.producer.scope].eval()(xt)
        numeric = bounds.numeric(
            record.verdict.bn.scope,
            exact.numpy(),
            ours.double().numpy(),
            theirs.double().numpy(),
            dtype,
            scale,
        )
    record.algebraic, record.numeric = check, numeric
    if not check.ok or not numeric.ok:
        bad = check if not check.ok else numeric
        record.problem = (
            f"the fused module differs by {bad.error:.3g} from producer + BN "
            f"({bad.level} level, bound {bad.bound:.3g})"
        )
        record.problem_code = "mismatch"


def _null_fold(module: Any, records: list[FoldRecord], seed: int) -> Any:
    import torch

    copied = copy.deepcopy(module).eval()
    modules = dict(copied.named_modules())
    rng = np.random.default_rng(seed + 1)
    with torch.no_grad():
        for record in records:
            if record.status != "folded" or record.verdict.kind == "forward_conv":
                continue
            producer = modules[record.verdict.producer.scope]
            bn = modules[record.verdict.bn.scope]
            if bn.weight is None or producer.weight is None:
                continue
            r = torch.from_numpy(rng.uniform(1, 2, bn.num_features)).to(producer.weight.dtype)
            axis = 1 if isinstance(producer, torch.nn.modules.conv._ConvTransposeNd) else 0
            shape = [1] * producer.weight.ndim
            shape[axis] = -1
            if axis == 1 and producer.groups != 1:
                continue
            producer.weight.mul_(r.reshape(shape))
            if producer.bias is not None:
                producer.bias.mul_(r)
            bn.running_mean.mul_(r)
            bn.weight.div_(r)
    return copied


def fold_torch_graph(
    graph: ModelGraph, *, keep: Iterable[str] = (), tolerance_scale: float = 1.0
) -> FoldResult:
    """Fold and verify (both levels per BN, model outputs on the example inputs)."""
    import torch

    module = graph.source.torch_module
    folded, records = fold_module(graph, keep)
    verification = Verification(records, tolerance_scale=tolerance_scale, algebraic_ran=True)
    for seed, record in enumerate(records):
        if record.status == "folded":
            _region(module, folded, record, seed, tolerance_scale)
    verification.numeric_ran = True
    inputs = graph.source.example_inputs
    if inputs is None:
        verification.outputs_skipped = "no example inputs to run the whole model with"
        return FoldResult(verification, folded, "torch")
    null = _null_fold(module, records, seed=0)
    with torch.no_grad():
        outputs = [_flat(copy.deepcopy(m).eval()(*inputs)) for m in (module, folded, null)]
    checks = []
    for index, (ours, theirs, noise) in enumerate(zip(*outputs, strict=False)):
        dtype = str(ours.dtype).replace("torch.", "")
        dtype = "float32" if dtype == "bfloat16" else dtype
        checks.append(
            bounds.outputs(
                f"output_{index}",
                ours.double().numpy(),
                theirs.double().numpy(),
                noise.double().numpy(),
                dtype,
                tolerance_scale,
            )
        )
    verification.outputs = checks
    return FoldResult(verification, folded, "torch")


def _flat(output: Any) -> list:
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _flat(item)]
    return [output] if hasattr(output, "detach") else []
