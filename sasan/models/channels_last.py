"""Training-time rewrites that keep every activation channels-last, with the same parameters.

On the CPU a channels-last convolution runs about 1.3-1.5x faster than the same convolution on NCHW tensors,
forward and backward (measured at 256², paper widths), but two modules of the networks undo the layout:

- ``nn.InstanceNorm2d`` (``F.instance_norm``) reshapes a channels-last tensor into a contiguous copy and
  runs about 3x slower there, forward and backward. Per image, instance normalisation *is* a training-mode
  batch norm without running statistics, whose kernel reads channels-last directly:
  ``ChannelsLastInstanceNorm``.
- ``AttentionNorm`` splits one convolution's output into gamma and beta with ``chunk``: two strided views
  that make its ``addcmul`` mix layouts. ``SplitAttentionNorm`` computes gamma and beta by two
  convolutions with the two halves of the same weight (contiguous outputs), ``1 + gamma`` folded into
  gamma's bias.
- ``torch.softmax(x, 1)`` returns a channels-last ``x`` as an NCHW tensor, so the attention maps (and with
  them every SPADE input) would leave the layout. ``ChannelsLastAttentionModule`` takes the softmax over
  the innermost axis of the channels-last memory instead.

Both are subclasses that keep their parameters under the same names, so state dicts, checkpoints, model
files, optimisers and the EMA see the same tensors; ``use_channels_last`` swaps them in and moves the
module's weights to the channels-last layout. The results equal the stock modules' to rounding (forward
and gradients; Testing/test_channels_last.py), not bit for bit: a run that uses them is its own precision
mode for exact resume. (``sasan.inference.fast_modules`` has inference-only versions of the same ideas.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import AttentionModule
from .blocks import run_unet
from .spade import AttentionNorm, maps_like

CHANNELS_LAST = torch.channels_last


class ChannelsLastInstanceNorm(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` without running statistics, (B, C, H, W) -> (B, C, H, W) in the input's layout.

    Image by image through the batch-norm kernel (biased statistics over H, W, as the instance norm's), then
    the images joined again; differentiable, the affine parameters (if any) are the original module's.
    """

    @classmethod
    def from_module(cls, norm: nn.InstanceNorm2d) -> "ChannelsLastInstanceNorm":
        if norm.track_running_stats:
            raise ValueError("an instance norm with running statistics has no channels-last rewrite")
        fast = cls(norm.num_features, norm.eps, norm.momentum, affine=False, track_running_stats=False)
        fast.affine = norm.affine
        fast.weight, fast.bias = norm.weight, norm.bias  # the same Parameters (or None)
        return fast

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected (B, C, H, W) activations, got shape {tuple(x.shape)}")
        images = [F.batch_norm(image, None, None, self.weight, self.bias, True, 0.0, self.eps)
                  for image in x.split(1)]
        return images[0] if len(images) == 1 else torch.cat(images)


def softmax_over_channels(x: torch.Tensor) -> torch.Tensor:
    """``torch.softmax(x, 1)`` of (B, C, H, W) in ``x``'s layout: channels-last stays channels-last."""
    if x.dim() == 4 and x.is_contiguous(memory_format=CHANNELS_LAST) and not x.is_contiguous():
        return torch.softmax(x.permute(0, 2, 3, 1), dim=-1).permute(0, 3, 1, 2)
    return torch.softmax(x, 1)


def _rebased(module: nn.Module, cls: type) -> nn.Module:
    """An instance of ``cls`` (a subclass of ``module``'s class) holding ``module``'s submodules, parameters
    and attributes: the same objects, registered in the same order."""
    fast = cls.__new__(cls)
    fast.__dict__.update(module.__dict__)
    return fast


class ChannelsLastAttentionModule(AttentionModule):
    """``AttentionModule`` whose maps keep the input's layout: (maps (B, K, H, W), logits (B, classes, H, W))."""

    @classmethod
    def from_module(cls, original: AttentionModule) -> "ChannelsLastAttentionModule":
        return _rebased(original, cls)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = softmax_over_channels(self.to_maps(run_unet(x, self.down, self.up)))
        return maps, self.segmentation_head(maps) * self.head_scale


class SplitAttentionNorm(AttentionNorm):
    """``AttentionNorm`` with gamma and beta from two convolutions over the halves of ``gamma_beta``'s weight.

    x (B, C, H, W), maps (B, K, h, w) -> (B, C, H, W): ``beta + norm(x) * (1 + gamma)``, as the original.
    """

    @classmethod
    def from_module(cls, original: AttentionNorm) -> "SplitAttentionNorm":
        if not original.num_maps:
            raise ValueError("an attention-free AttentionNorm is a plain instance norm; rewrite its .norm instead")
        return _rebased(original, cls)

    def forward(self, x: torch.Tensor, maps: torch.Tensor | None) -> torch.Tensor:
        hidden = self.shared(maps_like(x, maps))
        normalized = self.norm(x)
        joint = self.gamma_beta
        channels = joint.out_channels // 2
        weight, bias = joint.weight, joint.bias
        scale = F.conv2d(hidden, weight[:channels], bias[:channels] + 1.0, joint.stride, joint.padding)
        shift = F.conv2d(hidden, weight[channels:], bias[channels:], joint.stride, joint.padding)
        return torch.addcmul(shift, normalized, scale)


def use_channels_last(module: nn.Module) -> nn.Module:
    """Swap in the channels-last rewrites of the submodules (not of ``module`` itself) and lay the weights
    out channels-last; in place, returns ``module``.

    Parameters stay the same objects (build optimisers before or after: both see them), only the 4D
    weights change their memory layout.
    """
    _swap_norms(module)
    return module.to(memory_format=CHANNELS_LAST)


def _swap_norms(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if type(child) is AttentionNorm and child.num_maps:
            child = SplitAttentionNorm.from_module(child)
        elif type(child) is AttentionModule:
            child = ChannelsLastAttentionModule.from_module(child)
        elif type(child) is nn.InstanceNorm2d and not child.track_running_stats:
            child = ChannelsLastInstanceNorm.from_module(child)
        setattr(module, name, child)
        _swap_norms(child)
