"""No escape sequence, invisible character or live mention reaches a reader (issue 12, item 9).

The model's node names carry every character of Unicode categories Cc, Cf, Zl and Zp (the
whole list from ``unicodedata``, 15 to a name), OSC 52 (clipboard), OSC 8 (hyperlink),
a screen clear, a right-to-left override, an ``@mention``, an issue reference and bare
links. Every terminal writer (findings, baseline "fixed:" lines, the fold table, error
lines, ``--show-settings``, ``bnlint.reproduce`` and its ``--print-config``) and every
report file (HTML, Markdown) is read back: no character of those categories other than
newline and tab may appear raw, and in Markdown no mention or link may be live.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from pathlib import Path

import pytest

from tests.hostile.runner import REPRODUCE, assert_behaved, run_attack
from tests.zoo.onnx_builder import GraphBuilder

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DANGEROUS = [
    chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) in {"Cc", "Cf", "Zl", "Zp"}
]
SEQUENCES = [
    "\x1b]52;c;ZXZpbA==\x07",  # OSC 52: write the clipboard
    "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\",  # OSC 8: a hidden link
    "\x1b[2J\x1b[H",  # clear the screen
    "\u202egnp.exe",  # right-to-left override
]
SOCIAL = "@octocat #1 https://evil.example www.evil.example"


def _raw(text: str, allowed: str = "\n\t") -> list[str]:
    return sorted({f"U+{ord(c):04X}" for c in text if c in DANGEROUS_SET and c not in allowed})


DANGEROUS_SET = frozenset(DANGEROUS)


def _names() -> list[str]:
    chunks = ["".join(DANGEROUS[i : i + 15]) for i in range(0, len(DANGEROUS), 15)]
    return chunks + SEQUENCES + [SOCIAL]


def _model(path: Path) -> Path:
    """One Conv -> BN -> Relu block per hostile name; the first BN in training mode."""
    g = GraphBuilder(opset=15)
    current = g.input("x", [1, 4, 8, 8])
    for index, name in enumerate(_names()):
        conv = g.conv(current, 4, k=1, name=f"conv{name}", bias=False)
        current = g.relu(g.bn(conv, name=f"bn{name}", training=index == 0), f"relu{index}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(g.model([current], infer=False).SerializeToString())
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return _model(tmp_path_factory.mktemp("terminal") / "models" / "names.onnx")


def _assert_clean(text: str, where: str, allowed: str = "\n\t") -> None:
    assert not _raw(text, allowed), f"{where}: raw {_raw(text, allowed)[:10]}"


def test_findings_baseline_and_report_files(model: Path, tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    fixed = [
        {"fingerprint": "f", "code": f"BN00{i}{name}", "path": f"gone{name}.onnx", "node": name}
        for i, name in enumerate(_names())
    ]
    baseline.write_text(json.dumps({"bnlint_baseline": 1, "findings": fixed}))
    html, md = tmp_path / "report.html", tmp_path / "report.md"
    args = [model, "--baseline", baseline, "--report-html", html, "--report-md", md]
    attack = run_attack(args, tmp_path, watch=[model.parent, tmp_path], allowed=[html, md])
    assert_behaved(attack, exit_code=1)
    _assert_clean(attack.stdout, "terminal")
    assert "BN003" in attack.stdout and "fixed: gone" in attack.stdout
    for path in (html, md):
        _assert_clean(path.read_text(), path.name)
    text = md.read_text()
    live = re.findall(r"(?<![`\w])(@octocat|#1\b|https://evil|www\.evil)", text)
    assert not live, live
    assert "`@`octocat" in text and "https`://`evil.example" in text


def test_fold_table_and_fold_errors(model: Path, tmp_path: Path) -> None:
    output = tmp_path / "folded.onnx"
    attack = run_attack(
        ["fold", model, "-o", output, "--algebraic-only"],
        tmp_path,
        watch=[model.parent, tmp_path],
        allowed=[output],
    )
    assert attack.returncode in (0, 1), attack.stderr
    _assert_clean(attack.stdout + attack.stderr, "fold")
    assert "folded-correctly" in attack.stdout
    table = [line for line in attack.stdout.splitlines() if line.startswith("bn")]
    assert len(table) == len(_names())  # no name broke a table row in two
    (bad := tmp_path / f"bad{SEQUENCES[2]}\n{SEQUENCES[0]}.onnx").write_bytes(b"")
    failed = run_attack(["fold", bad, "-o", tmp_path / "x.onnx"], tmp_path, watch=[tmp_path])
    assert_behaved(failed, exit_code=2, error="empty file")
    _assert_clean(failed.stderr, "fold error", allowed="\n")


def test_show_settings_cannot_inject_a_configuration_line(model: Path, tmp_path: Path) -> None:
    folder = tmp_path / f'x\nrules-dir = ["evil"]\n{SEQUENCES[0]}'
    folder.mkdir()
    (folder / "bnlint.toml").write_text('fail-on = "error"\n')
    attack = run_attack([folder, "--show-settings"], tmp_path)
    assert_behaved(attack, exit_code=0)
    _assert_clean(attack.stdout, "--show-settings")
    assert not [line for line in attack.stdout.splitlines() if line.startswith('rules-dir = ["/')]
    assert 'x\\x0arules-dir = ["evil"]\\x0a\\x1b]52' in attack.stdout


def test_reproduce_output_and_printed_configuration(model: Path, tmp_path: Path) -> None:
    names = _names()
    findings = [
        {"code": "BN003", "node": name, "scope": None, "severity": "error", "message": "m"}
        for name in names
    ]
    where = f'cfg\nrules-dir = ["/tmp/evil"]\n{SEQUENCES[1]}'
    report = {
        "models": [{"path": "names.onnx", "status": "ok", "findings": findings}],
        "provenance": {
            "invocation": {"working_directory": str(model.parent)},
            "configurations": [{"path": where, "settings": {}, "flags": {}}],
            "models": [{"path": "names.onnx", "sha256": "0" * 64, "configuration": 0}],
        },
    }
    (path := tmp_path / "report.json").write_text(json.dumps(report))
    rerun = run_attack([path, "--root", model.parent, "--run-changed"], tmp_path, command=REPRODUCE)
    assert_behaved(rerun, exit_code=1)
    _assert_clean(rerun.stdout, "reproduce")
    assert "recorded, not found now" in rerun.stdout
    printed = run_attack([path, "--print-config"], tmp_path, command=REPRODUCE)
    assert_behaved(printed, exit_code=0)
    _assert_clean(printed.stdout, "--print-config")
    assert "rules-dir" not in tomllib.loads(printed.stdout)


def test_one_sanitizer_covers_the_whole_categories() -> None:
    """In process, every character of Cc, Cf, Zl, Zp and Cs, through every entry point."""
    from bnlint.report.markdown import md
    from bnlint.report.sanitize import printable, terminal_text

    surrogates = [chr(c) for c in range(0xD800, 0xE000)]
    for char in (*DANGEROUS, *surrogates):
        assert printable(char, None) != char and md(char) != char, f"U+{ord(char):04X}"
        if char not in "\n\t":
            assert terminal_text(char) != char, f"U+{ord(char):04X}"
    text = "".join(DANGEROUS)
    _assert_clean(printable(text, None), "printable", allowed="")
    _assert_clean(terminal_text(text), "terminal_text")
    _assert_clean(md(text, None), "md", allowed="")
    assert terminal_text("\x1b[1;31mBN003\x1b[0m") == "\x1b[1;31mBN003\x1b[0m"  # our colours
    assert terminal_text("\x1b[8m") == "\\x1b[8m"  # conceal is not one of them
