"""Which loss terms each set-up and ablation switch turns on, and that the terms are what they claim."""
import pytest
import torch

from sasan.training.networks import SASANNetworks
from sasan.training.objectives import discriminator_objective, translator_objective

from .tiny import tiny_config


def batches(labelled=("MR",), size=32):
    torch.manual_seed(0)
    out = {}
    for modality in ("CT", "MR"):
        label = torch.randint(0, 5, (2, size, size)) if modality in labelled else -torch.ones(2, size, size).long()
        out[modality] = {"image": torch.rand(2, 3, size, size) * 2 - 1, "label": label}
    return out


def terms_for(**sections):
    config = tiny_config(**sections)
    nets = SASANNetworks(config)
    labelled = [m for m, d in (("CT", config.data.source), ("MR", config.data.target)) if d.labelled]
    total, terms, outputs = translator_objective(nets, batches(labelled), config)
    d_total, d_terms = discriminator_objective(nets, batches(labelled), outputs, config)
    return config, total, terms, d_terms


def test_unpaired_uses_every_loss_of_the_paper():
    config, total, terms, d_terms = terms_for()
    assert set(terms) == {"adversarial", "cycle", "identity", "regularization", "auxiliary",
                          "segmentation_adversarial"}
    assert set(d_terms) == {"D_CT", "D_MR", "D_segmentation"}
    w = config.losses
    expected = (w.adversarial * terms["adversarial"] + w.cycle * terms["cycle"] + w.identity * terms["identity"]
                + w.regularization * terms["regularization"] + w.auxiliary * terms["auxiliary"]
                + w.segmentation_adversarial * terms["segmentation_adversarial"])
    assert total.item() == pytest.approx(expected, rel=1e-5)


def test_paired_adds_voxel_loss_and_drops_the_segmentation_discriminator():
    _, _, terms, d_terms = terms_for(training={"setup": "paired"})
    assert "voxel" in terms and "segmentation_adversarial" not in terms and "D_segmentation" not in d_terms


def test_both_labelled_domains_use_ground_truth_on_both_sides():
    _, _, terms, _ = terms_for(data={"source": {"modality": "CT", "layout": "phantom", "labelled": True}},
                               training={"setup": "unpaired_both_labels"})
    assert "auxiliary" in terms


@pytest.mark.parametrize("switch, missing", [
    ({"losses": {"use_segmentation_discriminator": False}}, "segmentation_adversarial"),
    ({"losses": {"use_auxiliary": False}}, "auxiliary"),
    ({"losses": {"use_regularization": False}}, "regularization"),
    ({"losses": {"identity": 0.0}}, "identity"),
])
def test_ablation_switches_remove_their_term(switch, missing):
    _, _, terms, _ = terms_for(**switch)
    assert missing not in terms


def test_cyclegan_style_baseline_has_no_attention_at_all():
    config = tiny_config(model={"attention": False})
    nets = SASANNetworks(config)
    assert len(nets.attention) == 0 and nets.segmentation_discriminator is None
    _, terms, _ = translator_objective(nets, batches(), config)
    assert set(terms) == {"adversarial", "cycle", "identity"}


def test_bf16_autocast_keeps_losses_in_fp32():
    config = tiny_config()
    total, _, _ = translator_objective(SASANNetworks(config), batches(), config, autocast=torch.bfloat16)
    assert total.dtype == torch.float32 and torch.isfinite(total)
