"""The attention module A: a light U-Net giving K attention maps and a one-convolution segmentation head."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import DoubleConv, run_unet


class AttentionModule(nn.Module):
    """x (B, C_in, H, W) -> (maps (B, K, H, W), segmentation logits (B, num_classes, H, W)).

    The maps are a softmax over K, so every pixel distributes one unit of attention over the maps; the
    orthogonality loss then pushes each pixel towards a single map. ``widths`` gives the channels per
    U-Net level (the first at full resolution, each next one at half); H and W must be divisible by
    ``2 ** (len(widths) - 1)``. The segmentation head is one 1x1 convolution of the maps; its logits are
    multiplied by ``head_scale`` because maps in [0, 1] otherwise give logits too flat to learn from.
    The head starts as the identity from the first ``num_classes`` maps to the classes (the other maps
    free), so that every class owns a map from the first step.
    """

    def __init__(self, in_channels: int = 3, num_maps: int = 8, num_classes: int = 5,
                 widths: tuple[int, ...] | list[int] = (32, 64, 128, 256), head_scale: float = 10.0) -> None:
        super().__init__()
        widths = list(widths)
        self.num_maps = num_maps
        self.head_scale = head_scale
        self.down = nn.ModuleList()
        previous = in_channels
        for width in widths:
            self.down.append(DoubleConv(previous, width, norm="instance"))
            previous = width
        self.up = nn.ModuleList(
            DoubleConv(widths[level + 1] + widths[level], widths[level], norm="instance")
            for level in reversed(range(len(widths) - 1))
        )
        self.to_maps = nn.Conv2d(widths[0], num_maps, 1)
        self.segmentation_head = nn.Conv2d(num_maps, num_classes, 1)
        # With a random head the saturating softmax could leave a class without a map for good: the LA
        # blood pool (as bright as the LV's) stayed at Dice 0 after pre-training with phantom seed 1
        # (benchmarks/RESULTS.md, "Attention pre-training: random head against identity head").
        with torch.no_grad():
            self.segmentation_head.weight.zero_()
            self.segmentation_head.bias.zero_()
            for index in range(min(num_maps, num_classes)):
                self.segmentation_head.weight[index, index] = 1.0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = run_unet(x, self.down, self.up)
        maps = torch.softmax(self.to_maps(x), dim=1)
        return maps, self.segmentation_head(maps) * self.head_scale
