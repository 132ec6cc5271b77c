"""The CycleGAN baseline's generator: Zhu et al.'s ResNet generator (ICCV 2017, as in their public code).

Reflection pad and 7x7 convolution to ``width`` channels, two stride-2 3x3 convolutions (``2 width``,
``4 width``), ``blocks`` residual blocks at ``4 width`` (9 in the paper at 256²; 6 at 128² and below),
two 3x3 transposed convolutions back up, a 7x7 convolution to the output channels and tanh. Instance
norms without affine parameters, ReLU, no dropout. It takes no attention maps: it is the baseline that
SASAN's attention-normalised generator is compared with (``model.generator: resnet``).
"""
from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """x + [pad, 3x3 conv, norm, ReLU, pad, 3x3 conv, norm](x); (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """x (B, C_in, H, W) in [-1, 1] -> (B, C_out, H, W) in [-1, 1]; H, W divisible by 4."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, width: int = 64, blocks: int = 9) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, width, 7), nn.InstanceNorm2d(width),
                                   nn.ReLU(True)]
        for level in range(2):
            channels = width * 2 ** level
            layers += [nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1), nn.InstanceNorm2d(2 * channels),
                       nn.ReLU(True)]
        layers += [ResidualBlock(4 * width) for _ in range(blocks)]
        for level in (2, 1):
            channels = width * 2 ** level
            layers += [nn.ConvTranspose2d(channels, channels // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(channels // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, out_channels, 7), nn.Tanh()]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, maps: torch.Tensor | None = None) -> torch.Tensor:
        """``maps`` is there for the translator's calling convention and must be None."""
        if maps is not None:
            raise ValueError("the ResNet generator takes no attention maps (model.generator: resnet needs "
                             "model.attention: false)")
        return self.layers(x)
