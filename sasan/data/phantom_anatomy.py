"""Random chest anatomy for the cardiac phantom: painted shapes in world millimetres (LPS).

A subject's anatomy depends on its seed only. The modality (``phantom.py``) picks the voxel grid it is
rasterised on and the intensity of each tissue. Shapes are painted in order, later ones over earlier
ones; each reports a world bounding box so that rasterising evaluates it only there.

World frame: x to the patient's left, y posterior, z superior (LPS). The body axis is centred on
``Anatomy.body_center``. Its z is the level of the left-ventricle centre.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol, Sequence

import numpy as np

_FAR = 1.0e4  # mm; "unbounded" extent of shapes that run through the whole body along z


class Tissue(IntEnum):
    """Tissue classes of the phantom; each modality maps them to its own intensities."""

    AIR = 0
    LUNG = 1
    LUNG_VESSEL = 2
    FAT = 3
    MUSCLE = 4
    SOFT_TISSUE = 5
    LIVER = 6
    MYOCARDIUM = 7
    BLOOD_LEFT = 8  # LV, LA, aorta, pulmonary veins
    BLOOD_RIGHT = 9  # RV, RA, pulmonary artery, superior vena cava
    BONE = 10  # cortical bone: ribs, sternum, vertebral rims and arches
    MARROW = 11  # vertebral bodies' cancellous bone
    FLUID = 12  # cerebrospinal fluid


# The MM-WHS label values painted by this module (``phantom.LABELS`` names and colours them).
MYOCARDIUM_LABEL, LA_LABEL, LV_LABEL, AORTA_LABEL = 205, 420, 500, 820


class Shape(Protocol):
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """World box (low, high), mm, that contains the shape."""

    def contains(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Boolean mask of the points (same-shape coordinate arrays, mm) inside the shape."""


@dataclass(frozen=True)
class Ellipsoid:
    """Ellipsoid with semi-axes ``radii`` along the columns of ``axes``. Optionally cut flat: points
    whose coordinate along the first axis is below ``cut`` (mm from the centre) are outside."""

    center: np.ndarray
    axes: np.ndarray
    radii: tuple[float, float, float]
    cut: float = -np.inf

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.center - max(self.radii), self.center + max(self.radii)

    def contains(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        # python floats keep the float32 coordinates float32 (a numpy float64 scalar would promote)
        dx, dy, dz = (axis - float(c) for axis, c in zip((x, y, z), self.center))
        total = np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape), np.float32)
        inside_cut = True
        for axis in range(3):
            a = [float(v) for v in self.axes[:, axis]]
            local = dx * a[0] + dy * a[1] + dz * a[2]
            total += (local * (1.0 / float(self.radii[axis]))) ** 2
            if axis == 0 and np.isfinite(self.cut):
                inside_cut = local > float(self.cut)
        return (total < 1.0) & inside_cut


@dataclass(frozen=True)
class Tube:
    """Straight tube of ``radius`` from ``start`` to ``end``: rounded ends (a capsule) or flat ends."""

    start: np.ndarray
    end: np.ndarray
    radius: float
    rounded: bool = True

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.minimum(self.start, self.end) - self.radius,
                np.maximum(self.start, self.end) + self.radius)

    def contains(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        axis = self.end - self.start
        length = float(np.linalg.norm(axis))
        u = [float(v) for v in axis / length]
        dx, dy, dz = (coordinate - float(s) for coordinate, s in zip((x, y, z), self.start))
        along = dx * u[0] + dy * u[1] + dz * u[2]
        nearest = np.clip(along, 0.0, length)
        # squared distance to the nearest axis point: |d|^2 - 2 t (d.u) + t^2
        distance2 = dx * dx + dy * dy + dz * dz - 2.0 * nearest * along + nearest * nearest
        inside = distance2 < float(self.radius) ** 2
        if not self.rounded:
            inside &= (along >= 0.0) & (along <= length)
        return inside


@dataclass(frozen=True)
class Column:
    """Elliptic cylinder along the world z axis through the whole grid (body outline, mediastinum)."""

    center_xy: tuple[float, float]
    radii_xy: tuple[float, float]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        (cx, cy), (rx, ry) = self.center_xy, self.radii_xy
        return np.array([cx - rx, cy - ry, -_FAR]), np.array([cx + rx, cy + ry, _FAR])

    def contains(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        return _elliptic_radius2(x, y, self.center_xy, self.radii_xy) < 1.0


@dataclass(frozen=True)
class RibCage:
    """Ribs as slanted bands cut from an elliptic shell: bone where the shell crosses one of the
    periodic bands ``z - slope * y`` (ribs descend towards the front), with an anterior gap for the
    costal cartilages."""

    center_xy: tuple[float, float]
    radii_xy: tuple[float, float]
    thickness: float
    period: float
    width: float
    slope: float
    phase: float
    anterior_gap: float

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return Column(self.center_xy, self.radii_xy).bounds()

    def contains(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        radius2 = _elliptic_radius2(x, y, self.center_xy, self.radii_xy)
        shell = (radius2 < 1.0) & (radius2 > (1.0 - self.thickness / min(self.radii_xy)) ** 2)
        cx, cy = float(self.center_xy[0]), float(self.center_xy[1])
        slanted = z - float(self.slope) * (y - cy) - float(self.phase)
        band = np.mod(slanted, float(self.period)) < float(self.width)
        gap = (np.abs(x - cx) < float(self.anterior_gap)) & (y < cy)
        return shell & band & ~gap


def _elliptic_radius2(x: np.ndarray, y: np.ndarray, center: Sequence[float],
                      radii: Sequence[float]) -> np.ndarray:
    """Squared elliptic radius: below 1 inside the ellipse of semi-axes ``radii`` around ``center``."""
    return (((x - float(center[0])) * (1.0 / float(radii[0]))) ** 2
            + ((y - float(center[1])) * (1.0 / float(radii[1]))) ** 2)


@dataclass(frozen=True)
class Paint:
    """Paint ``shape`` with ``tissue`` and ``label``; only over voxels of ``only_in`` tissues if given."""

    shape: Shape
    tissue: Tissue
    label: int = 0
    only_in: tuple[Tissue, ...] = ()


@dataclass(frozen=True)
class AnatomyRanges:
    """How far subjects' anatomies vary; each range ``(low, high)`` is drawn from uniformly. The defaults are
    the embedded phantom's (``phantom_profiles`` widens them for the "transfer" profile)."""

    body_width_mm: tuple[float, float] = (300.0, 350.0)  # left-right
    body_depth_ratio: tuple[float, float] = (0.62, 0.74)  # antero-posterior depth / width
    body_shift_mm: float = 15.0  # the body axis lies within +- this of the world origin (x and y)
    heart_shift_x_mm: tuple[float, float] = (12.0, 30.0)  # LV centre from the body axis, to the patient's left
    heart_shift_y_mm: tuple[float, float] = (-38.0, -24.0)  # ... and posterior (negative: anterior)
    heart_pose_degrees: tuple[float, float] = (3.0, 20.0)  # the heart's tilt about a random axis
    lung_vessels: tuple[int, int] = (220, 220)  # vessel segments in the lungs


@dataclass(frozen=True)
class Anatomy:
    """One subject: the shapes to paint, in order, and where the body is (world mm)."""

    paints: tuple[Paint, ...]
    body_center: np.ndarray  # its z is the level of the LV centre
    body_size: tuple[float, float]  # (left-right width, antero-posterior depth), mm


def rotation(axis: Sequence[float], degrees: float) -> np.ndarray:
    """3x3 rotation by ``degrees`` about ``axis`` (Rodrigues)."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    angle = np.radians(degrees)
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def random_rotation(rng: np.random.Generator, low_degrees: float, high_degrees: float) -> np.ndarray:
    """Rotation about a uniformly random axis by an angle uniform in [low, high] degrees."""
    axis = rng.normal(size=3)
    return rotation(axis, rng.uniform(low_degrees, high_degrees))


def _unit(vector: Sequence[float]) -> np.ndarray:
    v = np.asarray(vector, float)
    return v / np.linalg.norm(v)


def _resting_heart_axes() -> np.ndarray:
    """Columns: long axis (base to apex: left, anterior, inferior), posterior, and the third axis
    (towards the right and inferior), before the subject's random pose."""
    apex = _unit((0.55, -0.45, -0.60))
    posterior = _unit(np.array([0.0, 1.0, 0.0]) - apex[1] * apex)
    return np.column_stack([apex, posterior, np.cross(posterior, apex)])


def sample_anatomy(rng: np.random.Generator, ranges: AnatomyRanges = AnatomyRanges()) -> Anatomy:
    """Draw one subject's chest: body, chest wall, lungs, spine, great vessels and heart."""
    width = rng.uniform(*ranges.body_width_mm)
    depth = width * rng.uniform(*ranges.body_depth_ratio)
    shift = ranges.body_shift_mm
    center = np.array([rng.uniform(-shift, shift), rng.uniform(-shift, shift), 0.0])
    paints, cavity = _chest_wall(rng, center, width, depth)
    spine_y = center[1] + 0.45 * depth / 2
    paints += _abdomen_and_mediastinum(rng, center, cavity)
    paints += _spine(rng, center, spine_y)
    low, high = ranges.lung_vessels  # a fixed count draws nothing: the default phantom's stream stays as it was
    paints += _lung_vessels(rng, center, cavity, low if low == high else int(rng.integers(low, high + 1)))
    heart = center + np.array([rng.uniform(*ranges.heart_shift_x_mm), rng.uniform(*ranges.heart_shift_y_mm), 0.0])
    pose = random_rotation(rng, *ranges.heart_pose_degrees)
    paints += _heart(rng, heart, pose, descending_aorta_xy=(center[0] + 24, spine_y - 16))
    return Anatomy(tuple(paints), center, (width, depth))


def _chest_wall(rng: np.random.Generator, center: np.ndarray, width: float,
                depth: float) -> tuple[list[Paint], tuple[float, float]]:
    """Body outline, subcutaneous fat, muscle, ribs, sternum and the lung-filled thoracic cavity;
    also returns the cavity's semi-axes (x, y) in mm."""
    xy = (center[0], center[1])
    fat_side, fat_front = rng.uniform(8, 25), rng.uniform(6, 20)
    inner = (width / 2 - fat_side, depth / 2 - fat_front)
    ribs = (inner[0] - rng.uniform(8, 16), inner[1] - rng.uniform(6, 12))
    rib_thickness = rng.uniform(9, 13)
    cavity = (ribs[0] - rib_thickness - 2, ribs[1] - rib_thickness - 2)
    paints = [
        Paint(Column(xy, (width / 2, depth / 2)), Tissue.FAT),
        Paint(Column(xy, inner), Tissue.MUSCLE),
        Paint(RibCage(xy, ribs, rib_thickness, period=rng.uniform(28, 36), width=rng.uniform(10, 14),
                      slope=rng.uniform(0.3, 0.6), phase=rng.uniform(0, 30),
                      anterior_gap=rng.uniform(25, 40)),
              Tissue.BONE),
        Paint(Column((xy[0], xy[1] - ribs[1] + 6), (rng.uniform(12, 18), 6.0)), Tissue.BONE),  # sternum
        Paint(Column(xy, cavity), Tissue.LUNG),
    ]
    return paints, cavity


def _abdomen_and_mediastinum(rng: np.random.Generator, center: np.ndarray,
                             cavity: tuple[float, float]) -> list[Paint]:
    """Liver under the right hemidiaphragm, upper abdomen on the left, and the mediastinal column."""
    eye = np.eye(3)
    liver_center = center + np.array([-rng.uniform(40, 65), rng.uniform(-10, 10), -rng.uniform(70, 85)])
    abdomen_center = center + np.array([rng.uniform(45, 70), rng.uniform(-10, 10), -rng.uniform(85, 100)])
    return [
        Paint(Ellipsoid(liver_center, eye, (rng.uniform(90, 110), rng.uniform(75, 90), rng.uniform(50, 60))),
              Tissue.LIVER, only_in=(Tissue.LUNG,)),
        Paint(Ellipsoid(abdomen_center, eye, (rng.uniform(70, 90), rng.uniform(70, 85), rng.uniform(50, 60))),
              Tissue.SOFT_TISSUE, only_in=(Tissue.LUNG,)),
        Paint(Column((center[0] + rng.uniform(0, 12), center[1]), (rng.uniform(28, 40), 0.95 * cavity[1])),
              Tissue.SOFT_TISSUE, only_in=(Tissue.LUNG,)),
    ]


def _spine(rng: np.random.Generator, center: np.ndarray, spine_y: float) -> list[Paint]:
    """Vertebral bodies (cortical rim, marrow, discs), neural arch, spinal canal, spinous process."""
    x = center[0]
    body_radius = rng.uniform(16, 20)
    canal_y = spine_y + body_radius + 8
    up, down = np.array([x, spine_y, _FAR]), np.array([x, spine_y, -_FAR])
    canal_up, canal_down = np.array([x, canal_y, _FAR]), np.array([x, canal_y, -_FAR])
    paints = [
        Paint(Tube(down, up, body_radius, rounded=False), Tissue.BONE),
        Paint(Tube(down, up, body_radius - 3.5, rounded=False), Tissue.MARROW),
        Paint(Tube(canal_down, canal_up, rng.uniform(13, 16), rounded=False), Tissue.BONE),
        Paint(Tube(canal_down, canal_up, rng.uniform(7, 9), rounded=False), Tissue.FLUID),
        Paint(Column((x, canal_y + 24), (rng.uniform(4, 6), 14.0)), Tissue.BONE),
    ]
    period, disc, phase = rng.uniform(24, 30), rng.uniform(5, 8), rng.uniform(0, 30)
    for level in np.arange(-150 + phase, 200, period):
        paints.append(Paint(Tube(np.array([x, spine_y, level]), np.array([x, spine_y, level + disc]),
                                 body_radius + 0.5, rounded=False), Tissue.SOFT_TISSUE))
    return paints


def _lung_vessels(rng: np.random.Generator, center: np.ndarray, cavity: tuple[float, float],
                  count: int) -> list[Paint]:
    """Short vessel segments pointing away from the hila, painted over lung only."""
    paints = []
    for _ in range(count):
        side = rng.choice((-1.0, 1.0))
        hilum = center + np.array([side * 45.0, 10.0, 20.0])
        angle = rng.uniform(0, 2 * np.pi)
        reach = np.sqrt(rng.uniform(0.05, 0.9))
        start = np.array([center[0] + side * abs(np.cos(angle)) * reach * cavity[0],
                          center[1] + np.sin(angle) * reach * cavity[1], rng.uniform(-80, 130)])
        direction = _unit(start - hilum + rng.normal(scale=20.0, size=3))
        length, radius = rng.uniform(15, 40), rng.uniform(2.5, 5.0) * (1.2 - 0.5 * reach)
        paints.append(Paint(Tube(start, start + length * direction, radius), Tissue.LUNG_VESSEL,
                            only_in=(Tissue.LUNG,)))
    return paints


def _heart(rng: np.random.Generator, heart: np.ndarray, pose: np.ndarray,
           descending_aorta_xy: tuple[float, float]) -> list[Paint]:
    """Heart chambers, walls and great vessels, posed by ``pose`` about the LV centre ``heart``.

    Positions are written as offsets from the LV centre in the resting frame (mm) and then posed.
    Labelled structures are painted last so they win overlaps with their unlabelled neighbours.
    """
    axes = pose @ _resting_heart_axes()

    def at(offset: np.ndarray) -> np.ndarray:
        return heart + pose @ offset

    def frame(u: float, v: float, w: float) -> np.ndarray:  # offset along long axis, posterior, third
        return _resting_heart_axes() @ np.array([u, v, w])

    def chamber(offset: np.ndarray, radii: tuple[float, float, float], tissue: Tissue, label: int = 0,
                cut: float = -np.inf, only_in: tuple[Tissue, ...] = ()) -> Paint:
        return Paint(Ellipsoid(at(offset), axes, radii, cut), tissue, label, only_in)

    def vessel(start: np.ndarray, end: np.ndarray, radius: float, tissue: Tissue, label: int = 0,
               rounded: bool = True) -> Paint:
        return Paint(Tube(start, end, radius, rounded), tissue, label)

    lv_long, lv_radius, wall = rng.uniform(40, 48), rng.uniform(21, 26), rng.uniform(8, 12)
    base = -0.6 * lv_long
    la_radii = (rng.uniform(16, 20), rng.uniform(18, 23), rng.uniform(24, 30))
    la = frame(base - 0.75 * la_radii[0], 0.7 * lv_radius, -0.5 * lv_radius)
    rv = frame(0.05 * lv_long, -0.45 * lv_radius, 0.85 * lv_radius)
    rv_radii = (0.85 * lv_long, 0.8 * lv_radius, 1.05 * lv_radius)
    ra_radius = rng.uniform(18, 23)
    ra = frame(base - 0.6 * ra_radius, 0.25 * lv_radius, 1.05 * lv_radius)

    aorta_radius = rng.uniform(13, 17)
    aortic_root = frame(base - 3, -0.5 * lv_radius, 0.3 * lv_radius)
    arch_start = aortic_root + rng.uniform(50, 70) * _unit((-0.1, -0.25, 1.0))
    arch_top = arch_start + np.array([35.0, 30.0, 18.0])
    # the descending aorta hangs from the posed arch but stays beside the spine (world position)
    descending_top = np.array([*descending_aorta_xy, at(arch_top)[2] - 15])
    descending_bottom = np.array([*descending_aorta_xy, -_FAR])
    descending_radius = rng.uniform(10, 13)

    pa_root = aortic_root + np.array([22.0, -16.0, 8.0])
    pa_fork = pa_root + 40 * _unit((0.35, 0.55, 0.75))
    pa_radius = rng.uniform(11, 14)

    fat_pad = frame(base * 0.5, 0.0, 0.3 * lv_radius)
    fat_radii = (lv_long * 1.3 + 8, lv_radius * 1.9, lv_radius * 2.3)
    soft_or_lung = (Tissue.LUNG, Tissue.SOFT_TISSUE, Tissue.LIVER, Tissue.LUNG_VESSEL)
    return [
        chamber(fat_pad, fat_radii, Tissue.FAT, only_in=soft_or_lung),
        # aortic arch and descending aorta: the same blood as the ascending aorta, but not labelled
        vessel(at(arch_start), at(arch_top), aorta_radius, Tissue.BLOOD_LEFT),
        vessel(at(arch_top), descending_top, descending_radius, Tissue.BLOOD_LEFT),
        vessel(descending_top, descending_bottom, descending_radius, Tissue.BLOOD_LEFT),
        vessel(at(ra + np.array([-8.0, 0.0, 10.0])), at(ra + np.array([-15.0, -10.0, 110.0])),
               rng.uniform(9, 11), Tissue.BLOOD_RIGHT),  # superior vena cava
        chamber(ra, (ra_radius * 1.15 + 2.5, ra_radius + 2.5, ra_radius + 2.5), Tissue.MYOCARDIUM),
        chamber(ra, (ra_radius * 1.15, ra_radius, ra_radius), Tissue.BLOOD_RIGHT),
        chamber(rv, tuple(r + 4 for r in rv_radii), Tissue.MYOCARDIUM, cut=base - 4),
        chamber(rv, rv_radii, Tissue.BLOOD_RIGHT, cut=base),
        vessel(at(rv + frame(-0.3 * lv_long, -0.2 * lv_radius, 0)), at(pa_root), pa_radius,
               Tissue.BLOOD_RIGHT),  # right ventricular outflow tract
        vessel(at(pa_root), at(pa_fork), pa_radius, Tissue.BLOOD_RIGHT),
        vessel(at(pa_fork), at(pa_fork + 38 * _unit((1.0, 0.5, 0.0))), 0.75 * pa_radius, Tissue.BLOOD_RIGHT),
        vessel(at(pa_fork), at(pa_fork + 55 * _unit((-1.0, 0.45, -0.1))), 0.75 * pa_radius,
               Tissue.BLOOD_RIGHT),
        vessel(at(la), at(la + np.array([48.0, 10.0, -4.0])), rng.uniform(6, 8), Tissue.BLOOD_LEFT),
        vessel(at(la), at(la + np.array([-48.0, 10.0, -4.0])), rng.uniform(6, 8), Tissue.BLOOD_LEFT),
        chamber(la, tuple(r + 2.5 for r in la_radii), Tissue.MYOCARDIUM),
        chamber(la, la_radii, Tissue.BLOOD_LEFT, LA_LABEL),
        chamber(np.zeros(3), (lv_long + 0.9 * wall, lv_radius + wall, 1.05 * lv_radius + wall),
                Tissue.MYOCARDIUM, MYOCARDIUM_LABEL, cut=base),
        chamber(np.zeros(3), (lv_long, lv_radius, 1.05 * lv_radius), Tissue.BLOOD_LEFT, LV_LABEL, cut=base),
        vessel(at(aortic_root), at(arch_start), aorta_radius, Tissue.BLOOD_LEFT, AORTA_LABEL, rounded=False),
    ]
