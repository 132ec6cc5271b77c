"""Small synthetic scans with the tissues of real ones, for the input check's tests (``sasan.domain``).

A head: scalp, a bone ring, brain inside, its cross-section shrinking towards the vertex. A chest: a fat
layer, muscle, two air-filled lungs, a heart and a spine. CT in HU; the head MR is T1-like (bright scalp
fat, dark skull, grey brain) in arbitrary units. Each seed changes the size, position and noise.
``head_domain`` fingerprints them as a model card's ``domain``.
"""
from __future__ import annotations

import numpy as np

from sasan.card import ModelCard
from sasan.data.geometry import slicing_axis
from sasan.data.preprocess import fit_intensity_map
from sasan.data.volume import Volume
from sasan.domain.fingerprint import MAX_SLICES, build_fingerprint
from sasan.domain.volumes import prepared_profiles

SHAPE = (12, 48, 48)  # (z, y, x)
SPACING = (4.0, 4.0, 6.0)  # mm: a 19 cm field of view, 7 cm of head


def _grid(seed: int, shape=SHAPE):
    """Per-voxel normalised radius from a jittered centre (1 = the body's edge at that slice) and the rng."""
    rng = np.random.default_rng(seed)
    depth, rows, columns = shape
    z, y, x = np.indices(shape, dtype=np.float64)
    centre = np.array([rows, columns]) / 2 + rng.uniform(-2, 2, 2)
    size = rng.uniform(0.8, 0.95) * min(rows, columns) / 2
    shrink = np.sqrt(np.clip(1.0 - (z / (depth + 2)) ** 2, 0.05, 1.0))  # smaller towards the top
    radius = np.hypot((y - centre[0]) / (size * shrink), (x - centre[1]) / (0.85 * size * shrink))
    return radius, y - centre[0], x - centre[1], size, rng


def head_ct(seed: int, shape=SHAPE) -> Volume:
    radius, _, _, _, rng = _grid(seed, shape)
    hu = np.full(shape, -1000.0)
    hu[radius < 1.0] = 30.0                     # scalp
    hu[radius < 0.93] = rng.uniform(700, 1000)  # skull
    hu[radius < 0.8] = 35.0                     # brain
    hu += rng.normal(0, 12, shape)
    return Volume(hu.astype(np.float32), SPACING)


def head_mr(seed: int, shape=SHAPE) -> Volume:
    radius, _, _, _, rng = _grid(seed, shape)
    signal = np.zeros(shape)
    signal[radius < 1.0] = 380.0                # scalp fat: bright in T1
    signal[radius < 0.93] = 25.0                # skull: dark
    signal[radius < 0.8] = 200.0                # brain
    signal[(radius < 0.35)] = 120.0             # ventricles
    signal = np.abs(signal * rng.uniform(0.8, 1.2) + rng.normal(0, 8, shape))
    return Volume(signal.astype(np.float32), SPACING)


def chest_ct(seed: int, shape=SHAPE) -> Volume:
    radius, dy, dx, size, rng = _grid(seed, shape)
    hu = np.full(shape, -1000.0)
    hu[radius < 1.0] = -100.0                   # subcutaneous fat
    hu[radius < 0.85] = 45.0                    # muscle
    for side in (-1, 1):                        # lungs
        hu[np.hypot((dy + 0.05 * size) / (0.55 * size), (dx - side * 0.38 * size) / (0.28 * size)) < 1] = -850.0
    hu[np.hypot(dy / (0.25 * size), dx / (0.25 * size)) < 1] = 40.0  # heart
    hu[np.hypot((dy - 0.62 * size) / (0.1 * size), dx / (0.1 * size)) < 1] = 600.0  # spine
    hu += rng.normal(0, 12, shape)
    return Volume(hu.astype(np.float32), SPACING)


def head_domain(card: ModelCard) -> dict:
    """A card's ``domain`` for ``card``'s normalisation: three synthetic heads per modality make the fingerprint,
    two more validate it."""
    def profiles(volume: Volume, modality: str, limit=None):
        intensity = fit_intensity_map(volume.array, card.normalization_config(modality))
        return prepared_profiles(volume, slicing_axis(volume, "axial"), intensity, limit)

    modalities = {}
    for modality, make in (("CT", head_ct), ("MR", head_mr)):
        fingerprint = build_fingerprint([profiles(make(seed), modality) for seed in range(3)],
                                        [profiles(make(seed), modality, MAX_SLICES) for seed in (3, 4)])
        modalities[modality] = {"description": f"head {modality}", "fingerprint": fingerprint.to_dict()}
    return {"body_region": "head", "modalities": modalities}
