"""Shapes, parameter counts and behaviour of the SASAN networks."""
import pytest
import torch

from sasan.config import ModelConfig
from sasan.models import (
    AttentionModule,
    Generator,
    PatchDiscriminator,
    UNet,
    build_attention,
    build_generator,
    build_segmenter,
)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_paper_size_parameter_counts():
    # The README quotes these figures; they follow from the appendix widths at K = 8, 5 classes.
    config = ModelConfig()
    assert count(build_generator(config, 3)) == 1_580_995
    assert count(build_segmenter(config, 3, 5)) == 17_263_237
    assert count(build_attention(config, 3, 5)) == 1_948_565


def test_attention_maps_are_a_partition_and_head_gives_class_logits():
    module = AttentionModule(3, num_maps=4, num_classes=3, widths=(8, 16))
    maps, logits = module(torch.randn(2, 3, 32, 32))
    assert maps.shape == (2, 4, 32, 32) and logits.shape == (2, 3, 32, 32)
    assert torch.allclose(maps.sum(1), torch.ones(2, 32, 32), atol=1e-5)
    assert maps.min() >= 0


def test_every_class_starts_owning_one_map():
    # A pixel wholly on map c is labelled c at initialisation; the maps beyond the classes label nothing.
    module = AttentionModule(3, num_maps=6, num_classes=4, widths=(8, 16))
    one_hot = torch.eye(6)[:, :, None, None]  # six pixels-worth of maps, each on one map
    logits = module.segmentation_head(one_hot) * module.head_scale
    assert logits[:4].squeeze().argmax(1).tolist() == [0, 1, 2, 3]
    assert torch.all(logits[4:] == 0)


def test_generator_shapes_range_and_dependence_on_maps():
    generator = Generator(3, 3, num_maps=4, encoder_widths=(8, 16, 16, 16), decoder_widths=(16, 8, 8),
                          head_width=4, spade_hidden=8)
    x = torch.randn(2, 3, 32, 32)
    maps_a = torch.softmax(torch.randn(2, 4, 32, 32), 1)
    maps_b = torch.softmax(torch.randn(2, 4, 32, 32), 1)
    out_a, out_b = generator(x, maps_a), generator(x, maps_b)
    assert out_a.shape == (2, 3, 32, 32)
    assert out_a.abs().max() <= 1
    # SPADE re-normalisation: other maps must give another image.
    assert (out_a - out_b).abs().mean() > 1e-4


def test_attention_free_generator_for_the_cyclegan_baseline():
    generator = Generator(1, 1, num_maps=0, encoder_widths=(4, 8, 8, 8), decoder_widths=(8, 4, 4), head_width=4)
    assert generator(torch.randn(1, 1, 16, 16)).shape == (1, 1, 16, 16)
    with pytest.raises(ValueError):
        Generator(1, 1, num_maps=2, encoder_widths=(4, 8, 8, 8), decoder_widths=(8, 4, 4))(torch.randn(1, 1, 16, 16))


def test_discriminator_patch_scores():
    assert PatchDiscriminator(3, (8, 16, 32))(torch.randn(2, 3, 64, 64)).shape == (2, 1, 8, 8)


def test_unet_fits_a_tiny_problem():
    """Learning, not just running: 40 Adam steps on one square image lower the loss by 5x or more."""
    torch.manual_seed(0)
    image = -torch.ones(1, 1, 32, 32)
    image[..., 8:20, 10:24] = 1.0
    target = (image[:, 0] > 0).long()
    net = UNet(1, 2, width=8, depth=2)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(net(image), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 5
