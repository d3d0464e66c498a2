"""Small, deterministic PyTorch architectures for bnlint tests and benchmarks.

No torchvision: every network is written out here. Each model class carries an
``input_shape`` and an ``example_input()`` classmethod; ``MODELS`` maps a name to a
zero-argument factory and ``example_input(name)`` gives the matching seeded input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import ClassVar, TypeVar, get_type_hints

import torch
from torch import Tensor, nn

M = TypeVar("M", bound=nn.Module)


def _seeded_randn(shape: Sequence[int], seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class ZooModel(nn.Module):
    input_shape: ClassVar[tuple[int, ...]] = (1, 3, 32, 32)

    @classmethod
    def example_input(cls, seed: int = 0) -> Tensor:
        return _seeded_randn(cls.input_shape, seed)


def conv_bn(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1
) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
    return conv, nn.BatchNorm2d(cout)


class BasicBlock(nn.Module):
    expansion: ClassVar[int] = 1

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1, self.bn1 = conv_bn(cin, width, 3, stride)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = conv_bn(width, cout, 3)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(*conv_bn(cin, cout, 1, stride))

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: the stride sits on the 3x3 conv, as in torchvision."""

    expansion: ClassVar[int] = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1, self.bn1 = conv_bn(cin, width, 1)
        self.conv2, self.bn2 = conv_bn(width, width, 3, stride)
        self.conv3, self.bn3 = conv_bn(width, cout, 1)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(*conv_bn(cin, cout, 1, stride))

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]


def make_layer(block: Block, cin: int, width: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [block(cin, width, stride)]
    layers += [block(width * block.expansion, width) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNetSmall(ZooModel):
    """3x3 stem conv-bn-relu, two stages of two BasicBlocks (the second stage starts with
    a strided block and a conv-bn downsample shortcut), global avgpool, Linear head."""

    input_shape = (1, 3, 32, 32)

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(3, width, 3)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_layer(BasicBlock, width, width, 2, 1)
        self.layer2 = make_layer(BasicBlock, width, 2 * width, 2, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class ResNet(ZooModel):
    """The standard ImageNet ResNet (torchvision layout and parameter names)."""

    input_shape = (1, 3, 64, 64)

    def __init__(self, block: Block, layers: Sequence[int], num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        e = block.expansion
        self.layer1 = make_layer(block, 64, 64, layers[0], 1)
        self.layer2 = make_layer(block, 64 * e, 128, layers[1], 2)
        self.layer3 = make_layer(block, 128 * e, 256, layers[2], 2)
        self.layer4 = make_layer(block, 256 * e, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * e, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 1000) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
    """53 BatchNorm2d layers and 25,557,032 parameters at num_classes=1000."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        self.block = nn.Sequential(
            *conv_bn(cin, hidden, 1),
            nn.ReLU6(inplace=True),
            *conv_bn(hidden, hidden, 3, stride, groups=hidden),
            nn.ReLU6(inplace=True),
            *conv_bn(hidden, cout, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.use_residual:
            return x + self.block(x)
        return self.block(x)


class MobileNetBlockNet(ZooModel):
    """MobileNetV2-style: expand 1x1, depthwise 3x3, linear project 1x1, residual."""

    input_shape = (1, 3, 32, 32)

    def __init__(self, num_classes: int = 10, expand: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn(3, 16, 3, 2),
            nn.ReLU6(inplace=True),
            InvertedResidual(16, 24, 2, expand),
            InvertedResidual(24, 24, 1, expand),
            InvertedResidual(24, 32, 2, expand),
            InvertedResidual(32, 32, 1, expand),
            *conv_bn(32, 64, 1),
            nn.ReLU6(inplace=True),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = float((dim // heads) ** -0.5)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        n, length, dim = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        return self.proj(torch.matmul(attn, v).transpose(1, 2).reshape(n, length, dim))


class EncoderLayerBN(nn.Module):
    """Pre-LN attention, then a feed-forward Linear-BN1d-ReLU-Linear.

    Correct: BatchNorm1d(ff_dim) on the (N, ff_dim, L) transpose, one statistic per feature.
    ``wrong_axis=True`` (BN009): BatchNorm1d(seq_len) straight on (N, L, ff_dim), which
    PyTorch accepts because num_features == L, but it normalizes per sequence position.
    """

    def __init__(self, dim: int, heads: int, ff_dim: int, seq_len: int, wrong_axis: bool) -> None:
        super().__init__()
        self.wrong_axis = wrong_axis
        self.norm = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.fc1 = nn.Linear(dim, ff_dim, bias=False)
        self.bn = nn.BatchNorm1d(seq_len if wrong_axis else ff_dim)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(ff_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm(x))
        h = self.fc1(x)
        if self.wrong_axis:
            h = self.bn(h)
        else:
            h = self.bn(h.transpose(1, 2)).transpose(1, 2)
        return x + self.fc2(self.relu(h))


class TransformerBN1d(ZooModel):
    """Linear input projection + learned positions + encoder layers + mean-pool head.

    Input (N, L, in_features) = (2, 16, 8); model dim C = 32, feed-forward dim 64, so
    L, C and the feed-forward dim all differ and a wrong BN axis is detectable from shapes.
    """

    input_shape = (2, 16, 8)

    def __init__(
        self,
        in_features: int = 8,
        seq_len: int = 16,
        dim: int = 32,
        heads: int = 4,
        ff_dim: int = 64,
        num_layers: int = 2,
        num_classes: int = 10,
        wrong_axis: bool = False,
    ) -> None:
        super().__init__()
        self.input_proj = nn.Linear(in_features, dim)
        self.pos = nn.Parameter(torch.randn(1, seq_len, dim) * 0.02)
        self.layers = nn.Sequential(
            *(EncoderLayerBN(dim, heads, ff_dim, seq_len, wrong_axis) for _ in range(num_layers))
        )
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layers(self.input_proj(x) + self.pos)
        return self.head(x.mean(dim=1))


class ConvTransposeDecoder(ZooModel):
    """ConvTranspose2d-BN-ReLU upsampling; the second deconv is grouped (groups=2, 32->16),
    so its weight is (Cin, Cout/groups, k, k) = (32, 8, 4, 4) and BN has 16 features."""

    input_shape = (1, 16, 4, 4)

    def __init__(self, latent: int = 16, out_channels: int = 3) -> None:
        super().__init__()
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(latent, 32, 4, 2, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(32, 16, 4, 2, 1, groups=2, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(16, 8, 4, 2, 1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, out_channels, 3, 1, 1),
            nn.Tanh(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(x)


class MLPBN(ZooModel):
    input_shape = (4, 32)

    def __init__(self, in_features: int = 32, hidden: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SqueezeExcite(nn.Module):
    """The 1x1 convs act on a 1x1 pooled map; they carry a bias and no BN on purpose."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class SEBlockNet(ZooModel):
    input_shape = (1, 3, 32, 32)

    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(3, width, 3)
        self.conv2, self.bn2 = conv_bn(width, width, 3, 2)
        self.relu = nn.ReLU(inplace=True)
        self.se = SqueezeExcite(width)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.se(self.relu(self.bn2(self.conv2(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def fill_bn_statistics(model: M, example_input: Tensor, steps: int = 3, seed: int = 0) -> M:
    """Run seeded train-mode passes so running stats move off 0/1; return the model in eval.

    The global RNG is forked, so callers' random streams are left untouched.
    """
    model.train()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for _ in range(steps):
            x = example_input
            if x.is_floating_point():
                x = x * (1 + torch.rand(())) + torch.randn(()) + 0.5 * torch.randn_like(x)
            model(x)
    return model.eval()


MODELS: dict[str, Callable[[], ZooModel]] = {
    "resnet_small": ResNetSmall,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet_block": MobileNetBlockNet,
    "transformer_bn1d": TransformerBN1d,
    "transformer_bn1d_wrong_axis": partial(TransformerBN1d, wrong_axis=True),
    "convtranspose_decoder": ConvTransposeDecoder,
    "mlp_bn": MLPBN,
    "se_block": SEBlockNet,
}


def model_class(model_name: str) -> type[ZooModel]:
    """The class a MODELS factory builds (factory functions declare it as their return type)."""
    factory = MODELS[model_name]
    if isinstance(factory, partial):
        factory = factory.func
    if isinstance(factory, type):
        return factory
    return get_type_hints(factory)["return"]


def example_input(model_name: str, seed: int = 0) -> Tensor:
    return model_class(model_name).example_input(seed)


def build(model_name: str, seed: int = 0, fill_stats: bool = True) -> ZooModel:
    """Seeded construction; with fill_stats the model comes back in eval with real stats."""
    torch.manual_seed(seed)
    model = MODELS[model_name]()
    if fill_stats:
        fill_bn_statistics(model, example_input(model_name, seed), seed=seed)
    return model.eval()


def register_parity_zoo(cases: dict) -> None:
    """The parity zoo (``tests/zoo/torch_parity.py``): ``<case>`` plants the defect,
    ``<case>_clean`` is the same network written correctly."""
    for name, case in cases.items():
        MODELS[name] = partial(case.model, defect=True)
        MODELS[f"{name}_clean"] = partial(case.model, defect=False)


# Importing the parity zoo registers it (whichever of the two modules is imported first).
from tests.zoo import torch_parity  # noqa: E402, F401
