"""The embedded cardiac phantom: deterministic synthetic CT and MR chest volumes with MM-WHS labels.

This is the default data of the demo, the tests and the benchmarks. The anatomy comes from the
seed (``phantom_anatomy``): four labelled structures (LV myocardium, LA blood, LV blood, ascending
aorta) among unlabelled look-alikes (RV, RA, pulmonary artery, aortic arch and descending aorta) and
the chest around them. The modality decides the acquisition, i.e. the voxel grid and the appearance:

- CT: HU, contrast-filled blood (the right heart may be less bright than the left, depending on
  contrast timing), bright bone, fat below muscle, slight blur and Gaussian noise.
- MR (bSSFP-like): bright blood, bright fat, dark-grey muscle and myocardium, dark lung and bone,
  a smooth multiplicative bias field, lower resolution and Rician noise.

The CT-to-MR intensity relation is not monotonic (bone: brightest in CT, dark in MR; fat: below
muscle in CT, far above it in MR), so no global intensity mapping turns one modality into the other.

How far anatomy, acquisition and appearance vary between subjects is the phantom's profile
(``phantom_profiles``): "default" (the embedded phantom) or "transfer" (domain randomisation for models
meant for real scans).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Optional, Union

import numpy as np
from scipy import ndimage

from sasan.config import LabelSpec
from sasan.data.io import write_volume
from sasan.data.phantom_anatomy import (
    AORTA_LABEL,
    LA_LABEL,
    LV_LABEL,
    MYOCARDIUM_LABEL,
    Anatomy,
    Tissue,
    random_rotation,
    sample_anatomy,
)
from sasan.data.phantom_profiles import Acquisition, CTAppearance, MRAppearance, PhantomProfile, phantom_profile
from sasan.data.volume import Volume

logger = logging.getLogger(__name__)
Box = tuple[slice, slice, slice]

LABELS: list[LabelSpec] = [
    LabelSpec("LV myocardium", MYOCARDIUM_LABEL, [0.85, 0.55, 0.20]),
    LabelSpec("LA blood", LA_LABEL, [0.55, 0.35, 0.85]),
    LabelSpec("LV blood", LV_LABEL, [0.85, 0.15, 0.20]),
    LabelSpec("ascending aorta", AORTA_LABEL, [0.95, 0.85, 0.25]),
]

# Bump whenever the same (seed, modality, size) renders differently, so caches keyed on it refresh.
PHANTOM_VERSION = 1
MODALITIES = ("CT", "MR")
MIN_SIZE = 16  # below this the heart is only a few voxels across


class PhantomError(ValueError):
    """An invalid request to the phantom (unknown modality, size too small, bad seed or count)."""


@dataclass(frozen=True)
class PhantomSubject:
    """One rendered subject: image, MM-WHS label map and tissue map (``Tissue`` values), same grid, and the
    appearance values it drew (``parameters``: e.g. ``left_blood``, ``noise``, ``blur_voxels``)."""

    image: Volume
    label: Volume
    tissues: Volume
    parameters: dict[str, float] = field(default_factory=dict)


def simulate_subject(seed: int, modality: str, size: int = 96,
                     profile: Union[str, PhantomProfile] = "default") -> PhantomSubject:
    """Render subject ``seed`` in ``modality`` ("CT" or "MR") on a grid of size x size in-plane.

    The anatomy depends on ``seed`` (and the profile) only, so CT and MR of the same seed show the same
    chest (on different grids). Grid and appearance depend on seed and modality. The field of view stays
    that of a chest whatever ``size``, so the spacing follows the size. Default profile: 300-500 mm in-plane,
    150-200 mm along z in 0.55-0.8 size slices; at 96, CT is about 3.5-4.5 mm in-plane x 2-2.6 mm slices and
    MR about 3.7-4.8 x 2.8-3.7 mm; at 512, CT in-plane spacing is 0.65-0.85 mm. About half the stacks are
    slightly oblique. ``profile``: "default", "transfer" or a ``PhantomProfile`` (``phantom_profiles``).
    """
    modality = _check_modality(modality)
    _check_seed(seed)
    if size < MIN_SIZE:
        raise PhantomError(f"phantom size must be at least {MIN_SIZE} voxels; got {size}")
    try:
        profile = phantom_profile(profile)
    except ValueError as error:
        raise PhantomError(str(error)) from None
    stream = MODALITIES.index(modality) + 1
    acquisition = profile.acquisition(modality)
    anatomy = sample_anatomy(np.random.default_rng([int(seed), 0]), profile.anatomy)
    grid = _sample_grid(np.random.default_rng([int(seed), 1, stream]), acquisition, size,
                        anatomy.body_center, anatomy.body_size)
    tissue, label = rasterize(anatomy, grid)
    rng = np.random.default_rng([int(seed), 2, stream])
    if modality == "CT":
        image, parameters = _render_ct(rng, tissue, acquisition, profile.ct)
    else:
        image, parameters = _render_mr(rng, tissue, acquisition, profile.mr)

    def volume(array: np.ndarray) -> Volume:
        return Volume(array, grid.spacing, grid.origin, grid.direction.copy())

    return PhantomSubject(volume(image), volume(label), volume(tissue), parameters)


def make_subject(seed: int, modality: str, size: int = 96,
                 profile: Union[str, PhantomProfile] = "default") -> tuple[Volume, Volume]:
    """(image float32 (nz, ny, nx), label uint16 with MM-WHS values) of one subject, same geometry.

    CT images are in HU; MR images in arbitrary units (about 0..1000). See ``simulate_subject``.
    """
    subject = simulate_subject(seed, modality, size, profile)
    return subject.image, subject.label


def subject_seed(seed: int, modality: str, index: int) -> int:
    """Anatomy seed of subject ``index`` of a phantom data set: distinct per modality and index, so the
    CT and MR sets are unpaired (different anatomies)."""
    stream = MODALITIES.index(_check_modality(modality)) + 1
    _check_seed(seed)
    return int(np.random.SeedSequence([int(seed), stream, int(index)]).generate_state(1, np.uint64)[0])


def write_phantom(out_dir: Path, subjects: int, seed: int, size: int = 96,
                  profile: Union[str, PhantomProfile] = "default") -> Path:
    """Write ``subjects`` CT and MR subjects in the folder layout; returns ``out_dir``.

    ``out_dir/CT/images/ct_000.nii.gz``, ``out_dir/CT/labels/ct_000.nii.gz``, and the same under
    ``MR/`` with ``mr_000.nii.gz``. Deterministic for (subjects, seed, size, profile).
    """
    if isinstance(subjects, bool) or not isinstance(subjects, (int, np.integer)) or subjects < 1:
        raise PhantomError(f"the phantom needs at least one subject per modality; got {subjects!r}")
    out_dir = Path(out_dir)
    for modality in MODALITIES:
        prefix = modality.lower()
        for index in range(subjects):
            image, label = make_subject(subject_seed(seed, modality, index), modality, size, profile)
            write_volume(image, out_dir / modality / "images" / f"{prefix}_{index:03d}.nii.gz", overwrite=True)
            write_volume(label, out_dir / modality / "labels" / f"{prefix}_{index:03d}.nii.gz", overwrite=True)
    logger.info("wrote %d CT and %d MR phantom subjects (seed %d, size %d, %s profile) to %s",
                subjects, subjects, seed, size, phantom_profile(profile).name, out_dir)
    return out_dir


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise PhantomError(f"the phantom seed must be a non-negative integer; got {seed!r}")


def _check_modality(modality: str) -> str:
    name = str(modality).upper()
    if name not in MODALITIES:
        raise PhantomError(f"the phantom renders modality 'CT' or 'MR'; got {modality!r}")
    return name


@dataclass(frozen=True)
class VoxelGrid:
    """Where the voxels of a subject lie: the geometry of a ``Volume`` without its array.

    ``shape`` is ``(nz, ny, nx)``; ``spacing`` and ``origin`` are (x, y, z) mm; ``direction`` columns
    are the world directions of the i, j, k axes.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray

    @cached_property
    def _step(self) -> np.ndarray:
        """3x3 matrix: column c is the world displacement of one voxel along index axis c (i, j, k)."""
        return self.direction @ np.diag(self.spacing)

    @cached_property
    def _world_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """World box around the grid's voxel centres."""
        corners = _box_corners(np.zeros(3), np.array(self.shape[::-1], float) - 1)
        world = corners @ self._step.T + np.asarray(self.origin)
        return world.min(axis=0), world.max(axis=0)

    def box(self, low: np.ndarray, high: np.ndarray) -> Optional[Box]:
        """Array slices ``(k, j, i)`` covering the world box [low, high], or None when it misses."""
        grid_low, grid_high = self._world_bounds
        low, high = np.maximum(low, grid_low), np.minimum(high, grid_high)  # unbounded shapes stop here
        if np.any(low > high):
            return None
        index = np.linalg.solve(self._step, (_box_corners(low, high) - np.asarray(self.origin)).T)
        start = np.maximum(np.floor(index.min(axis=1)).astype(int), 0)
        stop = np.minimum(np.ceil(index.max(axis=1)).astype(int) + 1, self.shape[::-1])
        if np.any(start >= stop):
            return None
        return (slice(start[2], stop[2]), slice(start[1], stop[1]), slice(start[0], stop[0]))

    @cached_property
    def _coordinates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World x, y, z (mm, float32) of all voxels, each of shape ``self.shape``."""
        step = self._step
        k, j, i = (np.arange(n, dtype=np.float32) for n in self.shape)
        k, j, i = k[:, None, None], j[None, :, None], i[None, None, :]
        return tuple(  # type: ignore[return-value]
            np.float32(self.origin[a]) + np.float32(step[a, 0]) * i + np.float32(step[a, 1]) * j
            + np.float32(step[a, 2]) * k
            for a in range(3)
        )

    def coordinates(self, box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World x, y, z (mm, float32) of every voxel in ``box``: views of the whole grid's
        coordinates (computed once), each of the box's (k, j, i) shape."""
        return tuple(axis[box] for axis in self._coordinates)  # type: ignore[return-value]


_CORNER_PATTERN = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], bool)


def _box_corners(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The 8 corners (8, 3) of the axis-aligned box [low, high]."""
    return np.where(_CORNER_PATTERN, high, low)


def rasterize(anatomy: Anatomy, grid: VoxelGrid) -> tuple[np.ndarray, np.ndarray]:
    """Tissue map (uint8, ``Tissue`` values) and label map (uint16, MM-WHS values), both ``grid.shape``."""
    tissue = np.zeros(grid.shape, np.uint8)
    label = np.zeros(grid.shape, np.uint16)
    for paint in anatomy.paints:
        box = grid.box(*paint.shape.bounds())
        if box is None:
            continue
        inside = paint.shape.contains(*grid.coordinates(box))
        tissue_view, label_view = tissue[box], label[box]
        if len(paint.only_in) == 1:
            inside &= tissue_view == paint.only_in[0]
        elif paint.only_in:
            inside &= np.isin(tissue_view, np.array(paint.only_in, np.uint8))
        tissue_view[inside] = paint.tissue
        label_view[inside] = paint.label
    return tissue, label


def _sample_grid(rng: np.random.Generator, acquisition: Acquisition, size: int,
                 body_center: np.ndarray, body_size: tuple[float, float]) -> VoxelGrid:
    """A size x size in-plane grid over the body (as much of it as the field of view takes), centred
    near the body axis and a little above the heart."""
    in_plane = max(body_size) * rng.uniform(*acquisition.fov_margin) / size
    slices = max(8, int(round(size * rng.uniform(*acquisition.slice_fraction))))
    coverage = rng.uniform(*acquisition.z_coverage_mm)
    if acquisition.slice_mm is None:
        slice_mm = coverage / slices
    else:  # the thickness is drawn and the number of slices follows (the size-based count is not used)
        slice_mm = rng.uniform(*acquisition.slice_mm)
        slices = max(8, int(round(coverage / slice_mm)))
    spacing = np.array([in_plane, in_plane, slice_mm])
    oblique = rng.uniform() < acquisition.oblique_probability
    tilt = random_rotation(rng, *acquisition.oblique_degrees)  # drawn always: same stream either way
    direction = tilt if oblique else np.eye(3)
    shift = acquisition.grid_shift_mm
    center = body_center + np.array([rng.uniform(-shift, shift), rng.uniform(-shift, shift),
                                     rng.uniform(*acquisition.grid_z_mm)])
    extent = spacing * (np.array([size, size, slices]) - 1)
    origin = center - direction @ (extent / 2)
    return VoxelGrid((slices, size, size), tuple(spacing), tuple(origin), direction)


def _tissue_values(ranges: dict[Tissue, tuple[float, float]], rng: np.random.Generator) -> np.ndarray:
    """Per-subject intensity of every tissue, drawn uniformly from its range; indexed by ``Tissue``."""
    values = np.zeros(len(Tissue), np.float32)
    for tissue in Tissue:
        values[tissue] = rng.uniform(*ranges[tissue])
    return values


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(image, (0.7 * sigma, sigma, sigma), mode="nearest")


def _render_ct(rng: np.random.Generator, tissue: np.ndarray, acquisition: Acquisition,
               appearance: CTAppearance) -> tuple[np.ndarray, dict[str, float]]:
    """HU image and its drawn values: contrast timing sets left and right blood (and the myocardium's
    enhancement); blur, then Gaussian noise."""
    left_blood = rng.uniform(*appearance.left_blood_hu)
    right_blood = max(appearance.right_blood_min_hu, left_blood * rng.uniform(*appearance.right_to_left))
    values = _tissue_values({
        Tissue.AIR: (-1000, -1000), Tissue.LUNG: (-850, -740),
        Tissue.LUNG_VESSEL: (0.5 * right_blood, 0.8 * right_blood),
        Tissue.FAT: (-110, -85), Tissue.MUSCLE: (40, 60), Tissue.SOFT_TISSUE: (20, 40),
        Tissue.LIVER: (60, 100), Tissue.MYOCARDIUM: (40, 60),
        Tissue.BLOOD_LEFT: (left_blood, left_blood), Tissue.BLOOD_RIGHT: (right_blood, right_blood),
        Tissue.BONE: (700, 1000), Tissue.MARROW: (400, 500), Tissue.FLUID: (0, 15),
    }, rng)
    low, high = appearance.myocardium_enhancement
    if high > 0:  # drawn only when asked for: the default phantom's stream stays as it was
        values[Tissue.MYOCARDIUM] += rng.uniform(low, high) * max(left_blood - values[Tissue.MYOCARDIUM], 0.0)
    blur = rng.uniform(*acquisition.blur_voxels)
    image = _blur(values[tissue], blur)
    noise = rng.uniform(*appearance.noise_hu)
    image = (image + rng.standard_normal(image.shape, np.float32) * noise).astype(np.float32)
    return image, {"left_blood": float(left_blood), "right_blood": float(right_blood),
                   "myocardium": float(values[Tissue.MYOCARDIUM]), "noise": float(noise), "blur_voxels": float(blur)}


def _render_mr(rng: np.random.Generator, tissue: np.ndarray, acquisition: Acquisition,
               appearance: MRAppearance) -> tuple[np.ndarray, dict[str, float]]:
    """bSSFP-like image and its drawn values: blood > fat > muscle > bone; blur, smooth bias field, Rician
    noise."""
    left_blood = rng.uniform(*appearance.left_blood)
    values = _tissue_values({
        Tissue.AIR: (0, 0), Tissue.LUNG: (25, 50), Tissue.LUNG_VESSEL: (350, 500),
        Tissue.FAT: (520, 640), Tissue.MUSCLE: (140, 190), Tissue.SOFT_TISSUE: (230, 300),
        Tissue.LIVER: (180, 240), Tissue.MYOCARDIUM: (160, 210),
        Tissue.BLOOD_LEFT: (left_blood, left_blood), Tissue.BLOOD_RIGHT: (0.9 * left_blood, left_blood),
        Tissue.BONE: (15, 40), Tissue.MARROW: (80, 130), Tissue.FLUID: (650, 750),
    }, rng)
    gain = rng.uniform(0.85, 1.05)  # arbitrary receiver gain
    values *= gain
    blur = rng.uniform(*acquisition.blur_voxels)
    image = _blur(values[tissue], blur) * _bias_field(rng, tissue.shape, appearance.bias_scale)
    noise = rng.uniform(*appearance.noise)
    real = image + rng.standard_normal(image.shape, np.float32) * noise
    imaginary = rng.standard_normal(image.shape, np.float32) * noise
    image = np.sqrt(real * real + imaginary * imaginary).astype(np.float32)
    return image, {"left_blood": float(values[Tissue.BLOOD_LEFT]), "right_blood": float(values[Tissue.BLOOD_RIGHT]),
                   "myocardium": float(values[Tissue.MYOCARDIUM]), "noise": float(noise), "blur_voxels": float(blur)}


def _bias_field(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    """Smooth multiplicative field, shape ``shape``: exp of a quadratic polynomial of the voxel
    position normalised to [-1, 1]; ``scale`` widens the spread of its coefficients."""
    k, j, i = (np.linspace(-1, 1, n, dtype=np.float32) for n in shape)
    k, j, i = k[:, None, None], j[None, :, None], i[None, None, :]
    linear = rng.normal(0, 0.15 * scale, 3)
    quadratic = rng.normal(0, 0.08 * scale, 4)
    log_field = (linear[0] * i + linear[1] * j + linear[2] * k + quadratic[0] * i * i
                 + quadratic[1] * j * j + quadratic[2] * k * k + quadratic[3] * i * j)
    return np.exp(log_field).astype(np.float32)
