"""The drift paths through the real executable: what they import, what they never execute."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx

from tests import drift_cases as dc
from tests.test_import_hygiene import REPO, imported_after


def test_onnx_drift_check_never_imports_torch(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(dc.LinearNet(0).model(), str(model))
    samples = tmp_path / "s.npy"
    np.save(samples, dc.samples(16, 0) * 255)
    modules = imported_after(
        "from bnlint.cli import main\n"
        "try:\n"
        f"    main([{str(model)!r}, '--sample-data', {str(samples)!r}], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass"
    )
    assert "onnxruntime" in modules, "sanity: the drift check really ran"
    assert not modules & {"torch", "jinja2", "networkx"}


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_malicious_sample_file_is_refused_by_the_real_executable(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(dc.LinearNet(0).model(), str(model))
    marker = tmp_path / "executed"
    evil = tmp_path / "evil.npz"
    objects = np.empty(3, dtype=object)
    objects[:] = [_Payload(marker)] * 3
    stream = io.BytesIO()
    np.save(stream, objects, allow_pickle=True)
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("x.npy", stream.getvalue())
        archive.writestr("y.pkl", pickle.dumps(_Payload(marker)))
    for args in (
        [model, "--sample-data", evil],
        ["recalibrate", model, "--sample-data", evil, "-o", tmp_path / "out.onnx"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "bnlint", *map(str, args)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and str(evil) in lines[0] and "Traceback" not in done.stderr
    assert not marker.exists() and not (tmp_path / "out.onnx").exists()
