"""All networks of one SASAN run, their optimisers and the EMA copies that get exported.

Domain ``A`` is the source modality, ``B`` the target. ``attention[X]`` reads images of domain X (real or
translated into X) and feeds ``generators[X -> other]``; its segmentation head segments domain-X images.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..config import RunConfig
from ..models import build_image_discriminator, build_segmentation_discriminator, build_segmenter
from ..models.translator import (
    attention_name,
    build_translator,
    direction_name,
    generator_name,
    segmenter_name,
    translate,
)
from .schedule import constant_then_linear_decay


class SASANNetworks(nn.Module):
    """Attention modules, generators, discriminators and (optional) segmenter of one run."""

    def __init__(self, config: RunConfig) -> None:
        super().__init__()
        model, context, classes = config.model, config.data.context, config.num_classes
        self.modalities = (config.data.source.modality, config.data.target.modality)
        a, b = self.modalities
        self.directions = ((a, b), (b, a))
        translator = build_translator(model, context, classes, self.modalities, self.directions)
        self.attention = nn.ModuleDict({m: translator[attention_name(m)] for m in self.modalities
                                        if attention_name(m) in translator})
        self.generators = nn.ModuleDict({direction_name(s, t): translator[generator_name(s, t)]
                                         for s, t in self.directions})
        self.image_discriminators = nn.ModuleDict({a: build_image_discriminator(model, context),
                                                   b: build_image_discriminator(model, context)})
        self.segmentation_discriminator = (
            build_segmentation_discriminator(model, classes)
            if model.attention and config.losses.use_segmentation_discriminator
            and config.training.setup != "paired" else None)
        self.segmenter = build_segmenter(model, context, classes) if config.training.segmenter_steps else None

    def generator(self, source: str, target: str) -> nn.Module:
        return self.generators[direction_name(source, target)]

    def translate(self, x: torch.Tensor, source: str, target: str) -> tuple[torch.Tensor, torch.Tensor | None,
                                                                            torch.Tensor | None]:
        """``models.translator.translate`` with this run's ``source`` -> ``target`` networks."""
        return translate(self.attention[source] if source in self.attention else None,
                         self.generator(source, target), x)

    def discriminators(self) -> list[nn.Module]:
        found = list(self.image_discriminators.values())
        if self.segmentation_discriminator is not None:
            found.append(self.segmentation_discriminator)
        return found

    def translator(self) -> dict[str, nn.Module]:
        """The live attention modules and generators under their model-file names (what the EMA averages)."""
        named: dict[str, nn.Module] = {attention_name(m): module for m, module in self.attention.items()}
        named.update({generator_name(s, t): self.generator(s, t) for s, t in self.directions})
        return named

    def exported(self) -> dict[str, nn.Module]:
        """The networks a model file carries, under the model file's names."""
        named = self.translator()
        if self.segmenter is not None:
            named[segmenter_name(self.modalities[1])] = self.segmenter
        return named


def adam(params, config: RunConfig, lr: float) -> torch.optim.Adam:
    """Adam with the run's betas; fused (one vectorised kernel for every tensor) on the fast path.

    The fused update rounds differently from the default per-tensor loop, so the default path keeps the loop.
    """
    t = config.training
    return torch.optim.Adam(params, lr=lr, betas=tuple(t.betas), fused=True if t.fast else None)


def make_optimisers(networks: SASANNetworks, config: RunConfig) -> dict[str, torch.optim.Optimizer]:
    """Adam for the translator (generators + attention, attention with its own lr) and the discriminators."""
    t = config.training
    groups = [{"params": [p for g in networks.generators.values() for p in g.parameters()], "lr": t.lr}]
    attention = [p for a in networks.attention.values() for p in a.parameters() if p.requires_grad]
    if attention:
        groups.append({"params": attention, "lr": t.attention_lr or t.lr})
    discriminator = [p for d in networks.discriminators() for p in d.parameters()]
    return {"translator": adam(groups, config, t.lr), "discriminator": adam(discriminator, config, t.lr)}


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
