"""The networks of SASAN, and builders that size them from a run configuration."""
from __future__ import annotations

from ..config import ModelConfig
from .attention import AttentionModule
from .cyclegan import ResnetGenerator
from .discriminators import PatchDiscriminator
from .generator import Generator
from .unet import UNet

__all__ = [
    "AttentionModule", "Generator", "PatchDiscriminator", "ResnetGenerator", "UNet",
    "build_attention", "build_generator", "build_image_discriminator",
    "build_segmentation_discriminator", "build_segmenter",
]


def build_attention(model: ModelConfig, context: int, num_classes: int) -> AttentionModule:
    """Attention module for images with ``context`` adjacent slices as channels."""
    return AttentionModule(context, model.num_maps, num_classes, model.attention_widths, model.seg_head_scale)


def build_generator(model: ModelConfig, context: int) -> Generator | ResnetGenerator:
    """Generator translating a ``context``-slice stack into a stack of the same size (``model.generator``)."""
    if model.generator == "resnet":
        return ResnetGenerator(context, context, model.resnet_width, model.resnet_blocks)
    return Generator(context, context, model.num_maps if model.attention else 0, model.encoder_widths,
                     model.decoder_widths, model.head_width, model.spade_hidden)


def build_image_discriminator(model: ModelConfig, context: int) -> PatchDiscriminator:
    return PatchDiscriminator(context, model.image_discriminator_widths)


def build_segmentation_discriminator(model: ModelConfig, num_classes: int) -> PatchDiscriminator:
    return PatchDiscriminator(num_classes, model.segmentation_discriminator_widths)


def build_segmenter(model: ModelConfig, context: int, num_classes: int) -> UNet:
    return UNet(context, num_classes, model.segmenter_width, model.segmenter_depth)
