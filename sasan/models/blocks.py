"""Small convolutional building blocks shared by the networks."""
from __future__ import annotations

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
