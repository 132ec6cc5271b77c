"""The synthesis module S: an encoder, then SPADE residual blocks re-normalised by the attention maps."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ConvBlock
from .spade import AttentionResBlock


class Generator(nn.Module):
    """x (B, C_in, H, W), maps (B, K, H, W) or None -> translated image (B, C_out, H, W) in [-1, 1].

    Encoder: ConvBlocks with ``encoder_widths`` (paper 32, 64, 128, 128), kernels 7, 3, 3, 3 and strides
    1, 2, 2, 1, so the bottleneck is at H/4. Decoder: three attention residual blocks with
    ``decoder_widths`` (paper 128, 64, 32) at H/4, H/2 and H with bilinear x2 upsampling between, then a
    3x3 convolution to ``head_width`` (16) and one to the output channels, tanh. H, W divisible by 4.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, num_maps: int = 8,
                 encoder_widths: tuple[int, ...] | list[int] = (32, 64, 128, 128),
                 decoder_widths: tuple[int, ...] | list[int] = (128, 64, 32), head_width: int = 16,
                 spade_hidden: int = 64) -> None:
        super().__init__()
        e, d = list(encoder_widths), list(decoder_widths)
        self.encoder = nn.Sequential(
            ConvBlock(in_channels, e[0], 7, 1),
            ConvBlock(e[0], e[1], 3, 2),
            ConvBlock(e[1], e[2], 3, 2),
            ConvBlock(e[2], e[3], 3, 1),
        )
        self.blocks = nn.ModuleList([
            AttentionResBlock(e[3], d[0], num_maps, spade_hidden),
            AttentionResBlock(d[0], d[1], num_maps, spade_hidden),
            AttentionResBlock(d[1], d[2], num_maps, spade_hidden),
        ])
        self.head = nn.Sequential(
            nn.Conv2d(d[2], head_width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(head_width, out_channels, 3, padding=1),
            nn.Tanh(),
        )

    def forward(self, x: torch.Tensor, maps: torch.Tensor | None = None) -> torch.Tensor:
        features = self.encoder(x)
        for index, block in enumerate(self.blocks):
            if index:
                features = F.interpolate(features, scale_factor=2, mode="bilinear", align_corners=False)
            features = block(features, maps)
        return self.head(features)
