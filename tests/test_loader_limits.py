"""Limits found by fuzzing: refuse before allocating, one clear line instead of a crash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from bnlint.loaders.onnx_const import MAX_FOLD_BYTES, evaluate
from bnlint.runtime import InputSpec, RunnerUnavailable
from tests.zoo.onnx_builder import GraphBuilder


def test_broadcast_that_would_explode_is_not_folded() -> None:
    column, row = np.ones((20000, 1), np.float32), np.ones((1, 20000), np.float32)
    assert MAX_FOLD_BYTES < 20000 * 20000 * 4
    assert evaluate("Add", [column, row], {}, 17) is None
    small = evaluate("Add", [np.ones((4, 1), np.float32), np.ones((1, 3), np.float32)], {}, 17)
    assert small is not None and small[0].shape == (4, 3)


def test_gather_that_would_explode_is_not_folded() -> None:
    data = np.ones((1, 4096), np.float32)
    indices = np.zeros(4096, np.int64)
    assert evaluate("Gather", [data, indices], {"axis": 0}, 17) is None
    assert evaluate("Gather", [data, np.zeros(2, np.int64)], {"axis": 0}, 17)[0].shape == (2, 4096)


def test_missing_optional_inputs_do_not_crash_an_evaluator() -> None:
    assert evaluate("Slice", [np.arange(4), None, None], {}, 17) is None


def test_attribute_of_the_wrong_type_is_one_load_error(tmp_path: Path, run_cli) -> None:
    g = GraphBuilder(opset=15)
    x = g.input("x", [1, 2, 4, 4])
    model = g.model([g.bn(x, name="bn")], infer=False)
    node = model.graph.node[0]
    node.attribute.append(onnx.helper.make_attribute("epsilon", "tiny"))
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    result = run_cli([path], exit_code=2)
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        f"bnlint: error: {path}: node 'bn' (BatchNormalization): an attribute has the wrong type"
    )


def test_probe_inputs_too_large_to_allocate_are_refused() -> None:
    from bnlint.runtime import make_feeds

    with pytest.raises(RunnerUnavailable, match="too large to probe"):
        make_feeds([InputSpec("x", (1, 3, 100_000, 100_000), "float32")])
    feeds = make_feeds([InputSpec("x", ("N", 3, 8, 8), "float32")])
    assert feeds["x"].shape == (2, 3, 8, 8)


def test_junit_escapes_invisible_characters() -> None:
    from bnlint.report.junit import xml_text

    assert xml_text("bn\u202eevil\x07") == "bn\\u202eevil\\x07"
