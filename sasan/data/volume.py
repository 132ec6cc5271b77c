"""A 3D image with its physical geometry, the unit every part of the engine exchanges.

Conventions (the same as SimpleITK, so reading and writing never reorders anything):

- ``array`` is indexed ``[k, j, i]`` (slice, row, column), i.e. shape ``(nz, ny, nx)``.
- ``spacing`` and ``origin`` are given in ``(x, y, z)`` order, in millimetres, LPS world coordinates.
- ``direction`` is a 3x3 matrix whose *columns* are the world directions of the i, j, k axes.

World position of voxel (i, j, k): ``origin + direction @ (spacing * (i, j, k))``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Vec3 = tuple[float, float, float]


@dataclass
class Volume:
    """Voxel array plus the geometry needed to put it back exactly where it came from."""

    array: np.ndarray
    spacing: Vec3 = (1.0, 1.0, 1.0)
    origin: Vec3 = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"a Volume needs a 3D array (z, y, x); got shape {self.array.shape}")
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        self.origin = tuple(float(o) for o in self.origin)  # type: ignore[assignment]
        self.direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        if len(self.spacing) != 3 or len(self.origin) != 3:
            raise ValueError("spacing and origin need three values (x, y, z)")
        if min(self.spacing) <= 0 or not np.all(np.isfinite(self.spacing)):
            raise ValueError(f"spacing must be positive and finite; got {self.spacing}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(nz, ny, nx)``."""
        return tuple(self.array.shape)  # type: ignore[return-value]

    def with_array(self, array: np.ndarray) -> "Volume":
        """The same geometry around another array of exactly the same shape."""
        if tuple(array.shape) != self.shape:
            raise ValueError(
                f"array of shape {tuple(array.shape)} cannot take the geometry of a {self.shape} volume"
            )
        return Volume(array, self.spacing, self.origin, self.direction.copy())

    def index_to_world(self) -> np.ndarray:
        """4x4 matrix mapping homogeneous (i, j, k, 1) to LPS world (x, y, z, 1)."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.direction @ np.diag(self.spacing)
        matrix[:3, 3] = self.origin
        return matrix

    def same_geometry(self, other: "Volume", atol: float = 1e-5) -> bool:
        """True when both volumes lie on the same voxel grid in world space."""
        return self.shape == other.shape and bool(
            np.allclose(self.index_to_world(), other.index_to_world(), atol=atol)
        )
