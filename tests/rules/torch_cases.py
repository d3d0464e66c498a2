"""Small PyTorch models for the PyTorch-specific rule tests (BN003, BN004, BN016, BN019),
given to bnlint live (``nn.Module`` + example inputs) or saved as ``.pt2``/TorchScript.

Files go to one temporary folder per test process; every writer saves a deep copy, so a
train-mode export never changes the model a case hands to the live path.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tests.torch_formats import save_onnx, save_pt2, save_script, save_trace

_FOLDER = tempfile.TemporaryDirectory(prefix="bnlint-torch-cases-")
atexit.register(_FOLDER.cleanup)
_COUNTER = itertools.count()
EXAMPLE = (torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)),)


class ConvBN(nn.Module):
    """conv -> bn -> relu, with ``bn`` configurable (class, keyword arguments)."""

    def __init__(self, norm: type[nn.Module] = nn.BatchNorm2d, **norm_kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = norm(8, **norm_kwargs)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def model(
    norm: type[nn.Module] = nn.BatchNorm2d,
    *,
    train: bool = False,
    bn_train: bool | None = None,
    freeze_affine: tuple[bool, bool] = (False, False),
    **norm_kwargs: Any,
) -> nn.Module:
    torch.manual_seed(0)
    built = ConvBN(norm, **norm_kwargs)
    built.train(train)
    if bn_train is not None:
        built.bn.train(bn_train)
    for frozen, name in zip(freeze_affine, ("weight", "bias"), strict=True):
        parameter = getattr(built.bn, name, None)
        if frozen and parameter is not None:
            parameter.requires_grad_(False)
    return built


LIVE = {"example_inputs": EXAMPLE}  # Case settings for a build that returns the module


def live(**kwargs: Any) -> Callable[[], nn.Module]:
    """A Case ``build`` returning ``model(**kwargs)`` itself (use with ``settings=LIVE``)."""
    return lambda: model(**kwargs)


def _path(suffix: str) -> Path:
    return Path(_FOLDER.name) / f"case{next(_COUNTER)}{suffix}"


def saved(fmt: str, prepare: Callable[[nn.Module], Any] | None = None, **kwargs: Any):
    """A Case ``build`` that writes ``model(**kwargs)`` as ``fmt`` and returns the path.

    ``fmt``: ``pt2``, ``script``, ``trace`` or ``onnx``; ``prepare`` edits what is saved
    (e.g. a traced module put in eval mode after tracing).
    """

    @functools.cache  # one file per case and process (the contract test rebuilds cases)
    def build() -> str:
        built = model(**kwargs)
        if fmt == "pt2":
            return str(save_pt2(built, EXAMPLE, _path(".pt2")))
        if fmt == "onnx":
            return str(save_onnx(built, EXAMPLE, _path(".onnx")))
        if fmt == "script":
            return str(save_script(built, _path(".pt")))
        path = _path(".pt")
        if prepare is None:
            return str(save_trace(built, EXAMPLE, path))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on train-mode batch_norm
            traced = torch.jit.trace(built, EXAMPLE, check_trace=False)
        prepare(traced)
        traced.save(str(path))
        return str(path)

    return build


def dynamo_onnx(**kwargs: Any) -> Callable[[], str]:
    """The default (dynamo) ONNX export with BN kept (``optimize=False``)."""

    @functools.cache
    def build() -> str:
        import copy

        built = model(**kwargs)
        path = _path(".onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                copy.deepcopy(built), EXAMPLE, dynamo=True, optimize=False, verbose=False
            )
            program.save(str(path))
        return str(path)

    return build
