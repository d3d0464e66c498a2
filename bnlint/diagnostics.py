"""bnlint's own diagnostics (BN9xx): reported by the engine and loaders, not by rules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bnlint.findings import Finding, Severity
from bnlint.graph import ModelGraph
from bnlint.rule import DEFAULT_DOCS_URL, DIAGNOSTIC_SPECS, Rule, RuleSpec

_DOCS: dict[str, str] = {
    "BN901": """Part of the model could not be read, so some rules could not run on it.

## What it detects
A part of the model that bnlint skipped: a subgraph it could not parse, a tensor whose
data is unreadable, a PyTorch module that could not be traced. The finding says what
was skipped and which rules could therefore not run.

## Why it matters
A clean report on a partially read model is not a clean model: the skipped part was not
checked.

## Example
A TorchScript archive read statically has a module tree and weights but no edges, so the
graph rules (BN001, BN007, BN008, BN011, BN017) cannot run without `--trust-model-code`.

## Fix
Provide what is missing (`--trust-model-code` for a trusted archive, `--input-shape` for
tracing) or accept the partial check knowingly by ignoring BN901.
""",
    "BN902": """A rule raised an exception; the run went on without it.

## What it detects
An internal error in a rule (built-in or plug-in) while checking this model. The finding
names the rule and the exception; `--debug` prints the traceback.

## Why it matters
The crashed rule's checks did not happen on this model.

## Example
A plug-in rule that indexes a parameter the model does not have.

## Fix
Report the bug with the model (or a reduced version) and the `--debug` output; ignore the
code meanwhile if it blocks a gate.
""",
    "BN903": """The model uses a construct bnlint does not analyse.

## What it detects
Operators from custom domains, or constructs such as sparse initializers, that bnlint
keeps as opaque nodes.

## Why it matters
Rules treat opaque nodes conservatively: a BN fed by a custom op is reported as not
foldable, and patterns through it are not recognised.

## Example
A `com.example::FusedConvBN` node.

## Fix
Nothing to fix in the model; ignore BN903 if the construct is expected.
""",
    "BN904": """A check needs an input shape the model does not declare.

## What it detects
A rule that depends on a concrete shape (batch size, spatial size) found only symbolic
dimensions and was given none.

## Why it matters
Without the shape the check is skipped on that node.

## Example
`BN002` on a training graph whose batch dimension is `batch_size`.

## Fix
Pass `--input-shape NAME:1x3x224x224` (or set `input-shape` in the configuration).
""",
    "BN905": """Verification ran at a reduced level.

## What it detects
The numeric verification level could not run (for example the `ort` extra is not
installed), so only the algebraic level was checked.

## Why it matters
The algebraic check proves each fold's arithmetic but not the rewritten graph as a whole.

## Example
`bnlint fold model.onnx -o folded.onnx` without onnxruntime installed.

## Fix
`pip install 'bnlint[ort]'` for ONNX models (torch is used for PyTorch models).
""",
}


def _noop(graph: ModelGraph, ctx: Any) -> Iterable[Finding]:
    return ()


DIAGNOSTICS: dict[str, Rule] = {
    code: Rule(
        spec=RuleSpec(code=code, name=name, severity=severity, since="0.1.0", needs=frozenset()),
        check=_noop,
        doc=_DOCS[code],
        module=__name__,
        origin="diagnostic",
    )
    for code, (name, severity) in DIAGNOSTIC_SPECS.items()
}


def diagnostic(
    code: str,
    message: str,
    *,
    file: str,
    evidence: dict[str, Any] | None = None,
    node: str | None = None,
    docs_url: str = DEFAULT_DOCS_URL,
    severity: Severity | None = None,
) -> Finding:
    """A BN9xx finding about the model as a whole (or a named node)."""
    rule = DIAGNOSTICS[code]
    return Finding(
        code=code,
        name=rule.name,
        severity=severity if severity is not None else rule.spec.severity,
        message=message,
        node=node,
        location={"file": file},
        evidence=dict(evidence or {}),
        url=rule.url(docs_url),
    )
