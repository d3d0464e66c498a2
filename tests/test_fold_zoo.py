"""The generated zoo (issue 13): nine architecture families x three seeds, each with
statistics from train-mode passes and random affine terms (tests/zoo/fold_zoo.py).

For every model: ``bnlint fold`` folds every BN the plan calls foldable, both levels pass,
and the written model agrees with the original in ONNX Runtime. For one seed per family:
onnxsim, onnxoptimizer and OnnxSlim fold it, and the audit's verdict agrees with a direct
numeric comparison of their output against the original; then one fold in onnxsim's
output is made 10 % wrong and the audit names exactly that BN.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from bnlint.fold import audit, fold_graph, plan, verdict_of
from bnlint.loaders.onnx import build_graph
from tests import fold_models as fm
from tests.zoo import fold_zoo

SEEDS = (1, 2, 3)
# Equal within float32 noise; any real fold bug moves outputs by far more.
DIRECT_TOLERANCE = 1e-4


def _graph(model: onnx.ModelProto, name: str = "m.onnx"):
    return build_graph(model, Path(name), SimpleNamespace())


def _peers(model: onnx.ModelProto) -> dict[str, onnx.ModelProto]:
    import onnxoptimizer
    import onnxsim
    import onnxslim

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        simplified, ok = onnxsim.simplify(model)
        assert ok
        return {
            "onnxsim": simplified,
            "onnxoptimizer": onnxoptimizer.optimize(model, ["fuse_bn_into_conv"]),
            "onnxslim": onnxslim.slim(model),
        }


def _direct(original: onnx.ModelProto, folded: onnx.ModelProto) -> float | None:
    """max |folded - original| / max |original| in ONNX Runtime; None if it cannot load."""
    try:
        return fm.max_relative_error(original, folded)
    except Exception:
        return None


def _corrupt_one_fold(folded: onnx.ModelProto, bn_outputs: set[str]) -> str:
    """Scale a constant of the first node that took over a BN's output by 1.1 (a Conv's
    weight, or the bias Add of a MatMul fold); returns that output's name."""
    initializers = {t.name: t for t in folded.graph.initializer}
    for node in folded.graph.node:
        if not node.output or node.output[0] not in bn_outputs:
            continue
        for name in node.input:
            tensor = initializers.get(name)
            if tensor is not None and np.prod(tensor.dims) > 1:
                values = numpy_helper.to_array(tensor).astype(np.float64) * 1.1
                tensor.CopyFrom(numpy_helper.from_array(values.astype(np.float32), name))
                return node.output[0]
    raise AssertionError("no fold to corrupt")


@pytest.mark.slow
@pytest.mark.parametrize("family", list(fold_zoo.FAMILIES))
def test_zoo_family_folds_and_audits_agree_with_numbers(family: str) -> None:
    for seed, model in fold_zoo.export_seeds(family, SEEDS).items():
        graph = _graph(model)
        foldable = {v.bn.name for v in plan(graph) if v.foldable}
        result = fold_graph(graph)
        verification = result.verification
        assert verification.ok, [r.problem for r in verification.wrong]
        folded = {r.bn.name for r in result.records if r.status == "folded"}
        assert folded == foldable, f"{family}/{seed}: false refusals {foldable - folded}"
        assert verification.numeric_ran and verification.outputs
        assert fm.max_relative_error(model, result.folded) <= DIRECT_TOLERANCE
        if seed != SEEDS[0]:
            continue
        peers = _peers(model)
        for tool, peer in peers.items():
            direct = _direct(model, peer)
            checked = audit(graph, _graph(peer, "peer.onnx")).verification
            agrees = checked.ok == (direct is not None and direct <= DIRECT_TOLERANCE)
            verdicts = [verdict_of(r) for r in checked.records]
            assert agrees, f"{family} {tool}: audit ok={checked.ok}, direct {direct}, {verdicts}"
            assert "folded-wrongly" not in verdicts or not checked.ok
        broken = onnx.ModelProto()
        broken.CopyFrom(result.folded)
        victim = _corrupt_one_fold(broken, {v.bn.outputs[0] for v in plan(graph)})
        assert _direct(model, broken) > 10 * fm.max_relative_error(model, result.folded)
        checked = audit(graph, _graph(broken, "broken.onnx")).verification
        wrong = [r.bn.outputs[0] for r in checked.records if verdict_of(r) == "folded-wrongly"]
        assert wrong == [victim], f"{family}: blamed {wrong}, corrupted {victim}"
