"""Backbones as in the original code: a ResNet-18 and a MobileNetV2 variant.

Every BatchNorm has ``affine=False, track_running_stats=False``: batch statistics are used at
evaluation too, and BN holds no parameters or state that tasks would have to share.
``width`` scales every channel count; ``in_channels`` and any input size are allowed.
"""

from __future__ import annotations

import torch
from torch import nn


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, affine=False, track_running_stats=False)


def _w(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = _bn(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = _bn(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _bn(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """7×7 stride-2 stem, no max-pool, BasicBlocks [2,2,2,2], bias-free linear head."""

    def __init__(self, num_classes: int = 100, in_channels: int = 3, width: float = 1.0):
        super().__init__()
        widths = [_w(c, width) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
        self.bn1 = _bn(widths[0])
        layers, cin = [], widths[0]
        for cout, stride in zip(widths, (1, 2, 2, 2)):
            blocks = [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            layers.append(nn.Sequential(*blocks))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.linear = nn.Linear(widths[3], num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        # global average pooling as a mean: the same bits as adaptive_avg_pool2d(out, 1) (tested), and
        # vmap (packed runs) batches it, where adaptive_avg_pool2d falls back to a loop over members
        out = out.mean((2, 3))
        return self.linear(out)


class InvertedResidual(nn.Module):
    """1×1 expand (always, even for t=1, as in the original) → 3×3 depthwise → 1×1 project."""

    def __init__(self, cin: int, cout: int, expansion: int, stride: int):
        super().__init__()
        hidden = cin * expansion
        self.stride = stride
        self.conv1 = nn.Conv2d(cin, hidden, 1, bias=False)
        self.bn1 = _bn(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        self.bn2 = _bn(hidden)
        self.conv3 = nn.Conv2d(hidden, cout, 1, bias=False)
        self.bn3 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = nn.functional.relu6(self.bn1(self.conv1(x)))
        out = nn.functional.relu6(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + x if self.residual else out


class MobileNetV2(nn.Module):
    # (expansion t, channels c, blocks n, first stride s)
    CFG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, num_classes: int = 100, in_channels: int = 3, width: float = 1.0):
        super().__init__()
        cin = _w(32, width)
        self.conv1 = nn.Conv2d(in_channels, cin, 3, 2, 1, bias=False)
        self.bn1 = _bn(cin)
        blocks = []
        for t, c, n, s in self.CFG:
            cout = _w(c, width)
            for i in range(n):
                blocks.append(InvertedResidual(cin, cout, t, s if i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        last = _w(1280, width)
        self.conv2 = nn.Conv2d(cin, last, 1, bias=False)
        self.bn2 = _bn(last)
        self.linear = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = nn.functional.relu6(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = nn.functional.relu6(self.bn2(self.conv2(out)))
        out = out.mean((2, 3))  # global average pooling, as ResNet18's
        return self.linear(out)


ARCHITECTURES = {"resnet18": ResNet18, "mobilenetv2": MobileNetV2}


def build_model(arch: str, num_classes: int, in_channels: int, width: float = 1.0) -> nn.Module:
    return ARCHITECTURES[arch](num_classes=num_classes, in_channels=in_channels, width=width)


def head(model: nn.Module) -> nn.Linear:
    """The linear classifier over all classes."""
    return model.linear
