"""What each path imports, checked in fresh subprocesses (the test process has imported everything)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.zoo import onnx_zoo

REPO = Path(__file__).resolve().parents[1]


def imported_after(code: str) -> set[str]:
    script = (
        f"import sys, json\n{code}\nprint(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_onnx_path_never_imports_torch_onnxruntime_or_jinja2(tmp_path: Path) -> None:
    model = onnx_zoo.resnet_opset15(tmp_path)
    modules = imported_after(
        "from bnlint.cli import main\n"
        "try:\n"
        f"    main([{str(model)!r}, '--format', 'json'], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass"
    )
    assert "onnx" in modules and "numpy" in modules, "sanity: the lint really ran"
    assert not modules & {"torch", "onnxruntime", "jinja2", "safetensors", "networkx"}


def test_version_imports_neither_onnx_nor_networkx_nor_numpy() -> None:
    modules = imported_after(
        "from bnlint.cli import main\n"
        "try:\n"
        "    main(['--version'], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass"
    )
    assert "click" in modules
    assert not modules & {"onnx", "networkx", "numpy", "torch", "jinja2"}


def test_importing_bnlint_is_light() -> None:
    modules = imported_after("import bnlint")
    assert not modules & {"onnx", "networkx", "numpy", "torch", "click", "jinja2"}


def test_linting_loads_no_other_command(tmp_path: Path) -> None:
    """`bnlint model.onnx` loads neither the fold/verify nor the recalibrate command line;
    `bnlint fold --help` loads the fold one."""
    model = onnx_zoo.resnet_opset15(tmp_path)
    script = (
        "import sys\nfrom bnlint.cli import main\n"
        "try:\n    main(sys.argv[1:], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('bnlint.'))))"
    )

    def loaded(*args: str) -> set[str]:
        result = subprocess.run(
            [sys.executable, "-c", script, *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return set(result.stdout.splitlines()[-1].split())

    commands = {"bnlint.fold.cli", "bnlint.fold.verify_cli", "bnlint.drift.cli"}
    lint = loaded(str(model), "-q", "--exit-zero")
    assert "bnlint.engine" in lint, "sanity: the lint really ran"
    assert not lint & commands
    assert "bnlint.fold.cli" in loaded("fold", "--help")
