"""bnlint: a static analysis linter for Batch Normalization in ONNX and PyTorch models.

``bnlint.lint(target, **settings)`` is the Python API; the ``bnlint`` command is a thin
layer over it. Heavy dependencies are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bnlint._version import __version__

if TYPE_CHECKING:
    from bnlint.findings import Report

__all__ = ["__version__", "lint"]


def lint(target: Any, **settings: Any) -> Report:
    """Lint a path, paths, an ``onnx.ModelProto`` or an ``nn.Module`` (:func:`bnlint.api.lint`)."""
    from bnlint.api import lint as _lint

    return _lint(target, **settings)
