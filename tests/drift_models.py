"""A small CNN trained on synthetic data, for the drift check and re-estimation.

Shared by the tests and ``benchmarks/drift_*.py``: everything is seeded and generated in
code. The inputs look like normalised images with three channels of distinct means and
spreads (so a scale, an offset and a channel permutation change their statistics in
distinguishable ways); each class adds a low-frequency pattern. Task ``"a"`` trains the
network; task ``"b"`` (new patterns, same input statistics) is the new task of the
eval-mode fine-tuning scenario.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

CHANNEL_MEAN = np.array([0.8, -0.2, -0.6], dtype=np.float32)
CHANNEL_STD = np.array([1.0, 0.4, 1.6], dtype=np.float32)
SIZE = 16
CLASSES = 4


def _patterns(task: str) -> np.ndarray:
    rng = np.random.default_rng({"a": 11, "b": 23}[task])
    grid = np.linspace(0, 2 * np.pi, SIZE, endpoint=False)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    patterns = np.empty((CLASSES, 3, SIZE, SIZE), dtype=np.float32)
    for k in range(CLASSES):
        for c in range(3):
            fy, fx = rng.integers(1, 4, size=2)
            phase = rng.uniform(0, 2 * np.pi)
            patterns[k, c] = np.sin(fy * yy + fx * xx + phase)
    return patterns


def make_data(
    count: int, seed: int, task: str = "a", noise: float = 0.6
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` samples (N, 3, 16, 16) float32 and their labels; ``noise`` sets how hard
    the task is (the tests use the default; the benchmarks a harder one)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, size=count)
    pixels = rng.standard_normal((count, 3, SIZE, SIZE)).astype(np.float32)
    signal = _patterns(task)[labels] * 0.8
    images = (pixels * noise + signal) * CHANNEL_STD[None, :, None, None]
    images += CHANNEL_MEAN[None, :, None, None]
    return images.astype(np.float32), labels


class DriftNet(nn.Module):
    """conv-BN-ReLU x 3 (the first block at full resolution), pooled, then a BN1d head."""

    def __init__(self, classes: int = CLASSES) -> None:
        super().__init__()
        self.block1 = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()
        )
        self.block2 = nn.Sequential(
            nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.block3 = nn.Sequential(
            nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(
            nn.Linear(16, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.block3(self.block2(self.block1(x)))))


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Tiny models train fastest on one thread (and do not fight other processes)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fit(model: nn.Module, steps: int, seed: int, task: str, params, noise: float) -> None:
    with one_thread():
        _steps(model, steps, seed, task, params, noise)


def _steps(model: nn.Module, steps: int, seed: int, task: str, params, noise: float) -> None:
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(params, lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    for step in range(steps):
        images, labels = make_data(32, seed * 100_003 + step, task, noise)
        optimizer.zero_grad()
        loss = loss_fn(model(torch.from_numpy(images)), torch.from_numpy(labels))
        loss.backward()
        optimizer.step()


def train(seed: int = 0, steps: int = 300, noise: float = 0.6) -> DriftNet:
    """A DriftNet trained on task "a" in train mode; returned in eval mode."""
    torch.manual_seed(seed)
    model = DriftNet()
    model.train()
    _fit(model, steps, seed, "a", model.parameters(), noise)
    return model.eval()


def finetune_in_eval_mode(
    model: DriftNet, seed: int = 1, steps: int = 300, noise: float = 0.6
) -> DriftNet:
    """Task "b" with block1 frozen and every BN in eval mode: weights below the deeper BNs
    move while their running statistics stay those of task "a"."""
    model.eval()
    for param in model.block1.parameters():
        param.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    _fit(model, steps, seed, "b", trainable, noise)
    for param in model.parameters():
        param.requires_grad_(True)
    return model.eval()


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(images))
    return float((logits.argmax(1).numpy() == labels).mean())


def onnx_accuracy(path: Path, images: np.ndarray, labels: np.ndarray) -> float:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"x": images})[0]
    return float((logits.argmax(1) == labels).mean())


def export_onnx(model: nn.Module, path: Path) -> Path:
    """ONNX with every BatchNormalization kept (see /work/shared/FORMATS.md)."""
    example = torch.from_numpy(make_data(2, 0)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (example,),
            str(path),
            dynamo=False,
            training=torch.onnx.TrainingMode.PRESERVE,
            do_constant_folding=False,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
        )
    return path


def export_pt2(model: nn.Module, path: Path) -> Path:
    example = torch.from_numpy(make_data(2, 0)[0])
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path


def swap_channels(images: np.ndarray) -> np.ndarray:
    """RGB <-> BGR."""
    return np.ascontiguousarray(images[:, ::-1])


def shift_mean(images: np.ndarray) -> np.ndarray:
    """A mean-subtraction mismatch: every channel offset by its own amount."""
    offset = np.array([1.5, -1.0, 2.0], dtype=np.float32)[None, :, None, None]
    return (images + offset).astype(np.float32)
