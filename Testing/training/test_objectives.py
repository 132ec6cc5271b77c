"""Which loss terms each set-up and ablation switch turns on, and that the terms are what they claim."""
import math
from typing import Optional

import pytest
import torch
from torch import nn

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


def test_the_ablation_without_spade_has_no_attention_at_all():
    config = tiny_config(model={"attention": False}, training={"pretrain_attention_steps": 0})
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


# --- the combined objectives, worked out by hand ------------------------------------------------------

class ConstantAttention(nn.Module):
    """Two attention maps of 0.5 everywhere and a two-class head whose class-1 probability is ``p`` everywhere."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.logit = math.log(p / (1 - p))

    def forward(self, x):
        b, _, h, w = x.shape
        return torch.full((b, 2, h, w), 0.5), torch.stack([torch.zeros(b, h, w), torch.full((b, h, w), self.logit)], 1)


class Unchanged(nn.Module):
    """A generator that returns its input: every cycle and identity term is 0."""

    def forward(self, x, maps=None):
        return x


class FirstChannel(nn.Module):
    """A discriminator whose score map is one channel of its input (an image's first slice, a class's probability)."""

    def __init__(self, channel: int = 0) -> None:
        super().__init__()
        self.channel = channel

    def forward(self, x):
        return x[:, self.channel:self.channel + 1]


def hand_worked_networks(pseudo_labels: str):
    """Networks with known outputs: CT's head says class 1 with 0.75 everywhere, MR's with 0.25; the image
    discriminators score a pixel by its value, the segmentation discriminator by its class-1 probability."""
    config = tiny_config(data={"labels": [{"name": "structure", "value": 1}]},
                         losses={"pseudo_labels": pseudo_labels, "adversarial": 1.0, "segmentation_adversarial": 1.0,
                                 "cycle": 10.0, "identity": 2.5, "regularization": 0.1, "auxiliary": 0.5})
    nets = SASANNetworks(config)
    nets.attention = nn.ModuleDict({"CT": ConstantAttention(0.75), "MR": ConstantAttention(0.25)})
    nets.generators = nn.ModuleDict({"CT_to_MR": Unchanged(), "MR_to_CT": Unchanged()})
    nets.image_discriminators = nn.ModuleDict({"CT": FirstChannel(), "MR": FirstChannel()})
    nets.segmentation_discriminator = FirstChannel(1)
    mr_labels = torch.zeros(1, 16, 16, dtype=torch.long)
    mr_labels[..., 8:] = 1                                          # half background, half the structure
    batch = {"CT": {"image": torch.full((1, 3, 16, 16), 0.2), "label": -torch.ones(1, 16, 16, dtype=torch.long)},
             "MR": {"image": torch.full((1, 3, 16, 16), -0.4), "label": mr_labels}}
    return config, nets, batch


@pytest.mark.parametrize("pseudo_labels, unlabelled_auxiliary", [
    # "translation" (the paper): MR's head on CT translated to MR says background (0.75) -> CT's own head,
    # class-1 probability 0.75 everywhere, pays -ln 0.25; no structure in the labels, so no Dice term.
    ("translation", math.log(4)),
    # "own": CT's head says the structure (0.75) -> MR's head on the translation (0.25) pays -ln 0.25
    # plus a Dice loss of 1 - 2 * 0.25 / (0.25 + 1) = 0.6.
    ("own", math.log(4) + 0.6),
])
def test_the_combined_objectives_match_a_hand_worked_step(pseudo_labels, unlabelled_auxiliary):
    config, nets, batch = hand_worked_networks(pseudo_labels)
    total, terms, outputs = translator_objective(nets, batch, config)
    adversarial = (0.2 - 1) ** 2 + (-0.4 - 1) ** 2          # D_MR(fake MR = CT's 0.2), D_CT(fake CT = MR's -0.4)
    regularization = 4 * math.sqrt(2)                        # two equal maps: ||[[1, 1], [1, 1]] - I||_F, 4 times
    # MR's labels: its own head (class-1 probability 0.25): CE mean(-ln 0.75, -ln 0.25), Dice 2*0.125/0.75;
    # CT's head on MR translated to CT (0.75): CE mean(-ln 0.25, -ln 0.75), Dice 2*0.375/1.25.
    labelled_auxiliary = (math.log(4 / 3) + math.log(4)) / 2 + (1 - 1 / 3) + (math.log(4) + math.log(4 / 3)) / 2 + 0.4
    auxiliary = labelled_auxiliary + unlabelled_auxiliary
    # eq. (1), generator side: both fakes, A_CT(x_CT) (0.75) and A_MR(G(x_CT)) (0.25), summed
    segmentation_adversarial = (0.75 - 1) ** 2 + (0.25 - 1) ** 2
    assert terms == pytest.approx({"adversarial": adversarial, "cycle": 0.0, "identity": 0.0,
                                   "regularization": regularization, "auxiliary": auxiliary,
                                   "segmentation_adversarial": segmentation_adversarial}, abs=1e-5)
    assert total.item() == pytest.approx(adversarial + 0.1 * regularization + 0.5 * auxiliary
                                         + segmentation_adversarial, abs=1e-5)

    d_total, d_terms = discriminator_objective(nets, batch, outputs, config)
    # eq. (1), discriminator side: the real term (one-hot MR labels: class 1 on half the pixels) weighted 2
    # against the two fakes' terms, summed: 0.5 * (2 * 0.5 + 0.75^2 + 0.25^2)
    expected = {"D_CT": 0.5 * ((0.2 - 1) ** 2 + 0.4 ** 2), "D_MR": 0.5 * ((-0.4 - 1) ** 2 + 0.2 ** 2),
                "D_segmentation": 0.5 * (2 * 0.5 + 0.75 ** 2 + 0.25 ** 2)}
    assert d_terms == pytest.approx(expected, abs=1e-6)
    assert d_total.item() == pytest.approx(sum(expected.values()), abs=1e-6)
