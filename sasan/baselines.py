"""The comparison rows of the protocol that need no translator: no adaptation and histogram matching.

Both feed an *untranslated* volume to the target modality's U-Net, slice-wise and 2.5D exactly as
inference feeds it translated slices (``sasan.inference.slicewise``): the slicing plane, a context stack
of adjacent slices (edge slices repeated), pad-to-square and resize to the network's input size, logits
resized back before the argmax. Only the intensity normalisation differs:

- "W/o adaptation": the source volume with the *source* modality's normalisation (what the U-Net
  would see if one simply ran it on the other modality).
- "Histogram matching": the source volume's histogram matched to the target's training intensities,
  then the *target* modality's normalisation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from sasan.config import CropConfig, NormalizationConfig
from sasan.data.crop import CropRegion, crop_region, crop_volume, paste
from sasan.data.geometry import slicing_axis, to_slice_stack
from sasan.data.preprocess import fit_intensity_map, normalize
from sasan.data.volume import Volume
from sasan.inference.slicewise import segment_slices
from sasan.protocol import Method, MethodOutput
from sasan.runtime import resolve_device

REFERENCE_QUANTILES = 4097  # follows a histogram closely without keeping every reference voxel
_SEGMENT_BATCH = 8


class BaselineError(ValueError):
    """A baseline cannot run with the given model or data."""


def reference_quantiles(arrays: Sequence[np.ndarray], count: int = REFERENCE_QUANTILES) -> np.ndarray:
    """Quantiles ``(count,)`` at evenly spaced fractions 0..1 of all voxels of ``arrays`` pooled together.

    The compact stand-in for "the target's training intensities" that ``histogram_match`` maps onto.
    """
    if count < 2:
        raise BaselineError(f"need at least 2 quantiles; got {count}")
    if not arrays:
        raise BaselineError("need at least one reference volume for histogram matching")
    values = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise BaselineError("the reference volumes are empty or hold NaN / infinite voxels")
    return np.quantile(values, np.linspace(0.0, 1.0, count))


def histogram_match(array: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Map each intensity of ``array`` (any shape) to the reference value of the same quantile; float32.

    ``reference`` holds reference quantiles at evenly spaced fractions 0..1 (``reference_quantiles``),
    or any sorted 1D sample of reference intensities (every value then counts once). A value's quantile
    is the mean rank of its voxels over ``n - 1``, so ties keep one output value and, for arrays of equal
    size with distinct values, the i-th smallest voxel receives the i-th reference value exactly.
    The mapping is monotonic (it never changes the order of intensities), which is why it cannot
    bridge two modalities that order their tissues differently.
    """
    reference = np.asarray(reference, dtype=np.float64)
    if reference.ndim != 1 or reference.size < 2:
        raise BaselineError(f"the reference must be a 1D array of at least 2 values; got shape {reference.shape}")
    if np.any(np.diff(reference) < 0):
        raise BaselineError("the reference quantiles must be sorted in increasing order")
    values = np.asarray(array)
    if values.size == 0:
        raise BaselineError("cannot histogram-match an empty array")
    if values.size == 1:
        return np.full(values.shape, np.median(reference), dtype=np.float32)
    _, inverse, counts = np.unique(values.ravel(), return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts
    fractions = (first_rank + (counts - 1) / 2.0) / (values.size - 1)
    matched = np.interp(fractions, np.linspace(0.0, 1.0, reference.size), reference)
    return matched[inverse].reshape(values.shape).astype(np.float32)


@dataclass
class UntranslatedSegmenter:
    """A target-modality U-Net applied to volumes as they are, 2.5D and slice-wise like inference.

    ``network`` maps ``(B, context, image_size, image_size)`` in [-1, 1] to class logits; ``plane`` is the
    slicing plane ("axial", "coronal", "sagittal"; "auto" = axial).
    """

    network: nn.Module
    image_size: int
    context: int
    plane: str = "axial"
    device: str = "cpu"
    batch_size: int = _SEGMENT_BATCH

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise BaselineError(f"batch_size must be a positive integer; got {self.batch_size}")

    def __call__(self, volume: Volume, normalization: NormalizationConfig) -> Volume:
        """uint8 class indices ``(z, y, x)`` on ``volume``'s grid; ``normalization`` is fitted to this volume
        and maps it to [-1, 1]. The network is moved to ``device``."""
        device = resolve_device(self.device)
        axis = slicing_axis(volume, self.plane)
        stack = normalize(to_slice_stack(volume.array, axis), fit_intensity_map(volume.array, normalization))
        segmentation = np.empty(volume.shape, np.uint8)
        to_slice_stack(segmentation, axis)[:] = segment_slices(
            self.network.to(device).eval(), torch.from_numpy(np.ascontiguousarray(stack)), context=self.context,
            size=self.image_size, batch_size=self.batch_size, device=device)
        return volume.with_array(segmentation)


def no_adaptation(segmenter: UntranslatedSegmenter, source_normalization: NormalizationConfig,
                  source_crop: Optional[CropConfig] = None) -> Method:
    """The "W/o adaptation" row: the source volume, cropped and normalised as its own modality, straight
    into the U-Net (no class outside the crop)."""
    def run(volume: Volume) -> MethodOutput:
        region, cropped = _crop(volume, source_crop, segmenter.plane)
        return MethodOutput(volume.with_array(paste(region, segmenter(cropped, source_normalization).array, 0)))

    return run


def histogram_matching(segmenter: UntranslatedSegmenter, target_normalization: NormalizationConfig,
                       reference: np.ndarray, source_crop: Optional[CropConfig] = None) -> Method:
    """The "Histogram matching" row: the source volume, cropped as its modality, histogram-matched to
    ``reference`` (target training quantiles), normalised as the target modality, into the U-Net; the
    matched volume (the reference's lowest value outside the crop) is its translation."""
    def run(volume: Volume) -> MethodOutput:
        region, cropped = _crop(volume, source_crop, segmenter.plane)
        matched = cropped.with_array(histogram_match(cropped.array, reference))
        labels = segmenter(matched, target_normalization).array
        return MethodOutput(volume.with_array(paste(region, labels, 0)),
                            translated=volume.with_array(paste(region, matched.array, float(reference[0]))))

    return run


def _crop(volume: Volume, crop: Optional[CropConfig], plane: str) -> tuple[CropRegion, Volume]:
    region = crop_region(volume, crop or CropConfig(), slicing_axis(volume, plane))
    return region, crop_volume(volume, region)
