"""Train the detached U-Net alone (``sasan train-segmenter``), optionally on translated images too."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Union

from ..config import RunConfig
from ..models.translator import attention_name, generator_name
from .trainer import Trainer

log = logging.getLogger(__name__)


def train_segmenter(config: RunConfig, run_dir: Path, resume: bool = False,
                    translator: Optional[Union[str, Path]] = None) -> Path:
    """Train only the target modality's U-Net for ``training.segmenter_steps`` steps.

    With ``translator`` (a model file), each batch also holds source images translated to the target, with
    the source's labels when it has them or pseudo labels of the model's target attention head otherwise.
    """
    if config.training.segmenter_steps < 1:
        raise ValueError("training.segmenter_steps: expected a positive number of steps (or pass --steps)")
    if not config.data.target.labelled:
        raise ValueError("train-segmenter needs labels in the target domain (data.target.labelled: true)")
    config.training.steps = 0
    config.training.pretrain_attention_steps = 0
    modules = None
    if translator is not None:
        from ..bundle import load

        model = load(translator)
        source, target = config.data.source.modality, config.data.target.modality
        model.generator(source, target)  # refuses a model without this direction
        modules = {generator_name(source, target): model.generator(source, target)}
        for modality in (source, target):
            if model.attention(modality) is not None:
                modules[attention_name(modality)] = model.attention(modality)
        config.training.segmenter_with_translations = True
    return Trainer(config, run_dir, resume=resume, translator=modules).fit()
