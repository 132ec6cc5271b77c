"""Intensity normalisation to [-1, 1] (the paper: percentile clip, z-score, rescale) and its inverse.

``percentile``: clip to the volume's own percentiles [low, high], z-score with the mean and standard
deviation of the clipped volume, then map the z-scored range [zlow, zhigh] linearly onto [-1, 1].
``window``: clip to a fixed window [low, high] (CT in HU) and map it linearly onto [-1, 1].

Both are affine on [low, high], so ``denormalize(normalize(x))`` gives back every value inside the
clip range (to float32 precision); values outside come back as the nearer bound. ``normalize_tensor`` and
``denormalize_tensor`` are the same float32 arithmetic, step for step, on a tensor on any device (inference
keeps its slices on the GPU); on the CPU they give the numpy functions' values bit for bit.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import torch

from sasan.config import NormalizationConfig

log = logging.getLogger(__name__)

METHODS = ("percentile", "window")


class NormalizationError(ValueError):
    """An intensity map cannot be fitted, applied or rebuilt."""


@dataclass
class IntensityMap:
    """The clip bounds (original units) that map a volume to [-1, 1], and its z-score statistics.

    ``mean`` and ``std`` (of the clipped volume; 0 and 1 for a window) cancel out of the affine map
    but are kept so the model card records the paper's z-score step in full.
    """

    method: str
    low: float
    high: float
    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise NormalizationError(f"unknown normalisation method {self.method!r}; expected one of {METHODS}")
        for name in ("low", "high", "mean", "std"):
            value = float(getattr(self, name))
            if not np.isfinite(value):
                raise NormalizationError(f"intensity map {name} must be finite; got {value}")
            setattr(self, name, value)
        if not self.low < self.high:
            raise NormalizationError(f"intensity map needs low < high; got [{self.low}, {self.high}]")
        if self.std <= 0:
            raise NormalizationError(f"intensity map needs a positive std; got {self.std}")

    def to_dict(self) -> dict:
        """JSON-safe description (plain floats) for the model card."""
        return asdict(self)

    @classmethod
    def from_dict(cls, mapping: dict) -> "IntensityMap":
        expected = {"method", "low", "high", "mean", "std"}
        if not isinstance(mapping, dict) or set(mapping) != expected:
            keys = sorted(mapping) if isinstance(mapping, dict) else mapping
            raise NormalizationError(f"an intensity map needs exactly the keys {sorted(expected)}; got {keys}")
        return cls(**mapping)


def fit_intensity_map(
    array: np.ndarray, config: NormalizationConfig, mask: Optional[np.ndarray] = None
) -> IntensityMap:
    """Fit the map of one volume ``array`` (any shape); statistics come from ``mask`` voxels if given.

    A volume whose clip range collapses (constant, or percentiles that coincide) does not divide by
    zero: percentiles fall back to the full range, and a constant volume gets a unit-wide range
    starting at its value, so it maps to -1 and back exactly.
    """
    values = np.asarray(array)
    if mask is not None:
        if mask.shape != values.shape:
            raise NormalizationError(f"mask shape {mask.shape} differs from the volume's {values.shape}")
        values = values[mask.astype(bool)]
    if values.size == 0:
        raise NormalizationError("cannot fit an intensity map: no voxels (empty volume or mask)")
    if not np.issubdtype(values.dtype, np.integer):  # integers are finite: a CT needs no float copy for a window
        values = values.astype(np.float32, copy=False)
        if not np.all(np.isfinite(values)):
            raise NormalizationError("cannot fit an intensity map: the volume has NaN or infinite voxels")
    if config.method == "window":
        low, high = (float(v) for v in config.window)
        return IntensityMap("window", low, high)
    if config.method != "percentile":
        raise NormalizationError(f"unknown normalisation method {config.method!r}; expected one of {METHODS}")
    values = values.astype(np.float32, copy=False)
    low, high = (float(v) for v in np.percentile(values, config.percentiles))
    if high <= low:
        coincide_at = low
        low, high = float(values.min()), float(values.max())
        if high > low:  # a constant volume gets its own single warning below
            log.warning("percentiles %s coincide at %g; using the full range [%g, %g]", config.percentiles,
                        coincide_at, low, high)
    if high <= low:
        log.warning("constant volume (value %g): it is normalised to -1", low)
        return IntensityMap("percentile", low, low + 1.0, mean=low, std=1.0)
    clipped = np.clip(values, low, high)
    return IntensityMap("percentile", low, high, mean=float(clipped.mean(dtype=np.float64)),
                        std=float(clipped.std(dtype=np.float64)))


def normalize(array: np.ndarray, imap: IntensityMap) -> np.ndarray:
    """Clip to [low, high] and map to [-1, 1]; returns float32 of the same shape.

    The z-score followed by the linear map of [zlow, zhigh] onto [-1, 1] is the same affine map as
    taking [low, high] onto [-1, 1] directly (mean and std cancel), which is how it is computed:
    ``low`` lands on exactly -1.
    """
    clipped = np.clip(np.asarray(array, dtype=np.float32), imap.low, imap.high)
    scaled = (clipped - np.float32(imap.low)) * np.float32(2.0 / (imap.high - imap.low)) - np.float32(1.0)
    return np.clip(scaled, -1.0, 1.0, out=scaled)


def denormalize(array: np.ndarray, imap: IntensityMap) -> np.ndarray:
    """Map [-1, 1] back to original units (values beyond [-1, 1] are clipped first); float32."""
    scaled = np.clip(np.asarray(array, dtype=np.float32), -1.0, 1.0)
    return (scaled + np.float32(1.0)) * np.float32((imap.high - imap.low) / 2.0) + np.float32(imap.low)


def normalize_tensor(tensor: torch.Tensor, imap: IntensityMap) -> torch.Tensor:
    """``normalize`` of a real-valued tensor on its own device: a new float32 tensor (the input is untouched)."""
    scaled = tensor.to(torch.float32).clamp(imap.low, imap.high)  # clamp makes the copy the steps below work in
    scaled.sub_(imap.low).mul_(2.0 / (imap.high - imap.low)).sub_(1.0)
    return scaled.clamp_(-1.0, 1.0)


def denormalize_tensor(tensor: torch.Tensor, imap: IntensityMap) -> torch.Tensor:
    """``denormalize`` of a tensor in [-1, 1] on its own device: a new float32 tensor (the input is untouched)."""
    scaled = tensor.to(torch.float32).clamp(-1.0, 1.0)
    return scaled.add_(1.0).mul_((imap.high - imap.low) / 2.0).add_(imap.low)


def average_intensity_map(maps: list[IntensityMap]) -> IntensityMap:
    """Dataset-level map: the mean of each volume's bounds and statistics (all of one method).

    Used to express translated images in the target modality's units when no target volume exists.
    """
    if not maps:
        raise NormalizationError("cannot average an empty list of intensity maps")
    methods = {m.method for m in maps}
    if len(methods) != 1:
        raise NormalizationError(f"cannot average intensity maps of different methods: {sorted(methods)}")
    return IntensityMap(
        method=maps[0].method,
        low=float(np.mean([m.low for m in maps])),
        high=float(np.mean([m.high for m in maps])),
        mean=float(np.mean([m.mean for m in maps])),
        std=float(np.mean([m.std for m in maps])),
    )
