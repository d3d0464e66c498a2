"""The parity zoo: seven networks with one planted BatchNorm defect each, and their clean twins.

Each network is a shape real code has (UNet's ``double_conv``, an MLP, an attention
embedding, a pre-activation block, ASPP, a classifier head, a pruned layer); ``defect=True``
plants the defect, ``defect=False`` is the same network written correctly. :data:`CASES`
labels each defect with the finding that names it (code and module path) and the settings
the check needs, so every format's recall can be measured against the same truth.
Registered in :data:`tests.zoo.torch_models.MODELS` (``<name>`` and ``<name>_clean``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tests.zoo import torch_models
from tests.zoo.torch_models import SelfAttention, ZooModel


class DoubleConv(nn.Module):
    """UNet's (conv => BN => ReLU) * 2; the original repository's convs carry a bias."""

    def __init__(self, cin: int, cout: int, bias: bool) -> None:
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=bias),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=bias),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.double_conv(x)


class UNetDoubleConv(ZooModel):
    """A one-level UNet: double conv, max-pool, double conv, upsample, concat, 1x1 head.
    Defect (BN007): the first double conv's convs keep their bias before the BN."""

    input_shape = (1, 3, 32, 32)

    def __init__(self, defect: bool = True) -> None:
        super().__init__()
        self.inc = DoubleConv(3, 16, bias=defect)
        self.down = nn.MaxPool2d(2)
        self.mid = DoubleConv(16, 32, bias=False)
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.outc = nn.Conv2d(48, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        skip = self.inc(x)
        deep = self.up(self.mid(self.down(skip)))
        return self.outc(torch.cat([deep, skip], 1))


class MLPLinearBias(ZooModel):
    """Linear(+bias) -> BatchNorm1d -> ReLU twice. Defect (BN007): the biases, which the BN
    cancels. At a per-device batch of 8 each BatchNorm1d sees 8 values per feature (BN002)."""

    input_shape = (8, 32)

    def __init__(self, defect: bool = True) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(32, 64, bias=defect),
            nn.BatchNorm1d(64),
            nn.ReLU(inplace=True),
            nn.Linear(64, 64, bias=defect),
            nn.BatchNorm1d(64),
            nn.ReLU(inplace=True),
            nn.Linear(64, 10),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class AttentionEmbedding(ZooModel):
    """Token embedding, BatchNorm1d, self-attention, mean-pooled head on (N, L, F) input.
    Defect (BN009): ``BatchNorm1d(L)`` applied straight to (N, L, D), which PyTorch accepts
    because num_features == L: one statistic per position instead of per feature."""

    input_shape = (2, 16, 8)

    def __init__(self, defect: bool = True, length: int = 16, dim: int = 32) -> None:
        super().__init__()
        self.defect = defect
        self.embed = nn.Linear(8, dim)
        self.bn = nn.BatchNorm1d(length if defect else dim)
        self.attn = SelfAttention(dim, 4)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x)
        if self.defect:
            h = self.bn(h)
        else:
            h = self.bn(h.transpose(1, 2)).transpose(1, 2)
        h = h + self.attn(h)
        return self.head(h.mean(dim=1))


class PreActBlock(nn.Module):
    """Pre-activation residual block: BN -> ReLU -> conv, twice. ``swapped`` moves the second
    BN past the ReLU and the conv (BN -> ReLU -> conv -> ReLU -> conv -> BN), so the first
    conv's output reaches a ReLU with no normalization before or right after it."""

    def __init__(self, channels: int, swapped: bool) -> None:
        super().__init__()

        def conv() -> nn.Conv2d:
            return nn.Conv2d(channels, channels, 3, padding=1, bias=False)

        first = [nn.BatchNorm2d(channels), nn.ReLU(), conv()]
        if swapped:
            second = [nn.ReLU(), conv(), nn.BatchNorm2d(channels)]
        else:
            second = [nn.BatchNorm2d(channels), nn.ReLU(), conv()]
        self.body = nn.Sequential(*first, *second)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class PreActSwapped(ZooModel):
    """A stem and two pre-activation blocks. Defect (BN001): in each block the second BN
    was swapped to the end, so the first conv feeds a ReLU with no normalization."""

    input_shape = (1, 3, 32, 32)

    def __init__(self, defect: bool = True) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
        )
        self.blocks = nn.Sequential(PreActBlock(16, defect), PreActBlock(16, defect))
        self.norm = nn.BatchNorm2d(16)
        self.transition = nn.Sequential(
            nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.transition(torch.relu(self.norm(self.blocks(self.stem(x)))))
        return self.fc(torch.flatten(self.pool(x), 1))


class ASPP(ZooModel):
    """DeepLabV3's ASPP: 1x1 and dilated 3x3 branches and an image-pooling branch.
    Defect (BN002 in training): the pooling branch's BatchNorm sees one value per sample and
    channel (global pooling), so at a per-device batch of 8 its statistics come from 8
    values; the clean twin uses GroupNorm there."""

    input_shape = (2, 8, 16, 16)

    def __init__(self, defect: bool = True) -> None:
        super().__init__()
        self.b0 = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.b1 = nn.Sequential(
            nn.Conv2d(8, 16, 3, padding=2, dilation=2, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(8, 16, 1, bias=False),
            nn.BatchNorm2d(16) if defect else nn.GroupNorm(1, 16),
            nn.ReLU(),
        )
        self.project = nn.Sequential(
            nn.Conv2d(48, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )

    def forward(self, x: Tensor) -> Tensor:
        pooled = F.interpolate(self.pool(x), size=[16, 16], mode="nearest")
        return self.project(torch.cat([self.b0(x), self.b1(x), pooled], 1))


class DropoutHead(ZooModel):
    """Conv features and a classifier head. Defect (BN008): the head's Dropout feeds its
    BatchNorm1d (train/inference variance shift); the clean twin normalizes first."""

    input_shape = (4, 3, 16, 16)

    def __init__(self, defect: bool = True) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        if defect:
            head = [nn.Linear(32, 32, bias=False), nn.ReLU(), nn.Dropout(0.5), nn.BatchNorm1d(32)]
        else:
            head = [nn.Linear(32, 32, bias=False), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5)]
        self.classifier = nn.Sequential(*head, nn.Linear(32, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class PrunedLayer(ZooModel):
    """Two conv-BN-ReLU layers. Defect (BN010): channel pruning cut the second conv to 12
    output channels but left its BatchNorm at 16 features (the model cannot run, so it
    exists only as TorchScript, state dicts and pickles)."""

    input_shape = (1, 3, 16, 16)

    def __init__(self, defect: bool = True) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 12 if defect else 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


TRAINING = {"phase": "training", "train_batch_size": 8}
SHAPES = {"input_shapes": {"x": (2, 16, 8)}}


@dataclass(frozen=True)
class Labelled:
    """A planted defect: the finding (code, module path) that names it, under ``settings``."""

    code: str
    scope: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    model: type[ZooModel]
    defects: tuple[Labelled, ...]
    runs: bool = True  # False: the defect version cannot run (no export, trace or ONNX)


CASES: dict[str, Case] = {
    "unet_double_conv": Case(
        UNetDoubleConv,
        (Labelled("BN007", "inc.double_conv.0"), Labelled("BN007", "inc.double_conv.3")),
    ),
    "mlp_linear_bias": Case(
        MLPLinearBias,
        (
            Labelled("BN007", "net.0"),
            Labelled("BN007", "net.3"),
            Labelled("BN002", "net.1", TRAINING),
            Labelled("BN002", "net.4", TRAINING),
        ),
    ),
    # the axis is a matter of shapes: a scripted archive stores none, so --input-shape
    "attention_embedding": Case(AttentionEmbedding, (Labelled("BN009", "bn", SHAPES),)),
    "preact_swapped": Case(
        PreActSwapped, (Labelled("BN001", "blocks.0.body.2"), Labelled("BN001", "blocks.1.body.2"))
    ),
    "aspp_pooling": Case(ASPP, (Labelled("BN002", "pool.2", TRAINING),)),
    "dropout_head": Case(DropoutHead, (Labelled("BN008", "classifier.2"),)),
    "pruned_layer": Case(PrunedLayer, (Labelled("BN010", "features.4"),), runs=False),
}
torch_models.register_parity_zoo(CASES)
