"""Command-line habits of ruff and pytest, and summaries that never contradict themselves.

Each test here is an observation of issue 15 ("signal over noise"), run through the real
command line: a typo of a subcommand, an empty folder, an input name that does not exist,
a Git LFS pointer, a Python file without its factory, a configuration key misspelled, a
report written into a folder that does not exist yet, a run whose only model is
unreadable or a bare state dict or has no BatchNorm at all.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest
import tomllib

from tests.zoo import onnx_zoo
from tests.zoo.onnx_builder import GraphBuilder

LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    "size 102400\n"
)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return onnx_zoo.resnet_opset15(tmp_path / "models")  # healthy: 3 BatchNorms


@pytest.mark.parametrize(("typo", "command"), [("chek", "check"), ("explian", "explain")])
def test_a_misspelled_subcommand_is_not_a_path(
    run_cli, model: Path, typo: str, command: str
) -> None:
    result = run_cli([typo, model], exit_code=2)
    assert result.stderr == (
        f"bnlint: error: no such command {typo!r}; did you mean {command!r}? "
        "(see `bnlint --help`)\n"
    )


def test_a_file_named_like_a_command_typo_is_still_linted(
    run_cli, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chek").write_bytes(model.read_bytes())
    assert run_cli(["chek"], exit_code=0).stdout.startswith("All checks passed: 1 model")


@pytest.mark.parametrize("content", [None, "README.md", "weights.pth.tar"])
def test_a_folder_without_model_files_is_exit_2(
    run_cli, model: Path, tmp_path: Path, content: str | None
) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    if content is not None:
        (folder / content).write_bytes(model.read_bytes())
    result = run_cli([folder, "--format", "json"], exit_code=2)
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"bnlint: error: {folder}: no model files found under it (include = ")
    assert ("left out: weights.pth.tar" in line) == (content == "weights.pth.tar")
    (entry,) = result.json["models"]
    assert (entry["status"], entry["format"]) == ("error", "folder")
    text = run_cli([folder], exit_code=2).stdout
    assert text == "Nothing checked: 1 folder held no model file.\n"


def test_files_the_walk_leaves_out_are_named(run_cli, model: Path) -> None:
    (model.parent / "backup.pth.tar").write_bytes(model.read_bytes())
    (model.parent / "notes.txt").write_text("not a model")
    result = run_cli([model.parent], exit_code=0)
    assert result.stderr == (
        f"bnlint: note: {model.parent}: not linted: backup.pth.tar (names outside "
        "`include`, or symlinks out of the folder; name a file on the command line to lint it)\n"
    )
    assert run_cli([model.parent, "-q"], exit_code=0).stderr == ""
    linted = run_cli([model.parent / "backup.pth.tar"], exit_code=0).stdout
    assert linted.startswith("All checks passed: 1 model, 3 BatchNorms")


def test_an_input_shape_naming_no_input_is_exit_2(run_cli, model: Path) -> None:
    result = run_cli([model, "--input-shape", "nosuch:1x3x8x8"], exit_code=2)
    assert result.stderr == (
        f"bnlint: error: {model}: --input-shape names no input of this model: 'nosuch' "
        "(its inputs: x; a bare 1x3x224x224 sets the first)\n"
    )
    run_cli([model, "--input-shape", "x:1x3x16x16"], exit_code=0)
    run_cli([model, "--input-shape", "1x3x16x16"], exit_code=0)


def test_a_git_lfs_pointer_is_recognised(run_cli, tmp_path: Path) -> None:
    pointer = tmp_path / "model.onnx"
    pointer.write_text(LFS_POINTER)
    result = run_cli([pointer], exit_code=2)
    assert result.stderr == (
        f"bnlint: error: {pointer}: Git LFS pointer, not the model: run `git lfs pull`, or "
        "check out with LFS (GitHub Actions: actions/checkout with `lfs: true`)\n"
    )


def test_a_python_file_without_factory_explains_the_form(run_cli, tmp_path: Path) -> None:
    source = tmp_path / "nets.py"
    marker = tmp_path / "IMPORTED"
    source.write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "def build_resnet():\n    pass\n\nclass Net:\n    pass\n\ndef _private():\n    pass\n"
    )
    result = run_cli([source], exit_code=2)
    assert result.stderr == (
        f"bnlint: error: {source}: a Python file is linted through the function or class "
        f"that builds the model: `{source}:FACTORY` (defined in it: build_resnet, Net); it "
        "runs your code, as pytest does\n"
    )
    assert not marker.exists(), "the file was read with ast, never imported"


def test_summaries_never_contradict_themselves(run_cli, model: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07 not protobuf")
    only = run_cli([corrupt], exit_code=2).stdout
    assert only == "Nothing checked: 1 model could not be read.\n"
    both = run_cli([model, corrupt], exit_code=2).stdout.splitlines()[0]
    assert re.fullmatch(
        r"No findings in 1 model \(3 BatchNorms, \d+ rules\)\. Not checked: 1 model could "
        r"not be read\.",
        both,
    ), both


def test_a_model_without_batchnorm_says_so(run_cli, tmp_path: Path) -> None:
    path = onnx_zoo.layernorm_mlp(tmp_path)
    result = run_cli([path, "--format", "json"], exit_code=0)
    assert result.json["models"][0]["batchnorms"] == 0
    assert result.json["summary"]["batchnorms"] == 0
    line = run_cli([path], exit_code=0).stdout
    assert re.fullmatch(r"All checks passed: 1 model, no BatchNorm, \d+ rules\.\n", line), line


def test_a_state_dict_says_only_parameter_rules_ran(run_cli, tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    weights = {}
    for layer in ("bn1", "bn2"):
        weights.update(
            {
                f"{layer}.weight": np.full(8, 1.1, np.float32),
                f"{layer}.bias": np.zeros(8, np.float32),
                f"{layer}.running_mean": np.full(8, 0.1, np.float32),
                f"{layer}.running_var": np.full(8, 0.9, np.float32),
                f"{layer}.num_batches_tracked": np.array(100, np.int64),
            }
        )
    path = tmp_path / "weights.safetensors"
    save_file(weights, str(path))
    lines = run_cli([path], exit_code=0).stdout.splitlines()
    assert " BN901 model partially read: " in lines[0], "which rules could not run, and why"
    assert re.fullmatch(
        r"Found 1 finding \(1 info\) in 1 model \(2 BatchNorms, \d+ parameter rules only\)\.",
        lines[-1],
    ), lines


def test_statistics_show_the_severities_a_rule_was_reported_at() -> None:
    from bnlint.findings import Finding, ModelResult, Report, Severity
    from bnlint.report import RenderOptions, render

    def finding(severity: Severity) -> Finding:
        return Finding("BN012", "fold-mismatch", severity, "x", node=f"n{int(severity)}")

    report = Report([ModelResult("m.onnx", "onnx", findings=[finding(Severity.ERROR)] * 2)])
    report.models[0].findings.append(finding(Severity.INFO))
    text = render(report, "text", RenderOptions(statistics=True))
    assert text == "3\tBN012\tfold-mismatch\t[2 errors, 1 info]\n"


def test_every_written_report_is_named_and_its_folder_created(
    run_cli, model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "reports" / "nested"
    result = run_cli(
        [
            model,
            "--format",
            "sarif",
            "-o",
            out / "bnlint.sarif",
            "--report-html",
            out / "html" / "report.html",
            "--report-md",
            out / "summary.md",
        ],
        exit_code=0,
    )
    assert result.stderr.splitlines() == [
        f"bnlint: wrote SARIF report {out / 'bnlint.sarif'}",
        f"bnlint: wrote HTML report {out / 'html' / 'report.html'}",
        f"bnlint: wrote Markdown report {out / 'summary.md'}",
    ]
    assert (out / "html" / "report.html").stat().st_size > 1000


def _config_body(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("#"))


@pytest.mark.parametrize("flag", ["--print-config", "--show-settings"])
def test_printed_settings_are_a_configuration_that_round_trips(
    run_cli, model: Path, tmp_path: Path, flag: str
) -> None:
    """What --print-config / --show-settings print, saved as bnlint.toml, configures the
    same run: every key is one a configuration accepts (no input-shapes, rules-dirs,
    rule-options), command-line-only flags are comments."""
    config = tmp_path / "bnlint.toml"
    config.write_text(
        'fail-on = "error"\nphase = "inference"\nextend-select = ["BN011"]\n'
        '[severity]\nBN014 = "error"\n[per-node-ignores]\n"^head" = ["BN007"]\n'
        "[small-batch-statistics]\nmin-batch-size = 4\n"
    )
    args = [model, "--config", config, "--target-dtype", "float16", "--input-shape", "x:1x3x16x16"]
    expected = _config_body(run_cli([*args, "--print-config"]).stdout)
    printed = run_cli([*args, flag], exit_code=0).stdout
    tomllib.loads(printed)  # the whole output is TOML (origins are comments)
    for key in ("input-shapes", "rules-dirs", "rule-options", "verify", "trust-model-code"):
        assert not re.search(rf"^{key} =", printed, re.M), key
    copy = tmp_path / "printed" / "bnlint.toml"
    copy.parent.mkdir()
    copy.write_text(printed)
    again = run_cli([model, "--config", copy, "--print-config"], exit_code=0).stdout
    assert _config_body(again) == expected
    discovered = model.parent / "bnlint.toml"  # found next to the model, it works too
    discovered.write_text(printed)
    assert _config_body(run_cli([model, "--print-config"]).stdout) == expected


def test_an_unknown_configuration_key_names_file_line_and_valid_keys(run_cli, model: Path) -> None:
    config = model.parent / "pyproject.toml"
    config.write_text(
        '[project]\nname = "x"\n\n[tool.bnlint]\nselect = ["ALL"]\nfail_on = "error"\n'
    )
    result = run_cli([model], exit_code=2)
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        f"bnlint: error: {config.resolve()}: line 6: unknown configuration key 'fail_on' "
        "(did you mean 'fail-on'?); valid keys: "
    )
    assert "fail-on, format, ignore" in line and "train-batch-size" in line


def test_json_evidence_never_holds_nan_or_infinity_as_text() -> None:
    from bnlint.findings import Finding, ModelResult, Report, Severity
    from bnlint.report import RenderOptions, render
    from tests.helpers import validate_report

    evidence = {"max": float("inf"), "values": [float("nan"), -float("inf"), 1.5]}
    finding = Finding(
        "BN006",
        "degenerate-running-variance",
        Severity.ERROR,
        "x",
        location={"file": "m.onnx"},
        evidence=evidence,
        url="https://bnlint.github.io/bnlint/rules/BN006/",
    )
    data = json.loads(
        render(Report([ModelResult("m.onnx", "onnx", findings=[finding])]), "json", RenderOptions())
    )
    validate_report(data)
    assert data["models"][0]["findings"][0]["evidence"] == {
        "max": {"nonfinite": "inf"},
        "values": [{"nonfinite": "nan"}, {"nonfinite": "-inf"}, 1.5],
    }
    data["models"][0]["findings"][0]["evidence"]["max"] = "Infinity"
    with pytest.raises(AssertionError):
        validate_report(data)


def test_channel_lists_cut_short_end_in_an_ellipsis(run_cli, tmp_path: Path) -> None:
    g = GraphBuilder(opset=17)
    x = g.input("x", [1, 3, 8, 8])
    c = 16
    params = [
        g.param("bn.weight", np.full(c, 1e4)),
        g.param("bn.bias", np.zeros(c)),
        g.param("bn.running_mean", np.zeros(c)),
        g.param("bn.running_var", np.full(c, 1e-3)),
    ]
    h = g.relu(g.bn(g.conv(x, c, name="conv", bias=False), name="bn", params=params))
    path = tmp_path / "wide.onnx"
    import onnx

    onnx.save(g.model([h]), str(path))
    result = run_cli(
        [path, "--target-dtype", "float16", "--select", "BN013", "--format", "json"], exit_code=1
    )
    (finding,) = result.json["models"][0]["findings"]
    assert "16 channel(s) [0, 1, 2, 3, 4, 5, 6, 7, …]" in finding["message"], finding["message"]


def test_fold_dry_run_prints_every_verdict_and_writes_nothing(run_cli, tmp_path: Path) -> None:
    path = onnx_zoo.opset14_training_mode(tmp_path / "m")
    before = sorted(os.listdir(path.parent))
    result = run_cli(["fold", path, "--dry-run"], exit_code=0)
    assert "bn" in result.stdout and "training" in result.stdout and "not-folded" in result.stdout
    assert sorted(os.listdir(path.parent)) == before
    missing = run_cli(["fold", path], exit_code=2)
    assert "needs -o FOLDED (or --dry-run" in missing.stderr


def test_a_folded_models_external_data_is_readable_like_the_model(run_cli, tmp_path: Path) -> None:
    source = onnx_zoo.external_data(tmp_path / "src")
    out = tmp_path / "out" / "folded.onnx"
    out.parent.mkdir()
    run_cli(["fold", source, "-o", out, "--algebraic-only"], exit_code=0)
    data = out.with_name("folded.onnx.data")
    assert data.exists()
    mode = stat.S_IMODE(out.stat().st_mode)
    assert stat.S_IMODE(data.stat().st_mode) == mode and mode & 0o044 == 0o044
