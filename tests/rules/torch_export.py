"""Zoo networks exported to ONNX for the structural rule tests (BN001/002/007/008/009/017).

TorchScript export with BN nodes kept (eval model, ``TrainingMode.PRESERVE``, no constant
folding; or a train-mode model with ``TrainingMode.TRAINING``) costs well under a second per network; the bytes are cached per process so the
rule test files share one export per network and variant.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from functools import cache

import onnx
import torch
from torch import nn

from tests.zoo import torch_models

Mutate = Callable[[nn.Module], None]


@cache
def _export_bytes(name: str, mutate: Mutate | None, dynamo: bool, train: bool) -> bytes:
    model = torch_models.build(name)
    if mutate is not None:
        mutate(model)
    model.train(train)
    example = (torch_models.example_input(name),)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # Expected exporter notices: the TorchScript exporter's deprecation, tracer and
        # in-place-removal warnings of a train-mode export, torch-internal ones under dynamo.
        warnings.simplefilter("ignore")
        if dynamo:
            program = torch.onnx.export(model, example, dynamo=True, optimize=False, verbose=False)
            return program.model_proto.SerializeToString()
        torch.onnx.export(
            model,
            example,
            buffer,
            dynamo=False,
            training=torch.onnx.TrainingMode.TRAINING
            if train
            else torch.onnx.TrainingMode.PRESERVE,
            do_constant_folding=False,
        )
    return buffer.getvalue()


def export_zoo(
    name: str, mutate: Mutate | None = None, *, dynamo: bool = False, train: bool = False
) -> onnx.ModelProto:
    """A fresh ModelProto of zoo network ``name``, with statistics filled, exported in eval
    mode (``train``: in training mode, keeping Dropout and training-mode BN). ``mutate``
    edits the model first; pass a module-level function so the cache can reuse the export."""
    return onnx.load_from_string(_export_bytes(name, mutate, dynamo, train))
