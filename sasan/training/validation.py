"""The periodic validation pass: translate validation subjects' source slices and score their segmentation."""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..data.domains import PreparedVolume
from ..data.geometry import fit_to_square
from ..data.slices import context_stack
from ..models.translator import attention_name, direction_networks, translate


def held_out_slices(volumes: Sequence[PreparedVolume], size: int, context: int,
                    limit: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Up to ``limit`` labelled 2.5D slices (evenly spread over the foreground) of held-out volumes."""
    images, labels = [], []
    for volume in volumes:
        if volume.labels is None:
            continue
        foreground = np.flatnonzero(volume.labels.reshape(len(volume.labels), -1).any(1))
        for index in foreground[:: max(1, len(foreground) // 4)]:
            images.append(fit_to_square(context_stack(volume.stack, int(index), context), size, "bilinear"))
            labels.append(fit_to_square(volume.labels[index: index + 1], size, "nearest")[0])
    if not images:
        return None
    step = max(1, len(images) // limit)
    return (torch.from_numpy(np.stack(images[::step][:limit])).float(),
            torch.from_numpy(np.stack(labels[::step][:limit])).long())


def class_dice(prediction: torch.Tensor, truth: torch.Tensor, num_classes: int) -> list[float]:
    """Dice of each foreground class over all the slices at once; nan where the truth lacks the class."""
    scores = []
    for cls in range(1, num_classes):
        p, t = prediction == cls, truth == cls
        scores.append(2 * (p & t).sum().item() / (p.sum().item() + t.sum().item()) if t.any() else float("nan"))
    return scores


def mean_dice(prediction: torch.Tensor, truth: torch.Tensor, num_classes: int) -> float:
    scores = [s for s in class_dice(prediction, truth, num_classes) if not np.isnan(s)]
    return float(np.mean(scores)) if scores else float("nan")


@contextlib.contextmanager
def evaluation_mode(networks: Iterable[nn.Module]) -> Iterator[None]:
    """Put ``networks`` in eval mode for the block, then back in the mode each was in."""
    modes = [(network, network.training) for network in networks]
    for network, _ in modes:
        network.eval()
    try:
        yield
    finally:
        for network, training in modes:
            network.train(training)


@torch.no_grad()
def validation_dice(volumes: Sequence[PreparedVolume], translator: Optional[Mapping[str, nn.Module]],
             segmenter: Optional[nn.Module], *, source: str, target: str, image_size: int, context: int,
             num_classes: int, device: torch.device, limit_slices: int = 32) -> dict[str, float]:
    """Mean Dice on up to ``limit_slices`` labelled slices (``image_size``², ``context`` channels) of the
    held-out ``volumes``, by the networks given; None stands for a network not trained (yet).

    With ``translator`` (networks named as in ``models.translator``), ``volumes`` are of the ``source``
    modality: their slices are translated into ``target`` and segmented by the target attention head
    ("val/dice_attention_head", when the translator has one) and by ``segmenter`` ("val/dice_segmenter").
    Without, ``volumes`` are of the ``target`` modality and only ``segmenter`` segments them. Without
    either network, or without labelled slices, there is nothing to score: ``{}``.
    """
    if translator is None and segmenter is None:
        return {}
    found = held_out_slices(volumes, image_size, context, limit_slices)
    if found is None:
        return {}
    images, truth = (t.to(device) for t in found)
    scores = {}
    with evaluation_mode([*(translator or {}).values(), *([segmenter] if segmenter is not None else [])]):
        if translator is not None:
            images, _, _ = translate(*direction_networks(translator, source, target), images)
            target_attention = translator.get(attention_name(target))
            if target_attention is not None:
                scores["val/dice_attention_head"] = mean_dice(target_attention(images)[1].argmax(1), truth,
                                                              num_classes)
        if segmenter is not None:
            scores["val/dice_segmenter"] = mean_dice(segmenter(images).argmax(1), truth, num_classes)
    return {k: v for k, v in scores.items() if not np.isnan(v)}
