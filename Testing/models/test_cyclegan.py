"""The CycleGAN baseline's ResNet generator: its published size, its shapes, and its refusals."""
import pytest
import torch

from sasan.config import ConfigError, ModelConfig, config_from_dict
from sasan.models import ResnetGenerator, build_generator
from Testing.training.tiny import TINY_RUN


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_the_paper_size_generator_has_cyclegans_published_parameter_count():
    # Zhu et al.'s code prints 11.378 M parameters for its resnet_9blocks generator (RGB in and out, 64 wide)
    assert count(ResnetGenerator(3, 3, width=64, blocks=9)) == 11_378_179


def test_the_configuration_builds_it_and_it_keeps_the_image_size():
    generator = build_generator(ModelConfig(generator="resnet", attention=False, resnet_width=8, resnet_blocks=2), 3)
    assert isinstance(generator, ResnetGenerator)
    y = generator(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 3, 32, 32) and y.abs().max() <= 1
    with pytest.raises(ValueError, match="takes no attention maps"):
        generator(torch.randn(1, 3, 32, 32), torch.rand(1, 2, 32, 32))


def test_a_resnet_generator_with_attention_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"^model\.generator: the 'resnet' generator takes no attention maps"):
        config_from_dict({**TINY_RUN, "model": {**TINY_RUN["model"], "generator": "resnet"}})
