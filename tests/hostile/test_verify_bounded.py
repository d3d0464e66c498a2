"""``--verify`` runs the model, in bounded time (issue 12: a few KB that hangs).

A 1 KB model whose Loop has a trip count of 10**12 kept ``bnlint --verify`` running for
ever: in ``onnx.reference`` (pure Python, the only runtime of a plain install) and in ONNX
Runtime, which holds the interpreter while it runs. Now ``onnx.reference`` runs a Loop only
when its trip count is a constant in the file (at most 10,000 iterations, nested Loops
multiplied), and every ONNX Runtime run has a deadline enforced by its terminate flag.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from bnlint.fold.reference_limits import loop_problem
from tests.hostile.runner import assert_behaved, run_attack

TRIP_COUNT = 10**12


def _loop_model(trip_count: int = TRIP_COUNT, as_constant: bool = False) -> onnx.ModelProto:
    """Conv -> BN -> Relu, plus a Loop of ``trip_count`` iterations that adds 0."""
    rng = np.random.default_rng(0)
    weights = [
        nh.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W"),
        nh.from_array(np.ones(4, np.float32), "s"),
        nh.from_array(np.zeros(4, np.float32), "b"),
        nh.from_array(np.zeros(4, np.float32), "m"),
        nh.from_array(np.ones(4, np.float32), "v"),
    ]
    scalars = [
        nh.from_array(np.array(trip_count, np.int64), "M"),
        nh.from_array(np.array(True), "cond"),
        nh.from_array(np.array(0.0, np.float32), "z"),
    ]
    scalar = [h.make_tensor_value_info(n, t, []) for n, t in (("i", T.INT64), ("c_in", T.BOOL))]
    body = h.make_graph(
        [
            h.make_node("Identity", ["c_in"], ["c_out"]),
            h.make_node("Identity", ["a_in"], ["a_out"]),
        ],
        "body",
        [*scalar, h.make_tensor_value_info("a_in", T.FLOAT, [])],
        [
            h.make_tensor_value_info("c_out", T.BOOL, []),
            h.make_tensor_value_info("a_out", T.FLOAT, []),
        ],
    )
    constants = [h.make_node("Constant", [], [t.name], value=t) for t in scalars]
    nodes = [
        *(constants if as_constant else []),
        h.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
        h.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["bn"]),
        h.make_node("Relu", ["bn"], ["r"]),
        h.make_node("Loop", ["M", "cond", "z"], ["acc"], body=body),
        h.make_node("Add", ["r", "acc"], ["y"]),
    ]
    graph = h.make_graph(
        nodes,
        "g",
        [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 8, 8])],
        [h.make_tensor_value_info("y", T.FLOAT, [1, 4, 8, 8])],
        weights + ([] if as_constant else scalars),
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 15)])


def test_verify_without_onnxruntime_does_not_run_an_unbounded_loop(tmp_path: Path) -> None:
    """A plain install (no ONNX Runtime): before, killed at the timeout in onnx.reference."""
    model = tmp_path / "models" / "loop.onnx"
    model.parent.mkdir()
    onnx.save(_loop_model(), model)
    hidden = tmp_path / "no_ort" / "onnxruntime"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('not installed')\n")
    attack = run_attack(
        [model, "--verify"],
        tmp_path,
        watch=[tmp_path / "models"],
        expected_seconds=10,
        env={"PYTHONPATH": str(hidden.parent)},
    )
    assert_behaved(attack, exit_code=1)
    assert "onnx.reference is not run on a Loop unless its trip count" in attack.stdout


@pytest.mark.parametrize(
    ("trip_count", "as_constant", "refused"),
    [(TRIP_COUNT, False, True), (TRIP_COUNT, True, True), (3, True, False), (10_001, False, True)],
)
def test_loop_trip_counts_are_bounded_before_running(
    trip_count: int, as_constant: bool, refused: bool
) -> None:
    problem = loop_problem(_loop_model(trip_count, as_constant).graph)
    assert (problem is not None) is refused


def test_an_onnxruntime_run_stops_at_its_deadline(monkeypatch) -> None:
    pytest.importorskip("onnxruntime")
    from bnlint.onnx import runtime as runtime_onnx
    from bnlint.runtime import RunnerUnavailable

    monkeypatch.setattr(runtime_onnx, "RUN_BASE_SECONDS", 1.0)
    runner = runtime_onnx.OnnxRunner(_loop_model(as_constant=True))
    with pytest.raises(RunnerUnavailable, match="did not finish the model within 1 s"):
        runner.run({"x": np.zeros((1, 3, 8, 8), np.float32)})
    bounded = runtime_onnx.OnnxRunner(_loop_model(3, as_constant=True))
    (output,) = bounded.run({"x": np.zeros((1, 3, 8, 8), np.float32)})
    assert output.shape == (1, 4, 8, 8)


def test_a_discovered_configuration_cannot_multiply_bn018_runs(tmp_path: Path) -> None:
    """BN018 runs the model twice per sample: before, ``samples = batch-size = 100000`` in a
    planted ``.bnlint.toml`` meant 200,000 runs on a batch of 100,000 (killed at the
    timeout); the rule now uses at most 64 samples in a batch of 256."""
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(0)
    weights = [nh.from_array(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), "W")]
    weights += [
        nh.from_array(np.full(4, v, np.float32), n)
        for n, v in zip("sbmv", (1, 0, 0, 1), strict=True)
    ]
    nodes = [
        h.make_node("Conv", ["x", "W"], ["c"]),
        h.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"]),
    ]
    graph = h.make_graph(
        nodes,
        "g",
        [h.make_tensor_value_info("x", T.FLOAT, ["N", 4, 2, 2])],
        [h.make_tensor_value_info("y", T.FLOAT, ["N", 4, 2, 2])],
        weights,
    )
    models = tmp_path / "models"
    models.mkdir()
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 15)]), models / "m.onnx")
    (models / ".bnlint.toml").write_text(
        "[batch-dependent-output]\nsamples = 100000\nbatch-size = 100000\n"
    )
    attack = run_attack([models, "--verify", "--select", "BN018"], tmp_path, expected_seconds=10)
    assert_behaved(attack, exit_code=0)
