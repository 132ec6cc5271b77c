"""Small convolutional building blocks shared by the networks."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ConvBlock(nn.Sequential):
    """Reflection pad, convolution, instance norm, ReLU: (B, C_in, H, W) -> (B, C_out, H/stride, W/stride)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__(
            nn.ReflectionPad2d(kernel_size // 2),
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride),
            nn.InstanceNorm2d(out_channels, affine=True),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions with a normalisation and ReLU each; keeps H, W.

    ``norm`` is ``"batch"`` (the segmenter: folds into the convolution at inference) or ``"instance"``.
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None,
                 norm: str = "batch") -> None:
        mid_channels = mid_channels or out_channels
        make_norm = nn.BatchNorm2d if norm == "batch" else (lambda c: nn.InstanceNorm2d(c, affine=True))
        super().__init__(
            nn.Conv2d(in_channels, mid_channels, 3, padding=1, bias=False),
            make_norm(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False),
            make_norm(out_channels),
            nn.ReLU(inplace=True),
        )


def run_unet(x: torch.Tensor, encoder: Sequence[nn.Module], decoder: Sequence[nn.Module]) -> torch.Tensor:
    """The U-Net data flow shared by the attention module and the segmenter.

    ``encoder[0]`` runs at full resolution, each next block after a 2x max-pool; each ``decoder`` block takes
    the concatenation [skip, bilinearly upsampled features] from the matching encoder level, deepest first.
    """
    skips = []
    for level, block in enumerate(encoder):
        x = block(F.max_pool2d(x, 2) if level else x)
        skips.append(x)
    skips.pop()
    for block in decoder:
        skip = skips.pop()
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = block(torch.cat([skip, x], dim=1))
    return x
