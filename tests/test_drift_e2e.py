"""The drift scenario end to end on a trained CNN, through ONNX, module:factory and .pt2.

A small CNN is trained (seeded, a few hundred steps, synthetic data generated here),
exported with its BatchNorms kept, and served: the training distribution, the same
samples x255, with channel offsets, with channels reversed, and — after fine-tuning in
eval mode for a new task with the first block frozen — samples of the new task.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from filelock import FileLock

from bnlint.api import lint
from tests import drift_models as dm

STEPS = 200
SERVED = {
    "train": lambda x: x,
    "x255": lambda x: x * 255,
    "offset": dm.shift_mean,
    "reversed": dm.swap_channels,
}
FIRST = {  # served data -> (first mismatching BN, words of its cause)
    "x255": ("block1.1", "input-scale mismatch"),
    "x0.1": ("block1.1", "input-scale mismatch"),  # a variance drop
    "offset": ("block1.1", "input-offset mismatch"),
    "reversed": ("block1.1", "channel-order mismatch"),
    "finetuned": ("block2.1", "running statistics are stale"),
}


def _build(folder: Path) -> None:
    base = dm.train(seed=0, steps=STEPS)
    torch.save(base.state_dict(), folder / "base.pt")
    dm.export_onnx(base, folder / "base.onnx")
    dm.export_pt2(base, folder / "base.pt2")
    tuned = dm.finetune_in_eval_mode(base, seed=1, steps=STEPS)
    torch.save(tuned.state_dict(), folder / "tuned.pt")
    dm.export_onnx(tuned, folder / "tuned.onnx")
    dm.export_pt2(tuned, folder / "tuned.pt2")
    images, _ = dm.make_data(192, 1234)
    for name, serve in SERVED.items():
        np.savez(folder / f"{name}.npz", x=serve(images))
    # a variance drop from few samples: the unseen-rare-inputs guard must not hide it
    np.savez(folder / "x0.1.npz", x=images[:40] * 0.1)
    np.savez(folder / "task-b.npz", x=dm.make_data(192, 4321, "b")[0])
    np.savez(folder / "task-b-held-out.npz", x=dm.make_data(192, 8765, "b")[0])
    (folder / "factories.py").write_text(
        textwrap.dedent(
            f"""
            import sys
            import torch
            sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
            from tests.drift_models import DriftNet, make_data

            def _load(name):
                model = DriftNet()
                path = {str(folder)!r} + "/" + name
                model.load_state_dict(torch.load(path, weights_only=True))
                return model.eval()

            def base():
                return _load("base.pt")

            def tuned():
                return _load("tuned.pt")

            example_inputs = (torch.from_numpy(make_data(2, 0)[0]),)
            """
        )
    )


@pytest.fixture(scope="session")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained once per test run, shared by the xdist workers through a file lock."""
    base = tmp_path_factory.getbasetemp()
    if base.name.startswith("popen-gw"):  # an xdist worker: share the run's folder
        base = base.parent
    folder = base / "bnlint-drift-scenario"
    folder.mkdir(exist_ok=True)
    with FileLock(str(folder / ".lock")):
        if not (folder / ".done").exists():
            _build(folder)
            (folder / ".done").touch()
    return folder


def _verdict(target: str, samples: Path, **settings) -> list[tuple[str, bool, str]]:
    report = lint(target, select=["BN021"], sample_data=str(samples), **settings)
    assert all(model.status == "ok" for model in report.models), report.models[0].error
    return _summary(report.findings)


def _summary(findings) -> list[tuple[str, bool, str]]:
    found = [f for f in findings if f.code == "BN021"]
    return [(f.scope or f.node, bool(f.evidence["first_mismatch"]), f.message) for f in found]


def _verdicts_of_one_load(target: str, files: dict[str, Path], **values) -> dict[str, list]:
    """Load once, then lint against each sample file (the PyTorch loaders trace or load an
    exported program, which costs seconds; the drift check itself does not)."""
    from dataclasses import replace

    from bnlint.api import SettingsResolver
    from bnlint.engine import run_rules
    from bnlint.loaders import load_model

    resolver = SettingsResolver({"select": ("BN021",), **values})
    settings, ruleset = resolver.resolve(target.split(":")[0])
    graph = load_model(target, settings)
    return {
        served: _summary(run_rules(graph, replace(settings, sample_data=str(path)), ruleset))
        for served, path in files.items()
    }


def _check(verdict: list, served: str) -> None:
    if served == "train":
        assert verdict == []
        return
    first_bn, words = FIRST[served]
    firsts = [(bn, message) for bn, first, message in verdict if first]
    assert [bn for bn, _ in firsts] == [first_bn], verdict
    assert words in firsts[0][1]
    reported = [bn for bn, _, _ in verdict]
    assert reported[0] == first_bn  # graph order: nothing above the first mismatch
    if served == "finetuned":
        assert "block1.1" not in reported


@pytest.mark.parametrize("served", [*SERVED, "x0.1", "finetuned"])
def test_onnx_verdicts(scenario: Path, served: str) -> None:
    model = scenario / ("tuned.onnx" if served == "finetuned" else "base.onnx")
    samples = scenario / ("task-b.npz" if served == "finetuned" else f"{served}.npz")
    _check(_verdict(str(model), samples), served)


@pytest.mark.parametrize("front_end", ["module:factory", ".pt2"])
def test_pytorch_front_ends_give_the_same_verdicts(scenario: Path, front_end: str) -> None:
    for name, served_here in (("base", list(SERVED)), ("tuned", ["finetuned"])):
        files = {
            served: scenario / ("task-b.npz" if served == "finetuned" else f"{served}.npz")
            for served in served_here
        }
        if front_end == ".pt2":
            target, values = str(scenario / f"{name}.pt2"), {"trust_model_code": True}
        else:
            target, values = f"{scenario / 'factories.py'}:{name}", {}
        with dm.one_thread():  # a tiny model: threads only contend (make test runs -n 2)
            verdicts = _verdicts_of_one_load(target, files, **values)
        for served, verdict in verdicts.items():
            onnx_verdict = _verdict(str(scenario / f"{name}.onnx"), files[served])
            assert [(bn, first) for bn, first, _ in verdict] == [
                (bn, first) for bn, first, _ in onnx_verdict
            ], served
            _check(verdict, served)


@pytest.mark.parametrize("target", ["tuned.onnx", "tuned.pt2"], ids=["onnx", "pt2"])
def test_recalibrate_fixes_stale_statistics_on_held_out_samples(
    run_cli, scenario: Path, tmp_path: Path, target: str
) -> None:
    source = f"{scenario / target}"
    suffix = ".onnx" if target.endswith(".onnx") else ".pt2"
    out = tmp_path / f"recalibrated{suffix}"
    trust = [] if suffix == ".onnx" else ["--trust-model-code"]
    held_out = scenario / "task-b-held-out.npz"
    with dm.one_thread():
        run_cli([source, "--sample-data", held_out, "--select", "BN021", *trust], exit_code=1)
        run_cli(
            ["recalibrate", source, "--sample-data", scenario / "task-b.npz", "-o", out, *trust]
        )
        result = run_cli(
            [out, "--sample-data", held_out, "--select", "BN021", "--format", "json", *trust]
        )
    assert result.json["summary"]["findings"] == 0


def test_every_front_end_writes_the_same_statistics(
    run_cli, scenario: Path, tmp_path: Path
) -> None:
    """module:factory writes a state dict (loadable with weights_only=True) holding the
    statistics the ONNX path writes for the same model and samples."""
    import onnx
    from onnx import numpy_helper

    samples = scenario / "task-b.npz"
    run_cli(
        [
            "recalibrate",
            scenario / "tuned.onnx",
            "--sample-data",
            samples,
            "-o",
            tmp_path / "r.onnx",
        ]
    )
    factory = f"{scenario / 'factories.py'}:tuned"
    with dm.one_thread():
        run_cli(["recalibrate", factory, "--sample-data", samples, "-o", tmp_path / "r.pt"])
    state = torch.load(tmp_path / "r.pt", weights_only=True)
    written = onnx.load(str(tmp_path / "r.onnx"))
    inits = {t.name: numpy_helper.to_array(t) for t in written.graph.initializer}
    names = [
        n.input[i] for n in written.graph.node if n.op_type == "BatchNormalization" for i in (3, 4)
    ]
    assert len(names) == 8 and all(name in state for name in names)  # exported under FQNs
    for name in names:
        np.testing.assert_allclose(state[name].numpy(), inits[name], rtol=2e-4, atol=1e-5)


def test_an_exported_program_runs_only_with_trust(scenario: Path) -> None:
    report = lint(
        str(scenario / "base.pt2"), select=["BN021"], sample_data=str(scenario / "x255.npz")
    )
    (note,) = report.findings
    assert note.code == "BN905" and "--trust-model-code" in note.message
