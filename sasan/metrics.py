"""Per-volume evaluation metrics: overlap and surface distance per structure, paired image similarity.

Arrays are indexed ``(z, y, x)`` like :class:`sasan.data.volume.Volume`; spacings are given in the
``(x, y, z)`` order of SimpleITK and reversed here before use. Every function returns a plain float.

Surface distances come from MONAI, whose symmetric average surface distance is the paper's ASSD:
surface voxels are the mask minus its 6-connected erosion (voxels on the array border count as
surface), every surface voxel of either mask is matched to the nearest surface voxel of the other
in millimetres, and all those distances are averaged together. The tests check it by hand.
"""
from __future__ import annotations

import math
import warnings
from typing import Optional, Sequence

import numpy as np
import torch
from monai.metrics import compute_average_surface_distance
from monai.metrics.regression import compute_ssim_and_cs

ASSD_CAP_MM = 50.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_SSIM_SLICES_PER_CHUNK = 16  # bounds the memory of the SSIM maps on large volumes


class MetricInputError(ValueError):
    """Arrays or parameters given to a metric do not fit together."""


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice overlap ``2|P∩T| / (|P| + |T|)`` of two boolean masks of the same shape (1.0 if both are empty).

    Same values as MONAI's ``compute_dice(..., ignore_empty=False)``, counted on the boolean arrays
    so that no float copy of a whole volume is made.
    """
    _check_masks(pred, truth)
    total = int(np.count_nonzero(pred)) + int(np.count_nonzero(truth))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(pred & truth)) / total


def assd(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> float:
    """Average symmetric surface distance in millimetres between two boolean ``(z, y, x)`` masks.

    ``spacing`` is ``(x, y, z)`` in mm. A structure missing from exactly one side scores
    ``ASSD_CAP_MM``; missing from both sides scores 0.0. A structure present on both sides gets its
    measured distance, even above the cap.
    """
    _check_masks(pred, truth)
    if pred.ndim != 3:
        raise MetricInputError(f"assd needs 3D (z, y, x) masks; got shape {pred.shape}")
    zyx_spacing = _zyx_spacing(spacing)
    pred_present, truth_present = bool(pred.any()), bool(truth.any())
    if not pred_present and not truth_present:
        return 0.0
    if not pred_present or not truth_present:
        return ASSD_CAP_MM
    pred_box, truth_box = _crop_to_union(pred, truth)
    with warnings.catch_warnings():
        # MONAI 1.6 passes its own deprecated argument internally; the warning is not ours to fix.
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"monai\..*")
        distance = compute_average_surface_distance(
            torch.from_numpy(pred_box)[None, None],
            torch.from_numpy(truth_box)[None, None],
            include_background=True,
            symmetric=True,
            spacing=list(zyx_spacing),
        )
    return float(distance.item())


def segmentation_scores(
    pred_labels: np.ndarray,
    true_labels: np.ndarray,
    class_names: list[str],
    spacing: Sequence[float],
) -> dict[str, dict[str, float]]:
    """Dice and ASSD (mm) per structure of two ``(z, y, x)`` class-index maps.

    Label 0 is background and label ``i`` is ``class_names[i - 1]``; ``spacing`` is ``(x, y, z)`` mm.
    Returns ``{name: {"dice": float, "assd": float}}`` in the order of ``class_names``.
    """
    if pred_labels.shape != true_labels.shape:
        raise MetricInputError(
            f"predicted labels {pred_labels.shape} and true labels {true_labels.shape} differ in shape"
        )
    if len(set(class_names)) != len(class_names) or not class_names:
        raise MetricInputError(f"class_names must be non-empty and unique; got {class_names}")
    for which, labels in (("predicted", pred_labels), ("true", true_labels)):
        if not np.issubdtype(labels.dtype, np.integer):
            raise MetricInputError(f"{which} labels must be integer class indices; got dtype {labels.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() > len(class_names)):
            raise MetricInputError(
                f"{which} labels range over [{labels.min()}, {labels.max()}] but only "
                f"{len(class_names)} classes are named (labels 0..{len(class_names)})"
            )
    scores = {}
    for index, name in enumerate(class_names, start=1):
        pred_mask, true_mask = pred_labels == index, true_labels == index
        scores[name] = {"dice": dice(pred_mask, true_mask), "assd": assd(pred_mask, true_mask, spacing)}
    return scores


def ssim(a: np.ndarray, b: np.ndarray, data_range: float, mask: Optional[np.ndarray] = None) -> float:
    """Slice-wise 2D SSIM of two ``(z, y, x)`` volumes, averaged over every axial slice.

    2D rather than 3D because the model translates axial slices and slice thickness is often several
    times the in-plane spacing. Gaussian window 11 x 11, sigma 1.5, K1 0.01, K2 0.03 (MONAI's
    ``compute_ssim_and_cs``); windows lie fully inside a slice, so ``y`` and ``x`` need at least 11
    voxels. With ``mask`` the SSIM map is averaged over the windows centred on masked voxels.
    MONAI computes in float32; against a float64 computation the score differs by about 1e-4.
    """
    _check_pair(a, b, mask)
    if a.ndim != 3:
        raise MetricInputError(f"ssim needs 3D (z, y, x) volumes; got shape {a.shape}")
    if min(a.shape[1:]) < SSIM_WINDOW:
        raise MetricInputError(f"ssim needs slices of at least {SSIM_WINDOW}x{SSIM_WINDOW}; got {a.shape[1:]}")
    _check_data_range(data_range)
    half = SSIM_WINDOW // 2
    centres = np.ones(a.shape, dtype=bool) if mask is None else mask
    centres = centres[:, half : a.shape[1] - half, half : a.shape[2] - half]
    if not centres.any():
        raise MetricInputError(
            f"the mask leaves no SSIM window centre: its voxels all lie within {half} voxels of a slice edge"
        )
    total, count = 0.0, 0
    for start in range(0, a.shape[0], _SSIM_SLICES_PER_CHUNK):
        chunk = slice(start, start + _SSIM_SLICES_PER_CHUNK)
        ssim_map, _ = compute_ssim_and_cs(
            torch.from_numpy(np.ascontiguousarray(a[chunk], dtype=np.float32))[:, None],
            torch.from_numpy(np.ascontiguousarray(b[chunk], dtype=np.float32))[:, None],
            spatial_dims=2,
            kernel_size=(SSIM_WINDOW, SSIM_WINDOW),
            kernel_sigma=(SSIM_SIGMA, SSIM_SIGMA),
            data_range=float(data_range),
        )
        chunk_centres = torch.from_numpy(np.ascontiguousarray(centres[chunk]))
        total += float(ssim_map[:, 0].double()[chunk_centres].sum())
        count += int(chunk_centres.sum())
    return total / count


def psnr(a: np.ndarray, b: np.ndarray, data_range: float, mask: Optional[np.ndarray] = None) -> float:
    """Peak signal-to-noise ratio ``10 log10(data_range² / MSE)`` in dB; ``inf`` for identical arrays.

    Written out rather than MONAI's ``PSNRMetric`` because that takes no mask.
    """
    _check_data_range(data_range)
    mse = float(np.mean(np.square(_difference(a, b, mask))))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(float(data_range) ** 2 / mse)


def mae(a: np.ndarray, b: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """Mean absolute difference, in the arrays' units."""
    return float(np.mean(np.abs(_difference(a, b, mask))))


def rmse(a: np.ndarray, b: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """Root mean squared difference, in the arrays' units."""
    return math.sqrt(float(np.mean(np.square(_difference(a, b, mask)))))


def pcc(a: np.ndarray, b: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    """Pearson correlation of the voxel values; ``nan`` when either side is constant (undefined)."""
    _check_pair(a, b, mask)
    x, y = _values(a, mask), _values(b, mask)
    x, y = x - x.mean(), y - y.mean()
    norm = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
    if norm == 0.0:
        return math.nan
    return float(np.dot(x, y)) / norm


def image_scores(
    pred: np.ndarray,
    truth: np.ndarray,
    data_range: Optional[float] = None,
    mask: Optional[np.ndarray] = None,
) -> dict[str, float]:
    """All paired image metrics of a ``(z, y, x)`` prediction against its reference.

    ``data_range`` defaults to ``truth.max() - truth.min()`` over the whole reference volume; pass
    a fixed range (e.g. the CT window) to compare numbers across volumes.
    Returns ``{"ssim", "psnr", "mae", "rmse", "pcc"}``.
    """
    _check_pair(pred, truth, mask)
    if data_range is None:
        data_range = float(np.max(truth)) - float(np.min(truth))
    return {
        "ssim": ssim(pred, truth, data_range, mask),
        "psnr": psnr(pred, truth, data_range, mask),
        "mae": mae(pred, truth, mask),
        "rmse": rmse(pred, truth, mask),
        "pcc": pcc(pred, truth, mask),
    }


def _check_masks(pred: np.ndarray, truth: np.ndarray) -> None:
    if pred.dtype != np.bool_ or truth.dtype != np.bool_:
        raise MetricInputError(f"masks must be boolean arrays; got {pred.dtype} and {truth.dtype}")
    if pred.shape != truth.shape:
        raise MetricInputError(f"masks differ in shape: {pred.shape} and {truth.shape}")


def _zyx_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(s) for s in spacing)
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise MetricInputError(f"spacing must be three positive (x, y, z) values in mm; got {tuple(spacing)}")
    return values[2], values[1], values[0]


def _crop_to_union(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to the box around their union plus one background voxel on every side.

    Keeps MONAI's float copies small; the background frame keeps voxels on the array border on the surface.
    """
    union = pred | truth
    box = []
    for axis in range(union.ndim):
        occupied = np.flatnonzero(union.any(axis=tuple(i for i in range(union.ndim) if i != axis)))
        box.append(slice(occupied[0], occupied[-1] + 1))
    return np.pad(pred[tuple(box)], 1), np.pad(truth[tuple(box)], 1)


def _check_pair(a: np.ndarray, b: np.ndarray, mask: Optional[np.ndarray]) -> None:
    if a.shape != b.shape:
        raise MetricInputError(f"images differ in shape: {a.shape} and {b.shape}")
    if mask is not None:
        if mask.dtype != np.bool_ or mask.shape != a.shape:
            raise MetricInputError(
                f"mask must be a boolean array of the images' shape {a.shape}; got {mask.dtype} {mask.shape}"
            )
        if not mask.any():
            raise MetricInputError("mask is empty: no voxel to compare")


def _check_data_range(data_range: float) -> None:
    if not (math.isfinite(float(data_range)) and float(data_range) > 0):
        raise MetricInputError(f"data_range must be a positive finite number; got {data_range}")


def _values(image: np.ndarray, mask: Optional[np.ndarray]) -> np.ndarray:
    values = image if mask is None else image[mask]
    return np.asarray(values, dtype=np.float64).ravel()


def _difference(a: np.ndarray, b: np.ndarray, mask: Optional[np.ndarray]) -> np.ndarray:
    _check_pair(a, b, mask)
    return _values(a, mask) - _values(b, mask)
