"""All networks of one SASAN run, their optimisers and the EMA copies that get exported.

Domain ``A`` is the source modality, ``B`` the target. ``attention[X]`` reads images of domain X (real or
translated into X) and feeds ``generators[X -> other]``; its segmentation head segments domain-X images.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..config import RunConfig
from ..models import (
    build_attention,
    build_generator,
    build_image_discriminator,
    build_segmentation_discriminator,
    build_segmenter,
)
from .schedule import constant_then_linear_decay


class SASANNetworks(nn.Module):
    """Attention modules, generators, discriminators and (optional) segmenter of one run."""

    def __init__(self, config: RunConfig) -> None:
        super().__init__()
        model, context, classes = config.model, config.data.context, config.num_classes
        self.modalities = (config.data.source.modality, config.data.target.modality)
        a, b = self.modalities
        self.attention = nn.ModuleDict()
        if model.attention:
            self.attention.update({a: build_attention(model, context, classes),
                                   b: build_attention(model, context, classes)})
        self.generators = nn.ModuleDict({f"{a}_to_{b}": build_generator(model, context),
                                         f"{b}_to_{a}": build_generator(model, context)})
        self.image_discriminators = nn.ModuleDict({a: build_image_discriminator(model, context),
                                                   b: build_image_discriminator(model, context)})
        self.segmentation_discriminator = (
            build_segmentation_discriminator(model, classes)
            if model.attention and config.losses.use_segmentation_discriminator
            and config.training.setup != "paired" else None)
        self.segmenter = build_segmenter(model, context, classes) if config.training.segmenter_steps else None

    def generator(self, source: str, target: str) -> nn.Module:
        return self.generators[f"{source}_to_{target}"]

    def translate(self, x: torch.Tensor, source: str, target: str) -> tuple[torch.Tensor, torch.Tensor | None,
                                                                            torch.Tensor | None]:
        """x (B, C, H, W) of ``source`` -> (translated (B, C, H, W), maps (B, K, H, W), seg logits) ."""
        if source in self.attention:
            maps, logits = self.attention[source](x)
        else:
            maps, logits = None, None
        return self.generator(source, target)(x, maps), maps, logits

    def discriminators(self) -> list[nn.Module]:
        found = list(self.image_discriminators.values())
        if self.segmentation_discriminator is not None:
            found.append(self.segmentation_discriminator)
        return found

    def exported(self) -> dict[str, nn.Module]:
        """The networks a model file carries, under the model file's names."""
        named = {f"attention.{m}": module for m, module in self.attention.items()}
        named.update({f"generator.{d}": module for d, module in self.generators.items()})
        if self.segmenter is not None:
            named[f"segmenter.{self.modalities[1]}"] = self.segmenter
        return named


def make_optimisers(networks: SASANNetworks, config: RunConfig) -> dict[str, torch.optim.Optimizer]:
    """Adam for the translator (generators + attention, attention with its own lr) and the discriminators."""
    t = config.training
    betas = tuple(t.betas)
    groups = [{"params": [p for g in networks.generators.values() for p in g.parameters()], "lr": t.lr}]
    attention = [p for a in networks.attention.values() for p in a.parameters() if p.requires_grad]
    if attention:
        groups.append({"params": attention, "lr": t.attention_lr or t.lr})
    discriminator = [p for d in networks.discriminators() for p in d.parameters()]
    return {"translator": torch.optim.Adam(groups, betas=betas),
            "discriminator": torch.optim.Adam(discriminator, lr=t.lr, betas=betas)}


def make_schedulers(optimisers: dict[str, torch.optim.Optimizer], config: RunConfig) -> dict:
    factor = constant_then_linear_decay(config.training.steps, config.training.decay_start)
    return {name: torch.optim.lr_scheduler.LambdaLR(opt, factor) for name, opt in optimisers.items()}


class ExponentialAverage:
    """EMA of the translator's weights (GAN runs oscillate; the average is what gets exported)."""

    def __init__(self, modules: dict[str, nn.Module], decay: float) -> None:
        self.decay = decay
        self.shadow = {name: copy.deepcopy(module).eval().requires_grad_(False) for name, module in modules.items()}

    @torch.no_grad()
    def update(self, modules: dict[str, nn.Module]) -> None:
        for name, module in modules.items():
            for averaged, current in zip(self.shadow[name].state_dict().values(), module.state_dict().values()):
                if averaged.is_floating_point():
                    averaged.lerp_(current, 1.0 - self.decay)
                else:
                    averaged.copy_(current)

    @torch.no_grad()
    def reset(self, modules: dict[str, nn.Module]) -> None:
        """Restart the average at the modules' current weights."""
        for name, module in modules.items():
            self.shadow[name].load_state_dict(module.state_dict())

    def state_dict(self) -> dict:
        return {name: module.state_dict() for name, module in self.shadow.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, module in self.shadow.items():
            module.load_state_dict(state[name])
