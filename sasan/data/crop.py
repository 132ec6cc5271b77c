"""Cropping a volume to an in-plane region before slicing, and putting results back on the whole grid.

The paper crops its scans to the region around the anatomy of interest; a domain's ``crop`` setting
(``CropConfig``) does the same here, identically in training and in inference (the model card keeps it).
The slicing axis is never cropped, so every slice keeps its neighbours for the 2.5D context. A crop is a
sub-grid of the volume: its origin moves to the first kept voxel, spacing and direction stay, so the
cropped volume still lies exactly where it came from in world space.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from sasan.config import CropConfig, CropError
from sasan.data.volume import Volume

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CropRegion:
    """Index ranges ``[start, stop)`` along the array axes ``(k, j, i)`` of a volume of ``shape``."""

    start: tuple[int, int, int]
    stop: tuple[int, int, int]
    shape: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    @property
    def is_whole(self) -> bool:
        return self.start == (0, 0, 0) and self.stop == self.shape


def crop_region(volume: Volume, crop: CropConfig, axis: int) -> CropRegion:
    """The region ``crop`` keeps of ``volume`` sliced along array ``axis`` (that axis is kept whole)."""
    shape = volume.shape
    start, stop = [0, 0, 0], list(shape)
    in_plane = [a for a in range(3) if a != axis]
    if crop.method == "box":
        for a, span in zip(in_plane, (crop.rows, crop.columns)):
            start[a] = min(int(math.floor(span[0] * shape[a])), shape[a] - 1)
            stop[a] = max(int(math.ceil(span[1] * shape[a])), start[a] + 1)
    elif crop.method == "foreground":
        threshold = otsu_threshold(volume.array) if crop.threshold is None else crop.threshold
        # An in-plane opening drops isolated noise voxels (MR background) that would stretch the box.
        opening = np.ones([1 if a == axis else 3 for a in range(3)], bool)
        foreground = ndimage.binary_opening(volume.array > threshold, structure=opening)
        projected = np.any(foreground, axis=axis)  # the in-plane axes, in array order
        if not projected.any():
            log.warning("no voxel above the crop threshold %g: keeping the whole volume", threshold)
        else:
            for position, a in enumerate(in_plane):
                hits = np.flatnonzero(projected.any(axis=1 - position))
                margin = int(math.ceil(crop.margin_mm / volume.spacing[2 - a]))  # spacing is (x, y, z)
                start[a] = max(0, int(hits[0]) - margin)
                stop[a] = min(shape[a], int(hits[-1]) + 1 + margin)
    elif crop.method != "none":
        raise CropError(f"unknown crop method {crop.method!r}; expected none, foreground or box")
    return CropRegion(tuple(start), tuple(stop), shape)  # type: ignore[arg-type]


def otsu_threshold(array: np.ndarray) -> float:
    """Otsu's threshold of ``array`` (SimpleITK's): between air and body in CT and in MR alike."""
    otsu = sitk.OtsuThresholdImageFilter()
    otsu.Execute(sitk.GetImageFromArray(np.asarray(array, dtype=np.float32)))
    return float(otsu.GetThreshold())


def crop_volume(volume: Volume, region: CropRegion) -> Volume:
    """The voxels of ``region`` as a volume of their own, at the same place in world space."""
    if region.shape != volume.shape:
        raise CropError(f"a crop region of a {region.shape} volume cannot crop a {volume.shape} volume")
    if region.is_whole:
        return volume
    k, j, i = region.start
    origin = np.asarray(volume.origin) + volume.direction @ (np.asarray(volume.spacing) * (i, j, k))
    return Volume(np.ascontiguousarray(volume.array[region.slices]), volume.spacing, tuple(origin),
                  volume.direction.copy())


def paste(region: CropRegion, values: np.ndarray, fill: float) -> np.ndarray:
    """``values`` (the region's shape) inside an array of the whole volume's shape, ``fill`` elsewhere."""
    expected = tuple(b - a for a, b in zip(region.start, region.stop))
    if tuple(values.shape) != expected:
        raise CropError(f"cannot paste {tuple(values.shape)} values into a crop region of shape {expected}")
    if region.is_whole:
        return values
    whole = np.full(region.shape, fill, dtype=values.dtype)
    whole[region.slices] = values
    return whole
