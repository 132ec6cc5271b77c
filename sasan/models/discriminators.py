"""PatchGAN discriminators for images and for segmentations (LSGAN: raw scores, no sigmoid)."""
from __future__ import annotations

from torch import nn


class PatchDiscriminator(nn.Sequential):
    """x (B, C, H, W) -> patch scores (B, 1, H/2^n, W/2^n), n = number of widths.

    4x4 stride-2 convolutions with ``widths`` channels (paper: 32, 64, 128 for images; 32 in the middle
    for segmentations, given as class probabilities), LeakyReLU 0.2, instance norm after the first, then
    a 3x3 convolution to one score per patch.
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...] | list[int] = (32, 64, 128)) -> None:
        layers: list[nn.Module] = []
        previous = in_channels
        for index, width in enumerate(widths):
            layers.append(nn.Conv2d(previous, width, 4, stride=2, padding=1))
            if index:
                layers.append(nn.InstanceNorm2d(width, affine=True))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            previous = width
        layers.append(nn.Conv2d(previous, 1, 3, padding=1))
        super().__init__(*layers)
