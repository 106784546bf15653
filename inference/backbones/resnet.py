"""ResNet-50 feature pyramid (torchvision's architecture, plain PyTorch).

The module names follow torchvision's ``resnet.py`` (``conv1``, ``bn1``,
``layer1.0.conv1`` ... ``layer4.2.bn3``, ``downsample.0/1``) so a torchvision
checkpoint (``resnet50-19c8e357.pth``, ``resnet50-0676ba61.pth``,
``resnet50-11ad3fa6.pth``) loads by name; the classifier (``avgpool``, ``fc``) is
left out. The bottleneck is torchvision's "v1.5": the stride sits on the 3x3
convolution (``conv2``), not on the first 1x1.

``forward`` returns the outputs of layer1..layer4: strides 4, 8, 16, 32 with
256, 512, 1024, 2048 channels for the full network.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Bottleneck", "ResNet", "ResNetConfig", "RESNET50_CONFIGS", "resnet50"]


@dataclass(frozen=True)
class ResNetConfig:
    layers: tuple[int, int, int, int]
    base_width: int  # stem width and planes of layer1 (64 in ResNet-50)


RESNET50_CONFIGS: dict[str, ResNetConfig] = {
    "full": ResNetConfig(layers=(3, 4, 6, 3), base_width=64),
    "tiny": ResNetConfig(layers=(1, 1, 1, 1), base_width=8),
}


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (groups=1, width_per_group=64, no dilation)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Bottleneck ResNet trunk returning the four stage outputs (strides 4..32)."""

    def __init__(self, layers: tuple[int, int, int, int] = (3, 4, 6, 3), base_width: int = 64,
                 in_chans: int = 3, zero_init_residual: bool = False):
        super().__init__()
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"ResNet needs four stage depths >= 1, got {layers!r}")
        if base_width < 1:
            raise ValueError(f"ResNet base_width must be >= 1, got {base_width}")
        self.layers_config = tuple(int(n) for n in layers)
        self.base_width = int(base_width)
        self.inplanes = self.base_width
        self.conv1 = nn.Conv2d(in_chans, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        widths = [self.base_width * m for m in (1, 2, 4, 8)]
        self.layer1 = self._make_layer(widths[0], self.layers_config[0], stride=1)
        self.layer2 = self._make_layer(widths[1], self.layers_config[1], stride=2)
        self.layer3 = self._make_layer(widths[2], self.layers_config[2], stride=2)
        self.layer4 = self._make_layer(widths[3], self.layers_config[3], stride=2)
        self.channels: tuple[int, int, int, int] = tuple(w * Bottleneck.expansion for w in widths)  # type: ignore[assignment]
        self.strides: tuple[int, int, int, int] = (4, 8, 16, 32)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() != 4:
            raise ValueError(f"ResNet expects images (N, C, H, W), got shape {tuple(x.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [c1, c2, c3, c4]


def resnet50(size: str = "full", **options) -> ResNet:
    """ResNet-50 ("full") or its tiny twin for tests ("tiny": one bottleneck a stage, width 8)."""
    try:
        cfg = RESNET50_CONFIGS[size]
    except KeyError:
        raise ValueError(f"resnet50: size must be one of {sorted(RESNET50_CONFIGS)}, got {size!r}") from None
    allowed = {"in_chans", "zero_init_residual"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(f"resnet50: unknown option(s) {unknown}; accepted: {sorted(allowed)}")
    return ResNet(layers=cfg.layers, base_width=cfg.base_width, **options)
