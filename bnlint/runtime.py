"""Running a model, for the checks that need numbers (fold verification, BN018).

Loaders attach a *factory* to ``ModelGraph.runner_factory`` when the model can be executed
(onnxruntime for ONNX with the ``ort`` extra, torch for live PyTorch modules). Creating a
runner can be expensive (an ONNX Runtime session), so it happens only when a check asks.
Rules use the protocol below and never import onnxruntime or torch themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int | str | None, ...]
    dtype: str


class ModelRunner(Protocol):
    """Executes one model in inference mode on NumPy inputs."""

    @property
    def inputs(self) -> Sequence[InputSpec]: ...

    @property
    def output_names(self) -> Sequence[str]: ...

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...


class RunnerUnavailable(Exception):
    """No runtime can execute this model; the message says why (e.g. install bnlint[ort])."""
