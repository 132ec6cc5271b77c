"""Spatially adaptive normalisation (SPADE) driven by attention maps, and its residual block."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def maps_like(x: torch.Tensor, maps: torch.Tensor | None) -> torch.Tensor:
    """The attention maps (B, K, h, w) at the activations' (B, C, H, W) resolution, bilinearly; every
    re-normalisation of a generator built with attention maps needs them."""
    if maps is None:
        raise ValueError("this generator was built with attention maps; pass them")
    if maps.shape[-2:] != x.shape[-2:]:
        maps = F.interpolate(maps, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return maps


class AttentionNorm(nn.Module):
    """Instance-normalise x, then scale by gamma and shift by beta computed from the attention maps.

    x (B, C, H, W), maps (B, K, h, w) -> (B, C, H, W). The maps are resized to (H, W) first. With
    ``num_maps == 0`` (the attention-free ablation) it is a plain instance norm with a learned affine.
    """

    def __init__(self, channels: int, num_maps: int, hidden: int = 64) -> None:
        super().__init__()
        self.num_maps = num_maps
        self.norm = nn.InstanceNorm2d(channels, affine=num_maps == 0)
        if num_maps:
            self.shared = nn.Sequential(nn.Conv2d(num_maps, hidden, 3, padding=1), nn.ReLU(inplace=True))
            # One convolution yields gamma and beta together (half the kernel launches of two).
            self.gamma_beta = nn.Conv2d(hidden, 2 * channels, 3, padding=1)

    def forward(self, x: torch.Tensor, maps: torch.Tensor | None) -> torch.Tensor:
        normalized = self.norm(x)
        if not self.num_maps:
            return normalized
        gamma, beta = self.gamma_beta(self.shared(maps_like(x, maps))).chunk(2, dim=1)
        return torch.addcmul(beta, normalized, 1 + gamma)


class AttentionResBlock(nn.Module):
    """SPADE residual block: x (B, C_in, H, W), maps -> (B, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, num_maps: int, hidden: int = 64) -> None:
        super().__init__()
        middle = min(in_channels, out_channels)
        self.norm1 = AttentionNorm(in_channels, num_maps, hidden)
        self.conv1 = nn.Conv2d(in_channels, middle, 3, padding=1)
        self.norm2 = AttentionNorm(middle, num_maps, hidden)
        self.conv2 = nn.Conv2d(middle, out_channels, 3, padding=1)
        self.shortcut_norm = AttentionNorm(in_channels, num_maps, hidden) if in_channels != out_channels else None
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, maps: torch.Tensor | None) -> torch.Tensor:
        residual = self.conv1(F.leaky_relu(self.norm1(x, maps), 0.2))
        residual = self.conv2(F.leaky_relu(self.norm2(residual, maps), 0.2))
        if self.shortcut is not None:
            x = self.shortcut(self.shortcut_norm(x, maps))
        return x + residual
