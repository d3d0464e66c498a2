"""What a ModelGraph knows about its model besides nodes and tensors: the facts the file
states (format, mode, batch sizes, what could be read), what the front end keeps of the
model itself, and the values rules derive from it once per run (see :mod:`bnlint.graph`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class BatchSize:
    value: int
    source: str  # e.g. "input shape of 'x'", "--train-batch-size", "example input"


@dataclass
class GraphFacts:
    """What the model file says about itself (format, opset, mode, batch sizes)."""

    format: str
    opset: int | None = None
    producer: str | None = None
    ir_version: int | None = None
    mode: str | None = None  # "inference" | "training" | None when the file cannot say
    default_phase: str | None = "inference"
    batch_sizes: dict[str, BatchSize] = field(default_factory=dict)
    has_edges: bool = True
    # Producer -> BN edges only (a state dict's conv1 -> bn1), enough for rules that
    # declare the need "producer_edges"; implied by has_edges.
    has_producer_edges: bool = False
    has_parameters: bool = True
    has_modules: bool = False
    partial: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    # What a reader inferred rather than read (edges from names and shapes): a note in
    # BN901, not a warning, and every finding resting on it says so (engine.mark_inferred)
    inferred: list[str] = field(default_factory=list)

    def provides(self, need: str) -> bool:
        """Whether the graph has what a rule declaring ``need`` in ``RuleSpec.needs`` reads
        (``samples`` is the run's, not the graph's: see the engine)."""
        if need == "producer_edges":  # read edges, or producer -> BN edges inferred from names
            return self.has_edges or self.has_producer_edges
        return bool(getattr(self, _GRAPH_NEEDS[need]))


_GRAPH_NEEDS = {"edges": "has_edges", "parameters": "has_parameters", "modules": "has_modules"}


@dataclass
class ModelSource:
    """What a front end keeps of the model itself for the parts that run or rewrite it
    (fold, verification, drift). Written by :mod:`bnlint.loaders` only; rules never read it."""

    onnx_model: Any = None  # the onnx.ModelProto (ONNX front end)
    file_buffer: Any = None  # the model file's bytes, memory-mapped (e.g. to hash)
    data_files: list[str] = field(default_factory=list)  # external data files it read
    torch_module: Any = None  # the live nn.Module (entry point, --trust-model-code)
    example_inputs: Any = None  # the module's example inputs, when known


@dataclass
class GraphCache:
    """Values derived from the graph once and shared by the rules of a run. Each field has
    one owner, the module named beside it, which alone writes it."""

    bn_arrays: Any = None  # bnlint.analysis.bn_arrays: every BN's parameters in flat arrays
    bn_affine_terms: Any = None  # bnlint.analysis.bn_arrays: (mult, shift), non-finite ids
    bn_params: dict[int, Any] = field(default_factory=dict)  # bnlint.analysis.bn_params.bn_params
    weight_absmax: dict[Any, Any] = field(default_factory=dict)  # bnlint.analysis.weight_absmax
    pooled_tensors: frozenset[str] | None = None  # bnlint.analysis.graph_walks.pooled_tensors
    fold_plan: Any = None  # bnlint.fold.verdicts.plan
    fold_consumer_counts: dict[Any, Any] = field(default_factory=dict)  # bnlint.fold.verdicts
    drift_profile: Any = None  # bnlint.drift.check (BN021), drawn by the HTML report
    drift_key: Any = None  # the samples and thresholds drift_profile was measured with
