"""BN021 running-stats-data-mismatch: running statistics against the served samples.

The models' running statistics are exactly those of a known input distribution
(tests/drift_cases.py), so in-distribution samples differ only by sampling error.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests import drift_cases as dc
from tests.helpers import Case, check_case

_FOLDER = Path(tempfile.mkdtemp(prefix="bnlint-bn021-"))
atexit.register(shutil.rmtree, _FOLDER, ignore_errors=True)
OFFSET = np.array([1.0, -1.0, 0.5], dtype=np.float32)[None, :, None, None]


def with_samples(name: str, build_model: Callable, make: Callable[[], np.ndarray]):
    """A Case builder that writes the sample file next to returning the model."""
    path = _FOLDER / name

    def build():
        np.save(path, make())
        return build_model()

    return build, {"sample_data": str(path)}


def _case(case_id, model, make, expect, **kwargs) -> Case:
    build, settings = with_samples(f"{case_id}.npy", model, make)
    return Case(case_id, build, expect, settings=settings, **kwargs)


def _linear(stale: bool = False) -> Callable:
    return lambda: dc.LinearNet(0, stale_second=stale).model()


def _gemm():
    return dc.gemm_bn1d()[0]


def _gemm_samples(scale: float = 1.0):
    def make():
        _, mean, std = dc.gemm_bn1d()
        rng = np.random.default_rng(5)
        return ((rng.standard_normal((400, 4)) * std + mean) * scale).astype(np.float32)

    return make


# Class-selective features: 32 equally likely classes, channel k is +-17 for class k and
# N(0, 1) otherwise, so 9/10 of every channel's variance comes from 1 sample in 32.
RARE_CLASSES, RARE_VALUE = 32, 17.0


def _rare_class_features():
    var = (RARE_CLASSES - 1 + RARE_VALUE**2) / RARE_CLASSES  # exactly the mixture's
    return _bn_on_features(np.zeros(RARE_CLASSES), np.full(RARE_CLASSES, var))


def _rare_class_samples(count: int, seed: int, scale: float = 1.0):
    def make():
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((count, RARE_CLASSES))
        classes = rng.integers(0, RARE_CLASSES, count)
        x[np.arange(count), classes] = rng.choice([-RARE_VALUE, RARE_VALUE], count)
        return (x * scale).astype(np.float32)

    return make


POSITIVE = [
    _case(
        "inputs-times-255",
        _linear(),
        lambda: dc.samples(100, 1) * 255,
        ["bn1", "bn2"],
        severity="warning",
        message="running statistics do not match the served data",
    ),
    _case(
        "channels-reversed", _linear(), lambda: dc.samples(200, 2)[:, ::-1].copy(), ["bn1", "bn2"]
    ),
    _case("channel-offsets", _linear(), lambda: dc.samples(200, 3) + OFFSET, ["bn1", "bn2"]),
    _case(
        "second-conv-changed-after-statistics",
        _linear(stale=True),
        lambda: dc.samples(200, 4),
        ["bn2"],
        message="running statistics are stale",
        evidence={"first_mismatch": True, "cause": "stale-statistics"},
    ),
    # a real variance drop where the samples show no rare inputs: still reported at 40
    _case(
        "inputs-times-0.1",
        _linear(),
        lambda: dc.samples(40, 11) * 0.1,
        ["bn1", "bn2"],
    ),
    # ... and on the rare-class layer once the samples are enough to see its rare inputs
    _case(
        "rare-class-features-times-0.1",
        _rare_class_features,
        _rare_class_samples(1500, 1, scale=0.1),
        ["bn"],
        message="input-scale mismatch",
    ),
    _case(
        "bn1d-inputs-tripled",
        _gemm,
        _gemm_samples(3.0),
        ["bn"],
        message="input-scale mismatch",
        evidence={"explanation": "scale"},
    ),
]


def _bn_on_features(mean: np.ndarray, var: np.ndarray):
    """A lone BN on (N, C) features with the given running statistics."""
    from onnx import TensorProto, helper, numpy_helper

    channels = len(mean)
    inits = [
        numpy_helper.from_array(np.asarray(v, np.float32), n)
        for n, v in (("g", np.ones(channels)), ("b", np.zeros(channels)), ("m", mean), ("v", var))
    ]
    graph = helper.make_graph(
        [helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], name="bn")],
        "features",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    return model


def _clustered():
    """A BN on (N, 6) features that cluster by class (4 tight clusters, equally likely): its
    running statistics are the mixture's exactly."""
    mean = _CENTRES.mean(axis=0)
    return _bn_on_features(mean, ((_CENTRES - mean) ** 2).mean(axis=0) + 0.05**2)


# like a classifier head: every feature fires for class 3 and stays near 0 for the others
_CENTRES = np.zeros((4, 6))
_CENTRES[3] = [1.0, 0.8, 1.2, 0.9, 1.1, 1.0]


def _unlucky_draw():
    """8 samples that happen to miss class 3: their spread is mostly within-cluster."""
    rng = np.random.default_rng(4)
    classes = rng.integers(0, 3, 8)
    return (_CENTRES[classes] + rng.normal(0, 0.05, (8, 6))).astype(np.float32)


NEGATIVE = [
    # the t-test would call this a variance collapse; below 30 samples only gross drift counts
    _case("eight-samples-missing-a-class", _clustered, _unlucky_draw, []),
    # 40 samples (t-test regime) miss about 9 of the 32 classes; those channels show a
    # tenth of their variance and a tight spread: the t-test alone reports a collapse
    _case("rare-class-features-missed", _rare_class_features, _rare_class_samples(40, 0), []),
    _case("in-distribution", _linear(), lambda: dc.samples(300, 6), []),
    _case("in-distribution-bn1d", _gemm, _gemm_samples(), []),
    _case(
        # a real shift of 0.1 input standard deviations: measurable, but it does not matter
        "small-shift-below-threshold",
        _linear(),
        lambda: dc.samples(2000, 7, means=dc.MEANS + 0.1 * dc.STDS),
        [],
    ),
    Case("no-sample-data", _linear(), []),
]


def test_cases() -> None:
    for case in POSITIVE + NEGATIVE:
        check_case("BN021", case)


def test_first_layer_names_the_preprocessing_mistake() -> None:
    expectations = {
        "inputs-times-255": ("scale", "input-scale mismatch"),
        "inputs-times-0.1": ("scale", "input-scale mismatch"),
        "channels-reversed": ("permutation", "channel-order mismatch"),
        "channel-offsets": ("offset", "input-offset mismatch"),
    }
    for case in POSITIVE:
        if case.id not in expectations:
            continue
        kind, words = expectations[case.id]
        first, second = check_case("BN021", case)
        assert first.evidence["first_mismatch"] and first.evidence["explanation"] == kind, (
            first.message
        )
        assert words in first.message
        assert not second.evidence["first_mismatch"]
        assert second.evidence["downstream_of"] == "bn1"
        assert "follows the first mismatch at bn1" in second.message


def test_the_fitted_scale_is_the_applied_one() -> None:
    cases = {case.id: case for case in POSITIVE}
    for name, applied in (
        ("inputs-times-255", 255.0),
        ("inputs-times-0.1", 0.1),
        ("bn1d-inputs-tripled", 3.0),
    ):
        (first, *_) = check_case("BN021", cases[name])
        assert abs(first.evidence["explanation_params"]["scale"] / applied - 1) < 0.05


def test_too_few_samples_give_a_note_with_the_count_needed() -> None:
    from bnlint.api import lint

    path = _FOLDER / "three.npy"
    np.save(path, dc.samples(3, 8))
    report = lint(dc.LinearNet(0).model(), select=["BN021"], sample_data=str(path))
    (note,) = report.findings
    assert note.code == "BN905" and "too few to compare" in note.message
    assert note.evidence["samples"] == 3 and note.evidence["samples_needed"] > 3


def test_selecting_bn021_without_samples_says_what_it_needs(run_cli, tmp_path: Path) -> None:
    import onnx

    model = tmp_path / "m.onnx"
    onnx.save(dc.LinearNet(0).model(), str(model))
    named = run_cli([model, "--select", "BN021", "--format", "json"]).json
    (note,) = named["models"][0]["findings"]
    assert note["code"] == "BN905" and "--sample-data" in note["message"]
    everything = run_cli([model, "--format", "json"]).json
    assert not [f for f in everything["models"][0]["findings"] if f["code"] == "BN905"]
