"""The translator: one attention module per modality, one generator per direction, and their names.

A translator is a dict of networks under the names a model file stores them by (and a checkpoint's EMA,
and the networks the detached U-Net borrows from another model): ``attention.<MOD>`` reads images of
modality MOD (real or translated into MOD) and gives the maps for the generators out of MOD and a
segmentation of MOD; ``generator.<SRC>_to_<TGT>`` translates SRC into TGT. Attention-free models (the
CycleGAN baseline and the SASAN-without-SPADE ablation) have no attention modules. The target's detached
U-Net is ``segmenter.<MOD>``. This module is the one place that spells these names and the translation step.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
from torch import nn

from ..config import ModelConfig
from . import build_attention, build_generator

__all__ = [
    "attention_name", "build_translator", "direction_name", "direction_networks", "generator_name",
    "segmenter_name", "translate",
]


def direction_name(source: str, target: str) -> str:
    """``"CT_to_MR"``: a translation direction, as generators are keyed in a run's checkpoints."""
    return f"{source}_to_{target}"


def attention_name(modality: str) -> str:
    """``"attention.CT"``: the attention module (with its segmentation head) of ``modality``."""
    return f"attention.{modality}"


def generator_name(source: str, target: str) -> str:
    """``"generator.CT_to_MR"``: the generator translating ``source`` into ``target``."""
    return f"generator.{direction_name(source, target)}"


def segmenter_name(modality: str) -> str:
    """``"segmenter.MR"``: the detached U-Net segmenting ``modality``."""
    return f"segmenter.{modality}"


def build_translator(model: ModelConfig, context: int, num_classes: int, modalities: Sequence[str],
                     directions: Sequence[Sequence[str]]) -> dict[str, nn.Module]:
    """Freshly initialised translator networks under their names: an attention module for each of
    ``modalities`` (none when ``model.attention`` is off), then a generator for each ``(source, target)`` of
    ``directions``, built in that order (the order fixes the random draws of their initial weights).

    Images have ``context`` adjacent slices as channels; the attention heads predict ``num_classes`` classes.
    """
    networks: dict[str, nn.Module] = {}
    if model.attention:
        for modality in modalities:
            networks[attention_name(modality)] = build_attention(model, context, num_classes)
    for source, target in directions:
        networks[generator_name(source, target)] = build_generator(model, context)
    return networks


def direction_networks(translator: Mapping[str, nn.Module], source: str,
                       target: str) -> tuple[Optional[nn.Module], nn.Module]:
    """The attention module of ``source`` (None in an attention-free translator) and the ``source`` ->
    ``target`` generator of ``translator``: the arguments of ``translate``."""
    return translator.get(attention_name(source)), translator[generator_name(source, target)]


def translate(attention: Optional[nn.Module], generator: nn.Module,
              x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """One translation step, attention -> generator.

    Args:
        attention: the source modality's attention module, or None (attention-free: no maps).
        generator: the source -> target generator.
        x: source images (B, C, H, W), C adjacent slices in [-1, 1].

    Returns:
        translated (B, C, H, W) in [-1, 1]; the attention maps (B, K, H, W) and the attention head's
        segmentation logits of ``x`` (B, classes, H, W), both None without attention.
    """
    maps, logits = attention(x) if attention is not None else (None, None)
    return generator(x, maps), maps, logits
