"""A conv or linear layer feeds an activation without the normalization its peers have.

## What it detects
A Conv, ConvTranspose, Gemm or MatMul (+ bias Add) layer whose output reaches a hidden
activation (ReLU, GELU, SiLU, Clip/ReLU6 …) through shape-transparent ops, poolings,
padding and residual Adds with no normalization on the way, in a network that normalizes
most of its comparable layers: of all layers whose output reaches a hidden activation, the
share with a norm (BatchNorm, LayerNorm, GroupNorm …) before the activation, or right
after it (the conv → ReLU → BN ordering), must exceed `min-normalized-fraction`.
A layer whose only activation sits at a graph output (a sigmoid or tanh output head), is a
gate (a sigmoid multiplying another tensor, as in squeeze-excitation), or that has none at
all (a classifier head, softmax) is not comparable and never reported. Layers on globally
pooled or flattened features (SE branches, MLP classifier heads) are skipped with
`skip-pooled`, and so are layers whose input comes straight from a per-sample norm
(LayerNorm/GroupNorm/InstanceNorm/RMSNorm): a pre-norm design such as a transformer
feed-forward block normalizes before the layer on purpose.

## Why it matters
In a network built as conv → norm → activation, a layer that skips the norm gets an input
distribution no other layer sees: its pre-activations drift in scale during training, the
activation saturates or dies, and the layer trains at a different effective learning
rate. It is usually a forgotten `nn.BatchNorm2d` in one block or a copy-paste slip.
A network with no normalization at all (or with BN already folded by the exporter) has no
pattern to deviate from, so nothing is reported.

## Example
A ResNet block where `bn1` was replaced by `nn.Identity()`: `layer1.0.conv1 → Relu` while
every other conv goes through a BatchNormalization; also `conv → Add → Relu` where the
conv's residual branch has no norm.

## Fix
Add the missing normalization after the layer (`nn.BatchNorm2d(out_channels)` and
`bias=False` on the conv). If the layer is meant to be unnormalized (a stem, a detection
head), ignore it with `ignore` or a per-node ignore.

## Options
- `min-normalized-fraction` (default 0.5): report only when more than this share of the
  comparable layers is normalized.
- `skip-pooled` (default true): skip layers on globally pooled or flattened features
  (squeeze-excitation branches, classifier heads).
- `ignore` (default []): regular expressions matched against the layer's module path and
  node name; matching layers are neither reported nor counted (stems, heads).
"""

from __future__ import annotations

from collections.abc import Iterator

from bnlint.analysis.graph_walks import (
    NORM_OPS,
    TRANSPARENT_OPS,
    data_input,
    pooled_tensors,
    reaches_graph_output,
    walk_back,
    walk_forward,
)
from bnlint.config.patterns import NamePatterns
from bnlint.graph import ModelGraph, Node
from bnlint.rule import ALL_PHASES, Finding, RuleContext, RuleSpec, Severity

RULE = RuleSpec(
    code="BN001",
    name="missing-norm-before-activation",
    severity=Severity.WARNING,
    since="0.1.0",
    phases=ALL_PHASES,
    options={"min-normalized-fraction": 0.5, "skip-pooled": True, "ignore": []},
)

PRODUCERS = ("conv", "conv_transpose", "linear")
# Between a layer and its norm or activation: layout ops, poolings, padding, resizing.
_BETWEEN = TRANSPARENT_OPS | {"pool", "pad", "resize"}
_PER_SAMPLE_NORMS = NORM_OPS - {"batch_norm"}
_GATE_KINDS = frozenset({"sigmoid", "hard_sigmoid", "tanh"})
_RESIDUAL_ADDS = 3  # residual Adds crossed between a layer and its activation


def _reach(graph: ModelGraph, tensor: str | None) -> tuple[list, list]:
    """Activations and norms reachable from ``tensor`` without crossing another layer."""
    activations, norms = [], []
    frontier = [(tensor, ())]
    crossed: set[int] = set()
    for _ in range(_RESIDUAL_ADDS + 1):
        following = []
        for start, path in frontier:
            for walk in walk_forward(graph, start, _BETWEEN, constants=True):
                node, passed = walk.node, (*path, *walk.through)
                if node is None:
                    continue
                if node.op == "add" and node.outputs:
                    if node.id not in crossed:
                        crossed.add(node.id)
                        following.append((node.outputs[0], (*passed, node)))
                elif node.op in NORM_OPS:
                    norms.append((node, passed))
                elif node.op == "activation":
                    activations.append((node, passed))
        frontier = following
    return activations, norms


def _is_hidden(graph: ModelGraph, activation: Node) -> bool:
    """An activation inside the network: not an output head, not a multiplicative gate."""
    out = activation.outputs[0] if activation.outputs else None
    if out is None or reaches_graph_output(graph, out, _BETWEEN):
        return False
    if activation.attrs.get("kind") in _GATE_KINDS:
        source = data_input(activation)
        for consumer in graph.consumers(out):
            if consumer.op == "mul" and any(t not in (out, source) for t in consumer.inputs):
                return False  # gates another tensor (SE, attention); x * sigmoid(x) is SiLU
    return True


def _classify(graph: ModelGraph, producer: Node) -> tuple[str, Node | None, tuple]:
    """``unnormalized`` (with the activation), ``normalized`` or ``neutral``."""
    activations, norms = _reach(graph, producer.outputs[0] if producer.outputs else None)
    for activation, path in activations:
        if not _is_hidden(graph, activation):
            continue
        after = _norm_after(graph, activation)
        if after is not None:  # conv -> activation -> norm: normalized after the activation
            return "normalized", after, ()
        return "unnormalized", activation, path
    for norm, _ in norms:
        after, _ = _reach(graph, norm.outputs[0] if norm.outputs else None)
        if any(_is_hidden(graph, activation) for activation, _ in after):
            return "normalized", norm, ()
    return "neutral", None, ()


def _norm_after(graph: ModelGraph, activation: Node) -> Node | None:
    """The norm that directly follows ``activation`` (the conv → act → norm ordering)."""
    for walk in walk_forward(graph, activation.outputs[0], _BETWEEN):
        if walk.node is not None and walk.node.op in NORM_OPS:
            return walk.node
    return None


def _skipped(graph: ModelGraph, producer: Node, ctx: RuleContext, patterns: NamePatterns) -> bool:
    labels = [label for label in (producer.scope, producer.name) if label]
    if any(patterns.search(label) for label in labels):
        return True
    source = data_input(producer)
    if ctx.options["skip-pooled"] and source in pooled_tensors(graph):
        return True
    upstream = walk_back(graph, source, TRANSPARENT_OPS).node
    return upstream is not None and upstream.op in _PER_SAMPLE_NORMS


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    # linear-time matching: the patterns may come from a discovered configuration
    patterns = NamePatterns(ctx.options["ignore"], f"{RULE.name}.ignore")
    verdicts = [(producer, *_classify(graph, producer)) for producer in graph.nodes_of(*PRODUCERS)]
    kinds = {verdict[1] for verdict in verdicts}
    if "unnormalized" not in kinds or "normalized" not in kinds:
        # Skipping only removes layers: nothing to report either way, and the pooled-tensor
        # pass (which needs shape inference over the whole graph) is not needed.
        return
    verdicts = [v for v in verdicts if not _skipped(graph, v[0], ctx, patterns)]
    normalized = [v for v in verdicts if v[1] == "normalized"]
    missing = [v for v in verdicts if v[1] == "unnormalized"]
    comparable = len(normalized) + len(missing)
    if not missing or not normalized:
        return
    fraction = len(normalized) / comparable
    threshold = float(ctx.options["min-normalized-fraction"])
    if fraction <= threshold:
        return
    norm_kinds = sorted({v[2].source_op for v in normalized})
    for producer, _, activation, path in missing:
        via = "".join(f"{node.source_op} → " for node in path)
        yield ctx.finding(
            producer,
            f"{producer.source_op} {producer.display_name!r} feeds {via}{activation.source_op} "
            f"{activation.display_name!r} with no normalization in between, while "
            f"{len(normalized)} of {comparable} comparable layers are normalized "
            f"({', '.join(norm_kinds)})",
            evidence={
                "activation": activation.name,
                "activation_kind": activation.attrs.get("kind"),
                "through": [node.source_op for node in path],
                "normalized_layers": len(normalized),
                "comparable_layers": comparable,
                "normalized_fraction": round(fraction, 4),
                "norm_ops": norm_kinds,
            },
            fix=f"add a {norm_kinds[0]} between the layer and its activation "
            "(and drop the layer's bias), or ignore the layer if it is meant to be unnormalized",
        )
