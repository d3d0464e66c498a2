"""bnlint: a static analysis linter for Batch Normalization in ONNX and PyTorch models."""

from bnlint._version import __version__

__all__ = ["__version__"]
