"""Slicing a volume into 2D planes and resampling each plane to the model's square input and back.

The round trip must land every value back on the voxel it came from: results overlay the input
exactly. The in-plane resampling keeps the pixel aspect ratio (pad to a square, then resize) and
uses the pixel-centre convention throughout (``align_corners=False`` bilinear for intensities and
``nearest-exact`` for labels, so labels and images stay aligned to the sub-pixel).
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

from sasan.data.volume import Volume

# World axis (LPS row of the direction matrix) that each named plane is perpendicular to.
_PLANE_NORMALS = {"axial": 2, "auto": 2, "coronal": 1, "sagittal": 0}
# Interpolation per mode; "bilinear" and "nearest" are accepted as aliases of "image" and "label".
_INTERPOLATION = {"image": "bilinear", "bilinear": "bilinear", "label": "nearest-exact", "nearest": "nearest-exact"}


def slicing_axis(volume: Volume, preference: str = "auto") -> int:
    """Array axis (0 = k, 1 = j, 2 = i) to slice along for the requested plane.

    "axial" slices along the voxel axis whose world direction is closest to S (LPS z), "coronal"
    closest to P (y), "sagittal" closest to L (x); "auto" means axial. Works for any oblique or
    permuted direction matrix, since it looks at the direction columns, not at the array order.
    """
    if preference not in _PLANE_NORMALS:
        raise ValueError(f"unknown slicing plane {preference!r}; expected one of {', '.join(_PLANE_NORMALS)}")
    world_row = _PLANE_NORMALS[preference]
    voxel_axis = int(np.argmax(np.abs(volume.direction[world_row, :])))  # 0 = i, 1 = j, 2 = k
    return 2 - voxel_axis


def to_slice_stack(array: np.ndarray, axis: int) -> np.ndarray:
    """View of a ``(nz, ny, nx)`` array as a stack ``(n, h, w)`` with the slicing ``axis`` first."""
    _check_axis(array, axis)
    return np.moveaxis(array, axis, 0)


def from_slice_stack(stack: np.ndarray, axis: int) -> np.ndarray:
    """Exact inverse of ``to_slice_stack``: ``(n, h, w)`` back to the ``(nz, ny, nx)`` array order."""
    _check_axis(stack, axis)
    return np.moveaxis(stack, 0, axis)


def fit_to_square(stack: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Resample every ``(h, w)`` slice of ``stack`` ``(n, h, w)`` to ``(n, size, size)``.

    The shorter side is padded symmetrically (slice minimum for "image", 0 for "label") before the
    resize, so the pixel aspect ratio is kept. Images come back float32, labels in their own dtype.
    """
    tensor = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))[:, None]
    squared = fit_to_square_tensor(tensor, size, mode)[:, 0].numpy()
    return _as_output_dtype(squared, stack.dtype, mode)


def restore_from_square(stack: np.ndarray, shape: tuple[int, int], mode: str) -> np.ndarray:
    """Inverse of ``fit_to_square``: ``(n, size, size)`` back to ``(n, h, w)`` on the original grid."""
    tensor = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))[:, None]
    restored = restore_from_square_tensor(tensor, shape, mode)[:, 0].numpy()
    return _as_output_dtype(restored, stack.dtype, mode)


def fit_to_square_tensor(tensor: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """``fit_to_square`` for a float tensor ``(n, c, h, w)`` on any device -> a new tensor ``(n, c, size, size)``."""
    interpolation = _interpolation(mode)
    _check_batch(tensor)
    if size < 1:
        raise ValueError(f"the square size must be positive; got {size}")
    height, width = tensor.shape[-2:]
    side = max(height, width)
    if height == width:  # nothing to pad (padding a 512² CT slab cost two passes over it); always a new tensor
        return _resize(tensor, (size, size), interpolation) if side != size else tensor.clone()
    top, left = (side - height) // 2, (side - width) // 2
    if interpolation == "bilinear":
        fill = tensor.amin(dim=(-2, -1), keepdim=True)
    else:
        fill = torch.zeros((1, 1, 1, 1), dtype=tensor.dtype, device=tensor.device)
    padded = fill.expand(tensor.shape[0], tensor.shape[1], side, side).clone()
    padded[..., top : top + height, left : left + width] = tensor
    return _resize(padded, (size, size), interpolation)


def restore_from_square_tensor(tensor: torch.Tensor, shape: tuple[int, int], mode: str) -> torch.Tensor:
    """Un-square a float tensor ``(n, c, size, size)`` (images, logits, labels) to ``(n, c, h, w)``.

    Resizes back to the padded square ``max(h, w)`` and crops the padding away; runs on the
    tensor's device, so inference can restore logits before the argmax.
    """
    interpolation = _interpolation(mode)
    _check_batch(tensor)
    if tensor.shape[-1] != tensor.shape[-2]:
        raise ValueError(f"expected square slices; got {tuple(tensor.shape[-2:])}")
    height, width = (int(s) for s in shape)
    if height < 1 or width < 1:
        raise ValueError(f"the original slice shape must be positive; got {shape}")
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    square = _resize(tensor, (side, side), interpolation)
    return square[..., top : top + height, left : left + width]


def _resize(tensor: torch.Tensor, shape: tuple[int, int], interpolation: str) -> torch.Tensor:
    if tuple(tensor.shape[-2:]) == shape:
        return tensor
    if interpolation == "bilinear":
        return F.interpolate(tensor, size=shape, mode="bilinear", align_corners=False)
    return F.interpolate(tensor, size=shape, mode=interpolation)


def _interpolation(mode: str) -> str:
    if mode not in _INTERPOLATION:
        raise ValueError(f"unknown resampling mode {mode!r}; expected 'image' or 'label'")
    return _INTERPOLATION[mode]


def _as_output_dtype(array: np.ndarray, dtype: np.dtype, mode: str) -> np.ndarray:
    if _interpolation(mode) == "bilinear" or np.issubdtype(dtype, np.floating):
        return array.astype(np.float32, copy=False)
    return np.rint(array).astype(dtype)


def _check_axis(array: Union[np.ndarray, torch.Tensor], axis: int) -> None:
    if array.ndim != 3:
        raise ValueError(f"expected a 3D array; got shape {tuple(array.shape)}")
    if axis not in (0, 1, 2):
        raise ValueError(f"the slicing axis must be 0, 1 or 2; got {axis}")


def _check_batch(tensor: torch.Tensor) -> None:
    if tensor.ndim != 4:
        raise ValueError(f"expected a tensor (n, c, h, w); got shape {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise ValueError(f"expected a floating-point tensor; got {tensor.dtype} (convert labels with .float())")
