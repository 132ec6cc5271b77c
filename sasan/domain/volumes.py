"""A volume's tissue profiles as a model reads that modality: cropped, sliced along its plane, in own units.

The slices, crop and intensity map are the ones translation and training use (``sasan.data``), so a
training volume and an input are profiled alike whatever their voxel order, direction or spacing.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from sasan.config import CropConfig, NormalizationConfig
from sasan.data.crop import crop_region, crop_volume, otsu_threshold
from sasan.data.geometry import slicing_axis, to_slice_stack
from sasan.data.preprocess import IntensityMap, fit_intensity_map
from sasan.data.volume import Volume

from .fingerprint import BIN_EDGES, PRESENCE, SHELLS, Fingerprint, evenly, own_units, scored_slices, tissue_profiles

THRESHOLD_SLICES = 64  # Otsu's body threshold is taken over this many evenly spread slices


def prepared_profiles(volume: Volume, axis: int, intensity: IntensityMap, limit: Optional[int],
                      bin_edges: Sequence[float] = BIN_EDGES, presence: float = PRESENCE, shells: int = SHELLS) -> np.ndarray:
    """Profiles ``(n, columns)`` (``tissue_profiles``) of up to ``limit`` (None: all) body slices of an already
    cropped ``volume`` sliced along array ``axis``, in the units ``intensity`` maps to -1 .. 1; slices in order."""
    stack = to_slice_stack(volume.array, axis)
    sample = stack[evenly(len(stack), THRESHOLD_SLICES)]
    threshold = otsu_threshold(own_units(sample, intensity.low, intensity.high))
    raw_threshold = intensity.low + (threshold + 1.0) * (intensity.high - intensity.low) / 2.0
    chosen = scored_slices(stack, raw_threshold, limit=len(stack) if limit is None else limit)
    spacing = [volume.spacing[2 - a] for a in range(3) if a != axis]  # the slices' rows and columns, in mm
    return tissue_profiles(own_units(stack[chosen], intensity.low, intensity.high), threshold, spacing, bin_edges,
                           presence, shells)


def volume_profiles(volume: Volume, normalization: NormalizationConfig, crop: CropConfig, plane: str,
                    fingerprint: Fingerprint) -> np.ndarray:
    """The profiles of ``volume`` read as a modality normalised by ``normalization`` and cropped by ``crop``,
    sliced along ``plane``, scored as ``fingerprint`` scores (its bins, at most its number of slices)."""
    axis = slicing_axis(volume, plane)
    work = crop_volume(volume, crop_region(volume, crop, axis))
    intensity = fit_intensity_map(work.array, normalization)
    return prepared_profiles(work, axis, intensity, fingerprint.slices, fingerprint.bin_edges, fingerprint.presence,
                             fingerprint.shells)
