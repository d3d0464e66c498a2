"""Folding BatchNorm into its neighbours, verifying folds, auditing other tools' folds.

The one door to the package. Every name loads on first use: the command line registers
``bnlint fold``/``bnlint verify`` without importing NumPy, and linting without ``--verify``
never imports the fold engine, verification or the audit.

- :func:`plan` gives every BN a :class:`FoldVerdict` (foldable into what, or why not).
- :func:`fold_graph` folds a loaded model on a copy and verifies it (:class:`FoldResult`).
- :func:`audit` checks a fold made by any tool against the original model.
- :func:`record_findings`, :func:`verification_section` and :func:`verdict_of` turn a
  :class:`Verification` into findings (BN012: wrong folds only) and the verification
  section every report shows (one verdict per BN, with bound, error and margin).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bnlint.fold.auditor import Audit, audit
    from bnlint.fold.engine import check_onnx, fold_graph, verification_of, verify_graph
    from bnlint.fold.report import (
        record_findings,
        verdict_of,
        verification_section,
    )
    from bnlint.fold.results import FoldError, FoldResult, Verification
    from bnlint.fold.verdicts import (
        KIND_LABEL,
        FoldRecord,
        FoldVerdict,
        bn_channels,
        output_channels,
        plan,
    )

_LAZY = {
    "KIND_LABEL": "bnlint.fold.verdicts",
    "FoldRecord": "bnlint.fold.verdicts",
    "FoldVerdict": "bnlint.fold.verdicts",
    "bn_channels": "bnlint.fold.verdicts",
    "output_channels": "bnlint.fold.verdicts",
    "plan": "bnlint.fold.verdicts",
    "Audit": "bnlint.fold.auditor",
    "audit": "bnlint.fold.auditor",
    "check_onnx": "bnlint.fold.engine",
    "fold_graph": "bnlint.fold.engine",
    "verify_graph": "bnlint.fold.engine",
    "verification_of": "bnlint.fold.engine",
    "verification_section": "bnlint.fold.report",
    "record_findings": "bnlint.fold.report",
    "verdict_of": "bnlint.fold.report",
    "FoldError": "bnlint.fold.results",
    "FoldResult": "bnlint.fold.results",
    "Verification": "bnlint.fold.results",
}

__all__ = [
    "KIND_LABEL",
    "Audit",
    "FoldError",
    "FoldRecord",
    "FoldResult",
    "FoldVerdict",
    "Verification",
    "audit",
    "bn_channels",
    "check_onnx",
    "fold_graph",
    "output_channels",
    "plan",
    "record_findings",
    "verdict_of",
    "verification_of",
    "verification_section",
    "verify_graph",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bnlint.fold' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
