"""A BatchNorm epsilon that is non-positive, too small for its dtype, too large, or inconsistent.

## What it detects
- `eps <= 0` (or NaN): nothing keeps `var + eps` away from zero;
- an eps that rounds to 0 in the dtype the layer computes in, or in the float
  `--target-dtype` it will be deployed in (below float16's smallest subnormal, 6e-8): the
  same as no eps at all once a variance underflows. The usual 1e-5, subnormal but nonzero
  in float16, is fine;
- `eps > max-eps` (0.1): typically the `nn.BatchNorm2d(C, G)` bug, where the second
  positional argument meant as a group count or momentum is taken as eps;
- an eps that differs from the one most layers of the model use (converter artefacts,
  rebuilt modules, YOLOv5's 1e-3 next to reimplementations' 1e-5). The minority layers are
  reported, with the histogram of eps values in the evidence. Values are compared with a
  relative tolerance of 1e-5, since ONNX stores eps as float32 (1e-5 is 9.99999974738e-06).
  On a tie the convention is the eps of the first BN in graph order.

## Why it matters
eps is part of the trained function: inference uses gamma / sqrt(var + eps). A wrong eps
shifts every output of channels with small variances, silently; eps = 0 gives Inf or
NaN as soon as a variance is 0 (FrozenBatchNorm in float16, pytorch/vision #2599). Mixed
eps values usually mean part of the model was rebuilt or converted with a different
default (VainF/Torch-Pruning #147, wang-xinyu/tensorrtx #209).

## Example
`nn.BatchNorm2d(64, 32)` gives eps = 32. A YOLOv5 model (eps 1e-3 everywhere) whose
pruned layers were rebuilt with `nn.BatchNorm2d(c)` mixes in eps 1e-5.

## Fix
Pass eps by keyword (`nn.BatchNorm2d(c, eps=1e-3)`), use the eps the model was trained
with in every rebuilt or converted layer, and keep eps positive (1e-5 is PyTorch's default).

## Options
- `max-eps` (default 0.1): larger eps values are reported.
- `consistency` (default true): report layers whose eps differs from the model's usual one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import lru_cache

import numpy as np

from bnlint.analysis.bn_params import bn_dtype
from bnlint.analysis.float_formats import float_format
from bnlint.graph import ModelGraph, Node
from bnlint.rule import ALL_PHASES, Finding, RuleContext, RuleSpec, Severity

RULE = RuleSpec(
    code="BN014",
    name="suspicious-epsilon",
    severity=Severity.WARNING,
    since="0.1.0",
    phases=ALL_PHASES,
    needs=frozenset({"parameters"}),
    runs_without_phase=True,
    options={"max-eps": 0.1, "consistency": True},
)
RELATIVE_TOLERANCE = 1e-5


def _groups(bns: list[Node]) -> list[tuple[float, list[Node]]]:
    """BNs grouped by eps within the relative tolerance, most common group first."""
    groups: list[tuple[float, list[Node]]] = []
    for bn in bns:
        eps = float(bn.attrs.get("eps", 1e-5))
        for value, members in groups:
            if math.isclose(eps, value, rel_tol=RELATIVE_TOLERANCE, abs_tol=0.0):
                members.append(bn)
                break
        else:
            groups.append((eps, [bn]))
    # Stable sort: on equal counts the group of the earliest BN stays first.
    return sorted(groups, key=lambda group: -len(group[1]))


@lru_cache(maxsize=1024)
def _rounds_to_zero(dtype: str, eps: float) -> bool:
    fmt = float_format(dtype)
    return fmt is not None and eps > 0 and float(fmt.round(eps)) == 0.0


def _dtype_problem(graph: ModelGraph, bn: Node, eps: float, ctx: RuleContext) -> str | None:
    for dtype, origin in ((ctx.target_dtype, "target dtype"), (bn_dtype(graph, bn), "dtype")):
        fmt = float_format(dtype)
        if fmt is not None and _rounds_to_zero(fmt.name, eps):
            return (
                f"eps {eps:g} rounds to 0 in the {origin} {fmt.name} (smallest value "
                f"{fmt.min_subnormal:.3g}), so nothing keeps var + eps away from 0"
            )
    return None


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    bns = graph.nodes_of("batch_norm")
    groups = _groups(bns)
    histogram = [{"eps": value, "count": len(members)} for value, members in groups]
    usual, usual_members = groups[0] if groups else (None, [])
    convention = {bn.id for bn in usual_members}
    max_eps = float(ctx.options["max-eps"])
    for bn in bns:
        eps = float(bn.attrs.get("eps", 1e-5))
        reasons = []
        if not eps > 0:
            reasons.append(f"eps is {eps:g}: nothing keeps var + eps away from 0")
        elif eps > max_eps and not math.isclose(eps, max_eps, rel_tol=RELATIVE_TOLERANCE):
            reasons.append(
                f"eps {eps:g} is implausibly large (> {max_eps:g}); nn.BatchNorm2d(C, X) "
                "takes its second positional argument as eps"
            )
        dtype_problem = _dtype_problem(graph, bn, eps, ctx) if np.isfinite(eps) else None
        if dtype_problem is not None:
            reasons.append(dtype_problem)
        odd_one_out = ctx.options["consistency"] and len(groups) > 1 and bn.id not in convention
        if odd_one_out:
            reasons.append(
                f"eps {eps:g} differs from the {usual:g} used by {len(usual_members)} of "
                f"{len(bns)} BatchNorm layers"
            )
        if reasons:
            yield ctx.finding(
                bn,
                "; ".join(reasons),
                evidence={
                    "eps": eps,
                    "usual_eps": usual,
                    "eps_histogram": histogram,
                    "dtype": bn_dtype(graph, bn),
                    "inconsistent": bool(odd_one_out),
                },
                fix="pass eps by keyword and use the value the model was trained with "
                "(PyTorch's default is 1e-5)",
            )
