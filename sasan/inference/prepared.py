"""The networks of one translation direction, prepared for one device and precision.

Preparation: a private copy of each network, rewritten by ``optimize_for_inference``, moved to the
device, cast entirely to the compute dtype (no per-op autocast casts: those copies cost as much as
the SPADE arithmetic itself at 256²) and laid out channels-last. Inputs and outputs stay float32;
the translation casts at its boundary.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from sasan.bundle import SASANModel
from sasan.models.translator import translate
from sasan.runtime import cpu_bf16_is_faster

from .fast_modules import optimize_for_inference


@dataclass
class PreparedNetworks:
    """Prepared networks: ``attention`` (maps for the generator; None for attention-free models),
    ``generator`` (source -> target), ``segmenter`` (the target's U-Net, or None)."""

    attention: Optional[nn.Module]
    generator: nn.Module
    segmenter: Optional[nn.Module]
    device: torch.device
    dtype: torch.dtype
    context: int

    @torch.inference_mode()
    def translate(self, stack: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """stack (B, context, S, S) float32 in [-1, 1] -> (centre slice (B, 1, S, S), maps (B, K, S, S) or None),
        both float32 on the networks' device."""
        translated, maps, _ = translate(self.attention, self.generator, self.prepare_input(stack))
        centre = self.context // 2
        return translated[:, centre : centre + 1].float(), None if maps is None else maps.float()

    @torch.inference_mode()
    def segment(self, stack: torch.Tensor) -> torch.Tensor:
        """stack (B, context, S, S) float32 translated slices -> class logits (B, classes, S, S) float32."""
        if self.segmenter is None:
            raise RuntimeError("these networks were prepared without a segmenter")
        return self.segmenter(self.prepare_input(stack)).float()

    def prepare_input(self, stack: torch.Tensor) -> torch.Tensor:
        """Cast (B, C, H, W) to the networks' device, dtype and channels-last layout."""
        return stack.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)

    def moved_to_cpu(self) -> "PreparedNetworks":
        """The same networks on the CPU (bf16 where it is faster there, else fp32)."""
        dtype = torch.bfloat16 if cpu_bf16_is_faster() else torch.float32
        device = torch.device("cpu")
        modules = [_place(module, device, dtype) if module is not None else None
                   for module in (self.attention, self.generator, self.segmenter)]
        return PreparedNetworks(*modules, device=device, dtype=dtype, context=self.context)


def prepare_networks(model: SASANModel, source: str, target: str, device: torch.device, dtype: torch.dtype,
                 *, segmenter: bool, private: bool = False) -> PreparedNetworks:
    """Prepare ``model``'s networks for ``source`` -> ``target`` on ``device`` in ``dtype``.

    ``private``: the model is this run's own (loaded from a file), so its networks are rewritten in
    place instead of copied; otherwise the caller's model is left untouched.
    """
    def prepare(module: Optional[nn.Module]) -> Optional[nn.Module]:
        if module is None:
            return None
        module = module if private else copy.deepcopy(module)
        return _place(optimize_for_inference(module), device, dtype)

    return PreparedNetworks(
        attention=prepare(model.attention(source)),
        generator=prepare(model.generator(source, target)),
        segmenter=prepare(model.segmenter(target)) if segmenter else None,
        device=device,
        dtype=dtype,
        context=model.card.context,
    )


def _place(module: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    return module.to(device=device, dtype=dtype, memory_format=torch.channels_last)
