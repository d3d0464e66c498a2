"""Running a model, for the checks that need numbers (fold verification, BN018).

Loaders attach a *factory* to ``ModelGraph.runner_factory`` when the model can be executed
(onnxruntime for ONNX with the ``ort`` extra, torch for live PyTorch modules). Creating a
runner can be expensive (an ONNX Runtime session), so it happens only when a check asks.
Rules use the protocol below and never import onnxruntime or torch themselves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

PROBE_EXTENT = 32  # size given to symbolic non-batch dimensions
MAX_FEED_BYTES = 256 * 1024**2  # a probe input larger than this is refused, never allocated


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


def make_feeds(
    specs: Sequence[InputSpec],
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    batch: int = 2,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Seeded inputs: standard normal floats, zeros for integers and booleans.

    Symbolic dimensions take ``--input-shape`` values when given, the batch size on axis 0
    and a small probe extent elsewhere.
    """
    rng = np.random.default_rng(seed)
    given = dict(input_shapes or {})
    feeds = {}
    for position, spec in enumerate(specs):
        shape = given.get(spec.name) or (given.get("") if position == 0 else None)
        if shape is None:
            shape = tuple(
                dim if isinstance(dim, int) and dim >= 0 else (batch if axis == 0 else PROBE_EXTENT)
                for axis, dim in enumerate(spec.shape)
            )
        dims = tuple(int(d) for d in shape)
        if any(d < 0 for d in dims) or math.prod(dims) * 8 > MAX_FEED_BYTES:
            raise RunnerUnavailable(
                f"input {spec.name!r} of shape {dims} is too large to probe; "
                "give a smaller one with --input-shape"
            )
        feeds[spec.name] = random_array(rng, dims, spec.dtype)
    return feeds


def random_array(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if dtype in ("float32", "float16", "float64"):
        return rng.standard_normal(shape).astype(dtype)
    if dtype == "bfloat16":
        import ml_dtypes

        return rng.standard_normal(shape).astype(np.float32).astype(ml_dtypes.bfloat16)
    return np.zeros(shape, dtype=dtype)
