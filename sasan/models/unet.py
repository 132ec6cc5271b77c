"""The detached U-Net segmenter, trained on the target modality's real (and translated) images."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import DoubleConv, run_unet


class UNet(nn.Module):
    """x (B, C_in, H, W) -> class logits (B, num_classes, H, W); H, W divisible by 2**depth.

    ``depth`` max-pool downsamplings and as many bilinear upsamplings with skip connections; widths
    ``width * 2**level``, the deepest level halved as usual with bilinear upsampling (64 wide, depth 4:
    17.3 M parameters). Batch norm, so it folds into the convolutions at inference.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 5, width: int = 64, depth: int = 4) -> None:
        super().__init__()
        widths = [width * 2 ** level for level in range(depth)] + [width * 2 ** (depth - 1)]
        self.stem = DoubleConv(in_channels, widths[0])
        self.down = nn.ModuleList(DoubleConv(widths[level], widths[level + 1]) for level in range(depth))
        self.up = nn.ModuleList()
        current = widths[depth]
        for level in reversed(range(depth)):
            joined = current + widths[level]
            current = widths[level - 1] if level else widths[0]
            self.up.append(DoubleConv(joined, current, mid_channels=joined // 2))
        self.classify = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = run_unet(x, [self.stem, *self.down], self.up)
        return self.classify(x)
