"""Which loss terms each set-up and ablation switch turns on, and that the terms are what they claim."""
from typing import Optional

import pytest
import torch

from sasan import losses
from sasan.training.networks import SASANNetworks
from sasan.training.objectives import attention_pretraining_objective, discriminator_objective, translator_objective

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


def test_pretraining_orthogonality_weight_ramps_up_over_the_warm_up():
    config = tiny_config(training={"pretrain_attention_steps": 100, "pretrain_regularization_warmup": 0.5},
                         losses={"regularization": 0.5})
    nets, batch = SASANNetworks(config), batches(["MR"])
    total = {step: attention_pretraining_objective(nets, batch, config, step)[0].item() for step in (0, 25, 50, 99)}
    maps, logits = nets.attention["MR"](batch["MR"]["image"])
    segmentation = losses.segmentation_loss(logits, batch["MR"]["label"]).item()
    orthogonality = losses.attention_orthogonality_loss(maps).item()
    assert orthogonality > 0.1
    assert total[0] == pytest.approx(segmentation, rel=1e-5)                        # no orthogonality at first
    assert total[25] == pytest.approx(segmentation + 0.25 * orthogonality, rel=1e-5)  # half way up the ramp
    assert total[50] == pytest.approx(segmentation + 0.5 * orthogonality, rel=1e-5)   # full weight from there on
    assert total[99] == pytest.approx(total[50], rel=1e-6)


def test_without_warm_up_pretraining_uses_the_full_orthogonality_weight_from_the_start():
    config = tiny_config(training={"pretrain_attention_steps": 100}, losses={"regularization": 0.5})
    nets, batch = SASANNetworks(config), batches(["MR"])
    assert (attention_pretraining_objective(nets, batch, config, 0)[0].item()
            == pytest.approx(attention_pretraining_objective(nets, batch, config, 99)[0].item(), rel=1e-6))
    maps, logits = nets.attention["MR"](batch["MR"]["image"])
    assert (attention_pretraining_objective(nets, batch, config, 0)[0].item() == pytest.approx(
        losses.segmentation_loss(logits, batch["MR"]["label"]).item()
        + 0.5 * losses.attention_orthogonality_loss(maps).item(), rel=1e-5))


def auxiliary_gradients(monkeypatch, mode: str, pseudo_label_steps: Optional[int] = None,
                        adversarial_step: int = 0) -> tuple[float, dict[str, bool]]:
    """The auxiliary term alone (other weights 0) for an unlabelled CT, and which networks it reaches."""
    monkeypatch.setattr("sasan.training.objectives.PSEUDO_LABEL_CONFIDENCE", 0.0)  # random heads are unsure
    config = tiny_config(losses={"pseudo_labels": mode, "pseudo_label_steps": pseudo_label_steps,
                                 "adversarial": 0.0, "cycle": 0.0, "identity": 0.0, "regularization": 0.0,
                                 "segmentation_adversarial": 0.0, "auxiliary": 1.0})
    torch.manual_seed(0)
    nets = SASANNetworks(config)
    total, _, _ = translator_objective(nets, batches(["MR"]), config, adversarial_step=adversarial_step)
    total.backward()
    reached = {name: any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in module.parameters())
               for name, module in [("attention.CT", nets.attention["CT"]),
                                    ("generator.CT_to_MR", nets.generators["CT_to_MR"]),
                                    ("generator.MR_to_CT", nets.generators["MR_to_CT"])]}
    return total.item(), reached


def test_pseudo_labels_from_the_translation_teach_the_unlabelled_head_only(monkeypatch):
    _, reached = auxiliary_gradients(monkeypatch, "translation")
    assert reached == {"attention.CT": True, "generator.CT_to_MR": False, "generator.MR_to_CT": True}


def test_own_pseudo_labels_teach_the_translator_into_the_labelled_domain(monkeypatch):
    assert tiny_config().losses.pseudo_labels == "own"  # the default
    _, reached = auxiliary_gradients(monkeypatch, "own")
    assert reached == {"attention.CT": True, "generator.CT_to_MR": True, "generator.MR_to_CT": True}


def test_without_pseudo_labels_only_ground_truth_terms_remain(monkeypatch):
    none, reached = auxiliary_gradients(monkeypatch, "none")
    translation, _ = auxiliary_gradients(monkeypatch, "translation")
    assert reached["generator.CT_to_MR"] is False
    assert 0 < none < translation  # the MR terms stay, the pseudo-labelled CT term is gone


def test_pseudo_labels_stop_after_their_steps(monkeypatch):
    during, reached_during = auxiliary_gradients(monkeypatch, "own", pseudo_label_steps=3, adversarial_step=2)
    after, reached_after = auxiliary_gradients(monkeypatch, "own", pseudo_label_steps=3, adversarial_step=3)
    without, _ = auxiliary_gradients(monkeypatch, "none")
    assert reached_during["generator.CT_to_MR"] is True and reached_after["generator.CT_to_MR"] is False
    assert after == pytest.approx(without) and during > after


@pytest.mark.parametrize("steps", [-1, "many"])
def test_bad_pseudo_label_steps_are_refused(steps):
    with pytest.raises(ValueError, match="pseudo_label_steps"):
        tiny_config(losses={"pseudo_label_steps": steps})


def test_unknown_pseudo_label_source_is_refused():
    with pytest.raises(ValueError, match="pseudo_labels"):
        tiny_config(losses={"pseudo_labels": "teacher"})
