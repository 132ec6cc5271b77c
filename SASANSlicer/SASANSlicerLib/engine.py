"""The module's one door into the engine's translation (imported only when a run starts: needs torch).

It calls ``sasan.inference.translate_volume`` and turns its result into a ``TranslationOutput`` for the
scene: the segmentation as the model card's label values, attention maps as uint8 (0..255 = attention
0..1), and what the engine had to change on the way (a GPU out of memory: smaller batches, then the CPU)
as notes for the user.  A cancelled run raises ``RunCancelled`` whichever way it stopped; running out of
memory for good raises ``InferenceError`` with one sentence saying so.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from sasan.config import LabelSpec
from sasan.data.volume import Volume

from .progress import RunCancelled
from .results import TranslationOutput
from .segmentation import class_indices_to_values

ENGINE_LOGGER = "sasan.inference"


def as_label_values(segmentation: Volume, labels: list[LabelSpec]) -> Volume:
    """The segmentation with label values: kept if its voxels already are label values, else read as
    class indices (0 background, ``i`` -> ``labels[i - 1]``, what ``translate_volume`` returns)."""
    present = set(np.unique(segmentation.array).tolist()) - {0}
    if present <= {label.value for label in labels}:
        return segmentation
    return segmentation.with_array(class_indices_to_values(segmentation.array, labels))


def as_uint8_map(attention_map: Volume) -> Volume:
    """An attention map as uint8 0..255; float maps are read as attention in 0..1."""
    array = attention_map.array
    if array.dtype == np.uint8:
        return attention_map
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"attention maps must be uint8 or float in 0..1; got {array.dtype}")
    return attention_map.with_array(np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8))


class _WarningCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def engine_warnings(logger_name: str = ENGINE_LOGGER) -> Iterator[list[str]]:
    """Collect the warnings the engine logs inside the block (e.g. "GPU out of memory: retrying with 4
    slices per batch"), so that the user sees them, not only the log."""
    collector = _WarningCollector()
    logger = logging.getLogger(logger_name)
    logger.addHandler(collector)
    try:
        yield collector.messages
    finally:
        logger.removeHandler(collector)


def unique(messages: list[str]) -> list[str]:
    """``messages`` without repeats, in first-seen order (the engine both logs and records its CPU fallback)."""
    return list(dict.fromkeys(messages))


def translate(
    volume: Volume,
    model_path: Path,
    target: str,
    device: str = "auto",
    segment: bool = True,
    attention: bool = False,
    progress: Optional[Callable[[float, str], None]] = None,
    cancel: Optional[Callable[[], bool]] = None,
) -> TranslationOutput:
    """Translate ``volume`` to ``target`` with the model file.

    ``progress(fraction, message)`` is called after every batch and ``cancel()`` read before every batch;
    both ways of stopping (the flag, or ``RunCancelled`` raised by ``progress``) end in ``RunCancelled``.
    """
    import torch

    from sasan.card import read_card
    from sasan.inference import InferenceError, TranslationCancelled, translate_volume

    labels = read_card(model_path).label_specs
    with engine_warnings() as warnings:
        try:
            result = translate_volume(volume, str(model_path), target, device=device, segment=segment,
                                      attention=attention, progress=progress, cancel=cancel)
        except TranslationCancelled:
            raise RunCancelled("cancelled by the user") from None
        except (torch.OutOfMemoryError, MemoryError):
            tried = "; ".join(unique(warnings)) or "no smaller batch or other device was left to try"
            raise InferenceError(
                f"out of memory translating a volume of {' x '.join(map(str, volume.shape))} voxels with device "
                f"'{device}' ({tried}); close other programs or crop the volume, then try again") from None
    segmentation = None
    if segment and result.segmentation is not None:
        segmentation = as_label_values(result.segmentation, labels)
    maps = [as_uint8_map(m) for m in result.attention] if attention and result.attention else []
    return TranslationOutput(image=result.translated, segmentation=segmentation, labels=labels, attention=maps,
                             device=result.device, notes=unique([*warnings, *result.notes]))
