"""Clean-up of a finished segmentation, as the model card's ``postprocessing`` asks.

The options (``sasan.card.POSTPROCESSING_OPTIONS`` lists them, ``ModelCard.validate`` checks them):
``largest_foreground_component`` -- keep only the largest 3D connected component of all non-background
labels together (face-connected, 6 neighbours), so stray blobs away from the anatomy (a CT head holder,
noise in the air) are set to background while the labels inside the kept component stay as they were.
"""
from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

log = logging.getLogger(__name__)


def keep_largest_foreground_component(labels: np.ndarray) -> int:
    """Zero, in place, every voxel of ``labels`` (any 3D integer array, 0 = background) outside the largest
    connected component of ``labels > 0``; returns how many voxels were cleared.

    Memory: one int32 component map and two bool masks the size of ``labels`` (about 6 bytes a voxel).
    """
    if labels.ndim != 3:
        raise ValueError(f"expected a 3D label volume; got shape {labels.shape}")
    components, count = ndimage.label(labels > 0, output=np.int32)
    if count <= 1:
        return 0
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    sizes[0] = 0  # background is not a component
    outside = components > 0
    outside &= components != int(np.argmax(sizes))
    del components
    cleared = int(np.count_nonzero(outside))
    labels[outside] = 0
    return cleared


def apply_postprocessing(labels: np.ndarray, options: dict) -> None:
    """Apply the card's ``postprocessing`` ``options`` to ``labels`` ``(z, y, x)`` in place."""
    if options.get("largest_foreground_component", False):
        cleared = keep_largest_foreground_component(labels)
        log.info("post-processing kept the largest foreground component (%d voxels outside it cleared)", cleared)
