"""``validation_dice`` on its own: hand-made networks whose Dice is known, on hand-made held-out volumes."""
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from sasan.training.validation import validation_dice


class Threshold(nn.Module):
    """Class 1 where the centre channel times ``sign`` is above 0: logits (B, 2, H, W); records its modes."""

    def __init__(self, sign: float) -> None:
        super().__init__()
        self.sign = sign
        self.modes: list[bool] = []

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        value = self.sign * x[:, 1:2]
        return torch.cat([-value, value], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)


class Head(Threshold):
    """An attention module's interface: (maps (B, 2, H, W), logits)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.logits(x)
        return torch.softmax(logits, dim=1), logits


class Negate(nn.Module):
    """A generator that turns every image into its negative; records whether it was given maps."""

    def __init__(self) -> None:
        super().__init__()
        self.given_maps: list[bool] = []

    def forward(self, x: torch.Tensor, maps: torch.Tensor | None = None) -> torch.Tensor:
        self.given_maps.append(maps is not None)
        return -x


def held_out_volumes() -> list:
    """Two volumes of normalised slices (6, 16, 16), labelled 1 wherever the slice is above 0."""
    rng = np.random.default_rng(0)
    stacks = [rng.uniform(-1.0, 1.0, (6, 16, 16)).astype(np.float32) for _ in range(2)]
    return [SimpleNamespace(stack=s, labels=(s > 0).astype(np.int64)) for s in stacks]


def run(volumes, translator, segmenter):
    return validation_dice(volumes, translator, segmenter, source="CT", target="MR", image_size=16, context=3,
                    num_classes=2, device=torch.device("cpu"))


def test_translated_slices_are_scored_by_the_target_head_and_the_segmenter():
    # The translation negates: the MR head (class 1 below 0) finds every labelled pixel, the segmenter
    # (class 1 above 0) none.
    translator = {"attention.CT": Head(1.0), "generator.CT_to_MR": Negate(), "attention.MR": Head(-1.0)}
    segmenter = Threshold(1.0)
    assert run(held_out_volumes(), translator, segmenter) == {"val/dice_attention_head": 1.0,
                                                              "val/dice_segmenter": 0.0}
    assert translator["generator.CT_to_MR"].given_maps == [True]


def test_without_a_translator_the_segmenter_scores_the_volumes_as_they_are():
    assert run(held_out_volumes(), None, Threshold(1.0)) == {"val/dice_segmenter": 1.0}


def test_an_attention_free_translator_gives_only_the_segmenter_score():
    generator = Negate()
    assert run(held_out_volumes(), {"generator.CT_to_MR": generator}, Threshold(-1.0)) == {"val/dice_segmenter": 1.0}
    assert generator.given_maps == [False]
    assert run(held_out_volumes(), {"generator.CT_to_MR": generator}, None) == {}


def test_nothing_is_scored_without_networks_or_labelled_slices():
    assert run(held_out_volumes(), None, None) == {}
    unlabelled = [SimpleNamespace(stack=v.stack, labels=None) for v in held_out_volumes()]
    assert run(unlabelled, None, Threshold(1.0)) == {}
    assert run([], None, Threshold(1.0)) == {}


def test_networks_run_in_eval_mode_and_return_to_their_own_modes():
    head, segmenter = Head(-1.0), Threshold(-1.0)
    head.eval()  # an EMA copy stays in eval mode; the live segmenter goes back to training
    run(held_out_volumes(), {"generator.CT_to_MR": Negate(), "attention.MR": head}, segmenter)
    assert head.modes == [False] and segmenter.modes == [False]
    assert not head.training and segmenter.training
