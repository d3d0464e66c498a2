"""The plug-in API: every name a rule outside bnlint may import, from this one module.

A plug-in rule (a ``--rules-dir`` module or a package registered under the
``bnlint.rules`` entry-point group) imports from ``bnlint.plugin`` only; these names keep
their meaning across minor releases, wherever bnlint's own modules move. Nothing else in
bnlint is promised. The guide: docs/plugins.md.

- the rule contract: :class:`RuleSpec`, ``check(graph, ctx)`` receiving a
  :class:`RuleContext`, returning :class:`Finding` objects built by ``ctx.finding``;
  :class:`Severity`, the phase sets, :data:`NEEDS`, :class:`RuleInputError`;
- the graph a rule reads: :class:`ModelGraph` (``graph.nx`` is its networkx view),
  :class:`Node`, :class:`Tensor`, :class:`GraphFacts`, :class:`BatchSize`,
  :class:`Location`, :data:`Shape`, the op vocabulary (:data:`CANONICAL_OPS`,
  :data:`NORM_OPS`, :data:`ROLES`) and :class:`UnreadableParameter`;
- helpers the built-in rules use: :func:`bn_params` (a BatchNorm's parameters as float64
  arrays, size-checked) and the bounded walks :func:`walk_back` / :func:`walk_forward`.
"""

from __future__ import annotations

from bnlint.analysis.bn_params import BNParams, bn_params
from bnlint.analysis.graph_walks import TRANSPARENT_OPS, Walk, walk_back, walk_forward
from bnlint.findings import Finding, Severity
from bnlint.graph import (
    CANONICAL_OPS,
    NORM_OPS,
    ROLES,
    BatchSize,
    GraphFacts,
    Location,
    ModelGraph,
    Node,
    Shape,
    Tensor,
    UnreadableParameter,
)
from bnlint.rule import (
    ALL_PHASES,
    INFERENCE,
    NEEDS,
    PHASES,
    TRAINING_PHASES,
    RuleContext,
    RuleInputError,
    RuleSpec,
)

__all__ = [
    "ALL_PHASES",
    "CANONICAL_OPS",
    "INFERENCE",
    "NEEDS",
    "NORM_OPS",
    "PHASES",
    "ROLES",
    "TRAINING_PHASES",
    "TRANSPARENT_OPS",
    "BNParams",
    "BatchSize",
    "Finding",
    "GraphFacts",
    "Location",
    "ModelGraph",
    "Node",
    "RuleContext",
    "RuleInputError",
    "RuleSpec",
    "Severity",
    "Shape",
    "Tensor",
    "UnreadableParameter",
    "Walk",
    "bn_params",
    "walk_back",
    "walk_forward",
]
