"""A :class:`bnlint.runtime.ModelRunner` for live PyTorch modules.

The runner owns a deep copy of the model in eval mode, so running it (fold verification,
BN018) never touches the user's module or its running statistics.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bnlint.runtime import InputSpec, RunnerUnavailable


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [item for part in value for item in _flatten(part)]
    if isinstance(value, Mapping):
        return [item for part in value.values() for item in _flatten(part)]
    return [value]


def _numpy(tensor: Any) -> np.ndarray:
    import torch

    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.numpy().copy()


class TorchRunner:
    """Runs a private eval-mode copy of a module under ``torch.no_grad()``."""

    def __init__(self, module: Any, inputs: Sequence[InputSpec], output_names: Sequence[str]):
        self._module = module
        self._inputs = list(inputs)
        self._output_names = list(output_names)

    @classmethod
    def from_module(
        cls, module: Any, example_inputs: Sequence[Any], input_names: Sequence[str] | None = None
    ) -> TorchRunner:
        import torch

        try:
            private = copy.deepcopy(module)
        except Exception as error:
            raise RunnerUnavailable(f"the model cannot be copied to run it: {error}") from None
        # Each module keeps the mode it was recorded in: a model served after `model.eval()`
        # with one BN switched back to train mode must run exactly like that (BN018).
        names = list(input_names or [])
        names += [f"input_{i}" for i in range(len(names), len(example_inputs))]
        specs = []
        for name, value in zip(names, example_inputs, strict=False):
            if not isinstance(value, torch.Tensor):
                raise RunnerUnavailable(f"example input {name!r} is not a tensor")
            dtype = str(value.dtype).replace("torch.", "")
            specs.append(InputSpec(name, tuple(int(d) for d in value.shape), dtype))
        with torch.no_grad():
            outputs = _flatten(private(*example_inputs))
        output_names = [f"output_{i}" for i in range(len(outputs))]
        return cls(private, specs, output_names)

    @property
    def inputs(self) -> Sequence[InputSpec]:
        return self._inputs

    @property
    def output_names(self) -> Sequence[str]:
        return self._output_names

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        tensors = [
            torch.from_numpy(np.ascontiguousarray(feeds[spec.name])) for spec in self._inputs
        ]
        with torch.no_grad():
            outputs = _flatten(self._module(*tensors))
        return [_numpy(item) for item in outputs if isinstance(item, torch.Tensor)]
