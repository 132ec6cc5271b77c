"""A 2.5D network run over a stack of slices: the one way every path feeds a network and reads its labels.

Slice ``i``'s input is slices ``i - h .. i + h`` of the stack (``h = context // 2``; beyond either end the
edge slice is repeated), padded to a square and resized to the network's input size; the network's
logits are resized back onto the slice's grid before the argmax. ``inference.translation`` builds its
translator's inputs and reads its segmenter's labels this way; ``segment_slices`` is the whole loop for
a network that segments the stack as it is (the baselines' U-Net on untranslated volumes).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sasan.data.geometry import fit_to_square_tensor, restore_from_square_tensor


def context_indices(start: int, end: int, count: int, context: int) -> np.ndarray:
    """Slice numbers of the inputs of slices ``start .. end - 1`` of a stack of ``count``: an int array
    ``(end - start, context)`` whose row ``r`` is centred on slice ``start + r``, clipped to ``0 .. count - 1``."""
    half = context // 2
    return np.clip(np.arange(start, end)[:, None] + np.arange(-half, half + 1)[None, :], 0, count - 1)


def labels_on_grid(logits: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Class logits ``(B, classes, S, S)`` -> class indices ``(B, h, w)`` uint8 on the slices' own grid
    ``shape = (h, w)``, on the logits' device (the logits are resized, the labels never are)."""
    return restore_from_square_tensor(logits, shape, "image").argmax(dim=1).to(torch.uint8)


def segment_slices(network: nn.Module, stack: torch.Tensor, *, context: int, size: int, batch_size: int,
                   device: torch.device) -> np.ndarray:
    """Class indices ``(n, h, w)`` uint8 of every slice of ``stack`` ``(n, h, w)`` (CPU, normalised as
    ``network`` expects), ``batch_size`` slices at a time; ``network`` (on ``device``) maps ``(B, context,
    size, size)`` to class logits ``(B, classes, size, size)``."""
    count, height, width = stack.shape
    labels = np.empty((count, height, width), np.uint8)
    with torch.inference_mode():
        for start in range(0, count, batch_size):
            end = min(count, start + batch_size)
            rows = torch.from_numpy(context_indices(start, end, count, context))
            logits = network(fit_to_square_tensor(stack[rows], size, "image").to(device)).float()
            labels[start:end] = labels_on_grid(logits, (height, width)).cpu().numpy()
    return labels
