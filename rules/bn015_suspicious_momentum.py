"""A BatchNorm momentum that looks ported from the opposite convention, or that disables averaging.

## What it detects
bnlint reads momentum in PyTorch's convention, the weight of the new batch statistic
(`running = (1 - m) * running + m * batch`); loaders convert other formats (ONNX and
Keras store the weight of the old running value, so ONNX 0.9 becomes 0.1). Reported:
- `m > max-momentum` (0.5): in PyTorch 0.9 or 0.99 keeps only 10 % or 1 % of history,
  almost always a Keras/TensorFlow value copied unchanged. For ONNX this is a stored
  momentum below 0.5, e.g. PyTorch's 0.1 written verbatim by a converter;
- `m == 0` as info: the running statistics never move; deliberate when freezing them,
  and `torch.onnx.export` and traced graphs also write PyTorch's `momentum=None` this way;
- `m == 1`: no averaging, the running statistics are those of the last batch;
- `m` outside [0, 1] or NaN;
- `momentum=None` (PyTorch's cumulative moving average) as info: correct for a one-off
  statistics re-estimation pass, surprising in a regular training setup.

The evidence shows the converted value and, for formats with the other convention, the
stored one (`source_momentum`). The rule runs in every phase and on bare weights. In
training and fine-tuning the momentum decides how the running statistics are
accumulated. In a model exported for inference it is inert at run time, but an exporter
that writes it records the value the statistics were accumulated with, so a suspicious
value says the stored statistics reflect only the last few batches. ONNX files that omit
the attribute get the default (0.9 stored, 0.1 converted) and are never reported.

## Why it matters
With the convention flipped, the running statistics track the last few mini-batches
instead of the training distribution, so evaluation accuracy is noisy and lower than
training accuracy. The bug is easy to ship and hard to see: torchvision's MaxViT
(pytorch/vision #8250), tacotron_pytorch #19, ludwig PR #2100, transformers PR #19454.

## Example
`nn.BatchNorm2d(64, momentum=0.99)` in a port of a Keras model (Keras 0.99 means
"keep 99 % of the old value"); exported to ONNX it is stored as momentum 0.01.

## Fix
Convert the value: PyTorch `momentum = 1 - keras_momentum` (Keras 0.99 -> PyTorch 0.01).
Use `momentum=None` only for statistics re-estimation passes.

## Options
- `max-momentum` (default 0.5): larger new-statistic weights are reported.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from bnlint.graph import ModelGraph
from bnlint.rule import ALL_PHASES, Finding, RuleContext, RuleSpec, Severity

RULE = RuleSpec(
    code="BN015",
    name="suspicious-momentum",
    severity=Severity.WARNING,
    since="0.1.0",
    phases=ALL_PHASES,
    needs=frozenset({"parameters"}),
    runs_without_phase=True,
    options={"max-momentum": 0.5},
)
_TOLERANCE = 1e-6  # ONNX stores momentum as float32 (0.9 -> 0.8999999761581421)


def _problem(momentum: float, limit: float) -> tuple[str, Severity | None] | None:
    if not math.isfinite(momentum) or momentum < -_TOLERANCE or momentum > 1 + _TOLERANCE:
        return "is outside [0, 1]", None
    if abs(momentum) <= _TOLERANCE:
        return (
            "is 0: the running statistics never update (deliberate when freezing them; "
            "exporters and traces also write PyTorch's momentum=None this way)",
            Severity.INFO,
        )
    if abs(momentum - 1) <= _TOLERANCE:
        return "is 1: no averaging, the running statistics are those of the last batch", None
    if momentum > limit:
        kept = f"{100 * (1 - momentum):.3g} %"
        return (
            f"gives each new batch statistic a weight of {momentum:.3g}, keeping only {kept} "
            "of the history: a Keras/TensorFlow momentum ported without conversion?",
            None,
        )
    return None


def _stored_note(momentum: float, source: Any) -> str:
    """How the file stored it, when its convention is the opposite one (ONNX, Keras)."""
    if not isinstance(source, (int, float)) or isinstance(source, bool):
        return ""
    source = float(source)
    if math.isclose(source, momentum, abs_tol=_TOLERANCE):
        return ""  # same convention (a PyTorch front end): nothing to translate
    if not math.isclose(1.0 - source, momentum, abs_tol=_TOLERANCE):
        return f" (stored as {source:.3g})"
    return f" (stored as {source:.3g}, the weight of the old running value)"


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    limit = float(ctx.options["max-momentum"])
    for bn in graph.nodes_of("batch_norm"):
        if "momentum" not in bn.attrs:
            continue
        momentum = bn.attrs["momentum"]
        evidence: dict[str, Any] = {
            "momentum": momentum,
            "convention": "weight of the new batch statistic (PyTorch)",
            "source_momentum": bn.attrs.get("source_momentum"),
            "phase": ctx.phase,
        }
        if momentum is None:
            yield ctx.finding(
                bn,
                "momentum=None: running statistics are a cumulative average over all batches, "
                "right for a re-estimation pass but not for regular training",
                evidence=evidence,
                fix="use a float momentum (PyTorch's default is 0.1) for regular training",
                severity=Severity.INFO,
            )
            continue
        found = _problem(float(momentum), limit)
        if found is None:
            continue
        problem, severity = found
        stored = _stored_note(float(momentum), bn.attrs.get("source_momentum"))
        yield ctx.finding(
            bn,
            f"momentum {float(momentum):.3g}{stored} {problem}",
            evidence=evidence,
            fix="convert the momentum: PyTorch momentum = 1 - Keras/ONNX momentum "
            "(Keras 0.99 -> PyTorch 0.01)",
            severity=severity,
        )
