"""The periodic validation pass: translate held-out source slices and score their segmentation."""
from __future__ import annotations

import numpy as np
import torch

from ..data.geometry import fit_to_square
from ..data.slices import context_stack
from ..models.translator import attention_name, direction_networks, translate


def held_out_slices(volumes, size: int, context: int, limit: int) -> tuple[torch.Tensor, torch.Tensor] | None:
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


@torch.no_grad()
def validate(trainer, limit_slices: int = 32) -> dict[str, float]:
    """Dice on held-out labelled slices, only for networks that have trained.

    With a translator: the translated source slices, by the target attention head once the adversarial
    phase has begun, and by the segmenter in its phase. A segmenter-only run (no adversarial steps): the
    segmenter on the target modality's own held-out slices. Before that (attention pre-training) nothing:
    a randomly initialised generator's translations would only log noise.
    """
    config = trainer.config
    source, target = config.data.source.modality, config.data.target.modality
    pretrain, adversarial, _ = trainer.phases
    translates = adversarial > 0
    segmenter_trained = trainer.nets.segmenter is not None and trainer.step > pretrain + adversarial
    if (translates and trainer.step <= pretrain) or not (translates or segmenter_trained):
        return {}
    found = held_out_slices(trainer.data.test.get(source if translates else target, []), config.data.image_size,
                            config.data.context, limit_slices)
    if found is None:
        return {}
    images, truth = (t.to(trainer.device) for t in found)
    translator = trainer.translator()
    was_training = trainer.nets.training
    trainer.nets.eval()
    try:
        scores = {}
        if translates:
            images, _, _ = translate(*direction_networks(translator, source, target), images)
            target_attention = translator.get(attention_name(target))
            if target_attention is not None:
                scores["val/dice_attention_head"] = mean_dice(target_attention(images)[1].argmax(1), truth,
                                                              config.num_classes)
        if segmenter_trained:
            scores["val/dice_segmenter"] = mean_dice(trainer.nets.segmenter(images).argmax(1), truth,
                                                     config.num_classes)
    finally:
        trainer.nets.train(was_training)
    return {k: v for k, v in scores.items() if not np.isnan(v)}
