"""Markdown for job summaries and PR comments: escaped model strings, intact tables, truncation."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from bnlint.findings import Finding, ModelResult, Report, Severity
from bnlint.report import RenderOptions, render
from bnlint.report.markdown import md


def _finding(
    node: str, message: str = "running variance is negative", code: str = "BN006"
) -> Finding:
    return Finding(
        code,
        "degenerate-running-variance",
        Severity.ERROR,
        message,
        node=node,
        fix="re-estimate the statistics",
        url=f"https://bnlint.github.io/bnlint/rules/{code}/",
        order=1,
    )


def _table_rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ") and "[BN" in line]
    return [re.split(r"(?<!\\)\|", line)[1:-1] for line in lines]


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("a|b", r"a\|b"),
        ("`code`", r"\`code\`"),
        ("*bold* _it_ [link](x) ~s~ $m$ #1", r"\*bold\* \_it\_ \[link\](x) \~s\~ \$m\$ `#`1"),
        ("cc @octocat, a@b.io", "cc `@`octocat, a`@`b.io"),  # no mention, no mail link
        ("see https://x.io or www.x.io", "see https`://`x.io or `www.`x.io"),  # no autolink
        ("<img src=x onerror=alert(1)>", "&lt;img src=x onerror=alert(1)&gt;"),
        ("a&amp;b", "a&amp;amp;b"),
        ("line1\nline2\r\nline3", "line1<br>line2<br>line3"),
        ("back\\slash", r"back\\slash"),
        ("bidi\u202eevil", r"bidi\\u202eevil"),  # shown as the escape, not applied
    ],
)
def test_md_escapes_every_special(raw: str, escaped: str) -> None:
    assert md(raw) == escaped


def test_hostile_strings_cannot_break_the_table(tmp_path: Path) -> None:
    hostile = "x|y`z\n| injected | row |\n<script>alert(1)</script>"
    report = Report(
        [ModelResult(str(tmp_path / "a|b.onnx"), "onnx", findings=[_finding(hostile, hostile)])]
    )
    text = render(report, "markdown", RenderOptions())
    rows = _table_rows(text)
    assert len(rows) == 1 and len(rows[0]) == 5, text
    assert "<script>" not in text and "| injected |" not in text
    assert "[BN006](https://bnlint.github.io/bnlint/rules/BN006/)" in text


def test_verdict_and_counts(tmp_path: Path) -> None:
    report = Report([ModelResult(str(tmp_path / "m.onnx"), "onnx", findings=[_finding("bn")])])
    text = render(report, "markdown", RenderOptions(fail_on="error"))
    assert text.startswith("## ❌ bnlint failed: findings at or above error\n")
    assert "**1** finding: 1 error, 0 warnings, 0 info" in text
    passed = render(
        Report([ModelResult(str(tmp_path / "m.onnx"), "onnx")]), "markdown", RenderOptions()
    )
    assert passed.startswith("## ✅ bnlint passed: no findings at or above warning")
    assert "### Findings" not in passed


def test_a_long_report_is_truncated_with_a_note(tmp_path: Path) -> None:
    # 150 different problems (a repeated one would be one row: see the grouping test)
    findings = [
        replace(_finding(f"layer{i}.bn"), message=f"running variance is negative ({'x' * i})")
        for i in range(150)
    ]
    report = Report([ModelResult(str(tmp_path / "big.onnx"), "onnx", findings=findings)])
    full = render(report, "markdown", RenderOptions())
    assert len(_table_rows(full)) == 150 and "not shown" not in full
    limited = render(report, "markdown", RenderOptions(extra={"markdown_max_chars": 20_000}))
    shown = len(_table_rows(limited))
    assert len(limited) <= 20_000 and 0 < shown < 150
    assert f"**{150 - shown} more findings not shown**" in limited
    assert limited.rstrip().endswith(f"<sub>bnlint {__import__('bnlint').__version__}</sub>")
    assert all(len(row) == 5 for row in _table_rows(limited)), "no row is cut in half"


def test_the_same_finding_on_many_layers_is_one_row(tmp_path: Path) -> None:
    findings = [_finding(f"layer{i}.bn") for i in range(50)]
    report = Report([ModelResult(str(tmp_path / "big.onnx"), "onnx", findings=findings)])
    (row,) = _table_rows(render(report, "markdown", RenderOptions()))
    assert (
        row[3].strip()
        == "layer0.bn<br>+49 more: layer1.bn, layer2.bn, layer3.bn, layer4.bn, layer5.bn, layer6.bn, layer7.bn, layer8.bn, layer9.bn, layer10.bn, +39 more"
    )


def test_with_a_baseline_new_findings_come_first_and_known_ones_fold_away(tmp_path: Path) -> None:
    known = [replace(_finding(f"a{i}.bn"), baseline_state="unchanged") for i in range(3)]
    new = replace(_finding("b.bn"), message="scale is NaN", baseline_state="new")
    report = Report([ModelResult(str(tmp_path / "m.onnx"), "onnx", findings=[*known, new])])
    report.baseline = {"path": "baseline.json", "new": 1, "unchanged": 3, "fixed": []}
    text = render(report, "markdown", RenderOptions())
    new_part, known_part = text.split("### New findings", 1)[1].split("<details><summary>3 known")
    assert "b.bn" in new_part and "a0.bn" not in new_part
    assert "a0.bn<br>+2 more" in known_part and "(known)" in known_part


def test_report_md_option_writes_a_file_beside_the_terminal_output(run_cli, tmp_path: Path) -> None:
    from tests.zoo import onnx_zoo

    model = onnx_zoo.opset14_training_mode(tmp_path)
    summary = tmp_path / "summary.md"
    result = run_cli([model, "--report-md", summary], exit_code=1)
    assert "BN003" in result.stdout and "\x1b[" not in summary.read_text()
    assert (
        "| 🔴 error | [BN003](https://bnlint.github.io/bnlint/rules/BN003/)" in summary.read_text()
    )


def test_provenance_block_closes_the_summary(run_cli, tmp_path: Path) -> None:
    import hashlib

    from tests.zoo import onnx_zoo

    model = onnx_zoo.resnet_opset15(tmp_path / "under_score")
    summary = tmp_path / "summary.md"
    run_cli([model, "--report-md", summary, "--target-dtype", "float16"], exit_code=0)
    text = summary.read_text(encoding="utf-8")
    block = text.split("<details><summary>Provenance: how to reproduce this report</summary>")[1]
    assert block.index("</details>") > 0 and text.rstrip().endswith("</sub>")
    assert "| Command | bnlint " in block and r"under\_score" in block
    assert hashlib.sha256(model.read_bytes()).hexdigest() in block
    assert "target-dtype = float16 (command line)" in block
    rows = [line for line in block.splitlines() if line.startswith("| ")]
    assert all(len(re.split(r"(?<!\\)\|", row)) in (4, 8) for row in rows), "tables stay intact"
