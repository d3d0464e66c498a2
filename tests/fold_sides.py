"""A comparison side for a ModelProto built in a test (types from ONNX shape inference)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import onnx

from bnlint.fold.regional import Side
from bnlint.fold.sides import side
from bnlint.loaders.onnx import build_graph


def side_of(model: onnx.ModelProto) -> Side:
    return side(model, build_graph(model, Path("m.onnx"), SimpleNamespace()))
