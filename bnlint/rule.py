"""The rule contract: what a rule module declares and what ``check`` receives.

A rule module in ``rules/`` (or a plug-in) looks like::

    \"\"\"One-line summary.

    ## What it detects
    ## Why it matters
    ## Example
    ## Fix
    \"\"\"
    RULE = RuleSpec(code="BN003", name="batchnorm-training-mode-at-inference",
                    severity=Severity.ERROR, since="0.1.0", phases=INFERENCE)

    def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]: ...
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from bnlint.findings import Finding, Severity

if TYPE_CHECKING:
    from bnlint.graph import ModelGraph, Node

__all__ = [
    "ALL_PHASES",
    "INFERENCE",
    "PHASES",
    "TRAINING_PHASES",
    "Finding",
    "Rule",
    "RuleContext",
    "RuleInputError",
    "RuleSpec",
    "Severity",
]

PHASES = ("inference", "training", "finetune")
ALL_PHASES = frozenset(PHASES)
INFERENCE = frozenset({"inference"})
TRAINING_PHASES = frozenset({"training", "finetune"})
TARGET_DTYPES = ("float32", "float16", "bfloat16", "int8")
# What a rule reads besides node attributes; the engine schedules it only when the run has
# it. edges / producer_edges / parameters / modules: the graph's (GraphFacts.provides);
# samples: --sample-data; runtime: it runs the model, so only when dynamic checks were
# asked for (--verify).
NEEDS = frozenset({"edges", "producer_edges", "parameters", "modules", "samples", "runtime"})

REQUIRED_SECTIONS = ("What it detects", "Why it matters", "Example", "Fix")
_SECTION = re.compile(r"^## (.+?)\s*$", re.MULTILINE)
DEFAULT_DOCS_URL = "https://bnlint.github.io/bnlint/rules/"
# bnlint's own diagnostics (their documentation: bnlint.diagnostics): code -> (name, severity)
DIAGNOSTIC_SPECS: dict[str, tuple[str, Severity]] = {
    "BN901": ("model-partially-read", Severity.WARNING),
    "BN902": ("rule-crashed", Severity.ERROR),
    "BN903": ("unsupported-construct", Severity.INFO),
    "BN904": ("input-shape-needed", Severity.INFO),
    "BN905": ("verification-incomplete", Severity.INFO),
}


class RuleInputError(Exception):
    """An input the user gave a rule (e.g. ``--sample-data``) is unusable.

    Not a crash of the rule (BN902): the model's lint fails with this one-line message and
    the run exits 2, as for a model that cannot be read.
    """


@dataclass(frozen=True)
class RuleSpec:
    """Static metadata of a rule. ``options`` maps each setting to its default value."""

    code: str
    name: str
    severity: Severity
    since: str
    phases: frozenset[str] = ALL_PHASES
    needs: frozenset[str] = frozenset({"edges"})
    runs_without_phase: bool = False  # parameter rules that also run on bare weights
    options: Mapping[str, Any] = field(default_factory=dict)
    status: str = "stable"
    # False: an opt-in rule, enabled only when a selector names it by code or name (never
    # by ALL or a prefix), for reports people ask for rather than problems to fix.
    enabled_by_default: bool = True
    # A plug-in's own documentation page (absolute http(s) URL); None: no link anywhere.
    # Built-in rules leave it None: their pages live under ``docs-url``.
    url: str | None = None

    @property
    def needs_phase(self) -> bool:
        """False for a rule of every phase (it runs on bare weights too) or one declared
        ``runs_without_phase``; True when a file without a phase (a state dict) skips it."""
        return not (self.runs_without_phase or self.phases == ALL_PHASES)

    def __post_init__(self) -> None:
        object.__setattr__(self, "phases", frozenset(self.phases))
        object.__setattr__(self, "needs", frozenset(self.needs))
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))


CheckFunction = Callable[["ModelGraph", "RuleContext"], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    """A loaded rule: its spec, its check function and its documentation."""

    spec: RuleSpec
    check: CheckFunction
    doc: str
    module: str
    origin: str = "built-in"

    @property
    def code(self) -> str:
        return self.spec.code

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0].strip() if self.doc.strip() else ""

    def sections(self) -> dict[str, str]:
        """The docstring's ``## Heading`` sections, by heading."""
        return doc_sections(self.doc)

    @property
    def is_builtin(self) -> bool:
        """A rule of bnlint itself (``rules/`` or a BN9xx diagnostic), not a plug-in."""
        return self.origin in ("built-in", "diagnostic")

    def url(self, docs_url: str = DEFAULT_DOCS_URL) -> str | None:
        """The rule's documentation page: under ``docs_url`` for bnlint's own rules, the
        page a plug-in declares (``RuleSpec.url``) or None when it declares none."""
        if self.is_builtin:
            return f"{docs_url.rstrip('/')}/{self.code}/"
        return self.spec.url


def doc_sections(doc: str) -> dict[str, str]:
    text = inspect.cleandoc(doc or "")
    matches = list(_SECTION.finditer(text))
    sections: dict[str, str] = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        sections[match.group(1)] = text[match.end() : end].strip()
    return sections


@dataclass
class RuleContext:
    """What a rule's ``check`` may use besides the graph: settings and the run's context."""

    rule: Rule
    phase: str | None
    options: Mapping[str, Any]
    train_batch_size: int | None = None
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    target_dtype: str | None = None
    docs_url: str = DEFAULT_DOCS_URL
    file: str = ""
    verify: bool = False  # dynamic checks (numeric verification, BN018) were requested
    sample_data: str | None = None  # --sample-data: inputs the model serves (BN021)

    def finding(
        self,
        node: Node | None,
        message: str,
        *,
        evidence: Mapping[str, Any] | None = None,
        fix: str | None = None,
        severity: Severity | None = None,
        cause: str | None = None,
    ) -> Finding:
        """Build a finding of this rule about ``node`` (None for the whole model).

        ``cause``: the code of another rule that reports this finding's root cause on the
        same node; when that rule does, this finding is dropped as a repeat.
        """
        location: dict[str, Any] = {"file": self.file}
        if node is not None and node.location is not None:
            location = node.location.to_dict()
        return Finding(
            code=self.rule.code,
            name=self.rule.name,
            severity=severity if severity is not None else self.rule.spec.severity,
            message=message,
            node=(node.name or None) if node is not None else None,
            scope=node.scope if node is not None else None,
            op=node.source_op if node is not None else None,
            location=location,
            evidence=dict(evidence or {}),
            fix=fix,
            url=self.rule.url(self.docs_url),
            order=node.id if node is not None else -1,
            cause=cause,
        )

    def diagnostic(
        self,
        code: str,
        node: Node | None,
        message: str,
        *,
        evidence: Mapping[str, Any] | None = None,
    ) -> Finding:
        """A BN9xx diagnostic (e.g. BN904 input-shape-needed) raised on behalf of this rule."""
        name, severity = DIAGNOSTIC_SPECS[code]
        finding = self.finding(node, message, evidence={"rule": self.rule.code, **(evidence or {})})
        return replace(
            finding,
            code=code,
            name=name,
            severity=severity,
            url=f"{self.docs_url.rstrip('/')}/{code}/",
        )
