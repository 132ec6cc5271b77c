"""The cardiac phantom: determinism, anatomy, geometry, tissue contrasts per modality, NIfTI output."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from sasan.data.phantom import (
    LABELS,
    PhantomError,
    VoxelGrid,
    make_subject,
    rasterize,
    simulate_subject,
    subject_seed,
    write_phantom,
)
from sasan.data.phantom_anatomy import Anatomy, Ellipsoid, Paint, Tissue, rotation

MYOCARDIUM, LA, LV, AORTA = 205, 420, 500, 820
SMALL = 48  # grid size for anatomy and geometry checks: fast, yet every structure spans several voxels
SEEDS = range(6)
TISSUE_GROUPS = {
    "bone": (Tissue.BONE, Tissue.MARROW),
    "blood": (Tissue.BLOOD_LEFT,),
    "myocardium": (Tissue.MYOCARDIUM,),
    "fat": (Tissue.FAT,),
    "muscle": (Tissue.MUSCLE,),
    "lung": (Tissue.LUNG,),
    "air": (Tissue.AIR,),
}


@pytest.fixture(scope="module")
def small_subjects() -> dict:
    return {(modality, seed): simulate_subject(seed, modality, SMALL)
            for modality in ("CT", "MR") for seed in SEEDS}


@pytest.fixture(scope="module")
def tissue_means() -> dict:
    """Mean intensity of each tissue group's core (voxels whose 6 neighbours share the group, so the
    blur does not mix in the next tissue), for two subjects per modality at the default size."""
    cross = ndimage.generate_binary_structure(3, 1)
    means = {}
    for modality in ("CT", "MR"):
        for seed in (0, 1):
            subject = simulate_subject(seed, modality, 96)
            image, tissues = subject.image.array, subject.tissues.array
            means[modality, seed] = {
                name: float(image[ndimage.binary_erosion(np.isin(tissues, group), cross)].mean())
                for name, group in TISSUE_GROUPS.items()
            }
            means[modality, seed]["image"] = image
            means[modality, seed]["tissues"] = tissues
    return means


def structure_volumes_ml(label) -> dict[int, float]:
    voxel_ml = float(np.prod(label.spacing)) / 1000.0
    return {value: float((label.array == value).sum()) * voxel_ml for value in (MYOCARDIUM, LA, LV, AORTA)}


def test_labels_are_the_four_mmwhs_structures_with_distinct_colours():
    assert [spec.value for spec in LABELS] == [MYOCARDIUM, LA, LV, AORTA]
    colours = [tuple(spec.color) for spec in LABELS]
    assert len(set(colours)) == 4
    assert all(len(colour) == 3 and all(0.0 <= c <= 1.0 for c in colour) for colour in colours)
    assert len({spec.name for spec in LABELS}) == 4


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_same_seed_gives_identical_subject_and_another_seed_differs(modality):
    image, label = make_subject(7, modality, 32)
    image_again, label_again = make_subject(7, modality, 32)
    np.testing.assert_array_equal(image.array, image_again.array)
    np.testing.assert_array_equal(label.array, label_again.array)
    assert image.same_geometry(image_again)
    other_image, other_label = make_subject(8, modality, 32)
    assert other_image.shape != image.shape or not np.array_equal(other_image.array, image.array)
    assert other_label.shape != label.shape or not np.array_equal(other_label.array, label.array)


def test_outputs_have_the_promised_types(small_subjects):
    image, label = make_subject(0, "CT", SMALL)
    assert image.array.dtype == np.float32 and label.array.dtype == np.uint16
    assert set(np.unique(label.array)) == {0, MYOCARDIUM, LA, LV, AORTA}
    np.testing.assert_array_equal(image.array, small_subjects["CT", 0].image.array)


def test_every_subject_has_all_four_structures_with_plausible_volumes(small_subjects):
    plausible_ml = {MYOCARDIUM: (50, 300), LA: (15, 150), LV: (40, 250), AORTA: (10, 120)}
    for (modality, seed), subject in small_subjects.items():
        for value, volume_ml in structure_volumes_ml(subject.label).items():
            low, high = plausible_ml[value]
            assert low < volume_ml < high, f"{modality} seed {seed}: label {value} is {volume_ml:.0f} ml"


def test_anatomy_comes_from_the_seed_and_not_the_modality(small_subjects):
    # same seed, different grids: the same chest, so every structure keeps its volume
    for seed in SEEDS:
        ct = structure_volumes_ml(small_subjects["CT", seed].label)
        mr = structure_volumes_ml(small_subjects["MR", seed].label)
        for value in ct:
            assert mr[value] == pytest.approx(ct[value], rel=0.2), f"seed {seed} label {value}"
    volumes = [structure_volumes_ml(small_subjects["CT", seed].label)[LV] for seed in SEEDS]
    assert max(volumes) > 1.15 * min(volumes)  # sizes vary between subjects


def test_grids_cover_the_chest_with_modality_specific_spacing(small_subjects):
    slice_mm = {"CT": [], "MR": []}
    for (modality, seed), subject in small_subjects.items():
        image, label, tissues = subject.image, subject.label, subject.tissues
        assert image.same_geometry(label) and image.same_geometry(tissues)
        nz, ny, nx = image.shape
        assert (ny, nx) == (SMALL, SMALL) and 0.5 * SMALL <= nz <= 0.85 * SMALL
        assert 300.0 < SMALL * image.spacing[0] < 500.0  # in-plane field of view, mm
        direction = image.direction
        np.testing.assert_allclose(direction.T @ direction, np.eye(3), atol=1e-9)
        assert np.linalg.det(direction) == pytest.approx(1.0)
        middle = tissues.array[nz // 2]
        border = np.concatenate([middle[0], middle[-1], middle[:, 0], middle[:, -1]])
        assert np.all(border == Tissue.AIR), f"{modality} seed {seed}: the body leaves the field of view"
        slice_mm[modality].append(image.spacing[2])
        ct_spacing = small_subjects["CT", seed].image.spacing
        assert modality == "CT" or not np.allclose(image.spacing, ct_spacing)
    assert np.mean(slice_mm["MR"]) > 1.2 * np.mean(slice_mm["CT"])  # MR: thicker slices


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_some_stacks_are_oblique_and_some_are_not(small_subjects, modality):
    oblique = [not np.allclose(small_subjects[modality, seed].image.direction, np.eye(3)) for seed in SEEDS]
    assert any(oblique) and not all(oblique)
    for seed in SEEDS:
        trace = np.trace(small_subjects[modality, seed].image.direction)
        tilt = np.degrees(np.arccos(np.clip((trace - 1) / 2, -1, 1)))  # rotation angle of the stack
        assert tilt < 16.0  # a small oblique rotation, not a reorientation


def test_ct_tissues_lie_in_their_hounsfield_ranges(tissue_means):
    for seed in (0, 1):
        ct = tissue_means["CT", seed]
        assert ct["air"] == pytest.approx(-1000, abs=15)
        assert -900 < ct["lung"] < -650
        assert -150 < ct["fat"] < -60
        assert 20 < ct["muscle"] < 80 and 20 < ct["myocardium"] < 90
        assert 240 < ct["blood"] < 420
        assert 400 < ct["bone"] < 1000
        assert ct["bone"] > ct["blood"] > ct["myocardium"] > ct["fat"] > ct["lung"] > ct["air"]


def test_mr_reorders_the_tissues_so_the_mapping_is_not_monotonic(tissue_means):
    for seed in (0, 1):
        mr = tissue_means["MR", seed]
        assert mr["blood"] > mr["fat"] > mr["myocardium"] > mr["bone"]
        assert mr["fat"] > 1.5 * mr["muscle"]
        assert mr["bone"] < 0.2 * mr["blood"] and mr["lung"] < 0.2 * mr["blood"]
        assert mr["air"] < 50
        assert 0 <= mr["image"].min() and np.percentile(mr["image"], 99.9) < 1300
        # fat falls below myocardium in CT but rises above it in MR; bone tops CT and is dark in MR
        ct = tissue_means["CT", seed]
        assert (ct["fat"] < ct["myocardium"]) and (mr["fat"] > mr["myocardium"])
        assert (ct["bone"] > ct["blood"] > ct["fat"]) and (mr["bone"] < mr["fat"] < mr["blood"])


def test_right_heart_contrast_varies_with_timing_in_ct_only():
    ratios = {}
    for modality in ("CT", "MR"):
        ratios[modality] = []
        for seed in range(4):
            subject = simulate_subject(seed, modality, 64)
            image, tissues = subject.image.array, subject.tissues.array
            left = image[ndimage.binary_erosion(tissues == Tissue.BLOOD_LEFT)].mean()
            right = image[ndimage.binary_erosion(tissues == Tissue.BLOOD_RIGHT)].mean()
            ratios[modality].append(right / left)
    assert min(ratios["CT"]) < 0.8 and max(ratios["CT"]) < 1.1
    assert min(ratios["MR"]) > 0.8


def quantile_match(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Global histogram matching: send each source value to the reference value of the same quantile."""
    quantiles = np.linspace(0.0, 1.0, 1001)
    return np.interp(source, np.quantile(source, quantiles), np.quantile(reference, quantiles))


def test_global_histogram_matching_does_not_align_the_tissues(tissue_means):
    ct, mr = tissue_means["CT", 0], tissue_means["MR", 1]  # different anatomies, as in the unpaired sets
    matched = quantile_match(ct["image"], mr["image"])
    cross = ndimage.generate_binary_structure(3, 1)

    def matched_mean(name: str) -> float:
        core = ndimage.binary_erosion(np.isin(ct["tissues"], TISSUE_GROUPS[name]), cross)
        return float(matched[core].mean())

    # bone, the brightest CT tissue, lands among MR's brightest values while MR bone is dark
    assert matched_mean("bone") > 3 * mr["bone"]
    assert matched_mean("bone") > mr["fat"]
    # fat stays below myocardium after matching, the reverse of MR
    assert matched_mean("fat") < matched_mean("myocardium")
    assert mr["fat"] > mr["myocardium"]


def test_write_phantom_layout_round_trip_and_unpaired_seeds(tmp_path):
    out = write_phantom(tmp_path / "phantom", subjects=2, seed=3, size=24)
    assert out == tmp_path / "phantom"
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nii.gz"))
    assert written == [f"{m}/{kind}/{m.lower()}_{i:03d}.nii.gz"
                       for m in ("CT", "MR") for kind in ("images", "labels") for i in range(2)]
    for modality in ("CT", "MR"):
        for index in range(2):
            image, label = make_subject(subject_seed(3, modality, index), modality, 24)
            for kind, expected in (("images", image), ("labels", label)):
                read = sitk.ReadImage(str(out / modality / kind / f"{modality.lower()}_{index:03d}.nii.gz"))
                np.testing.assert_array_equal(sitk.GetArrayFromImage(read), expected.array)
                np.testing.assert_allclose(read.GetSpacing(), expected.spacing, rtol=1e-5)
                np.testing.assert_allclose(read.GetOrigin(), expected.origin, atol=1e-3)
                np.testing.assert_allclose(np.reshape(read.GetDirection(), (3, 3)), expected.direction,
                                           atol=1e-5)
    seeds = {subject_seed(3, modality, index) for modality in ("CT", "MR") for index in range(10)}
    assert len(seeds) == 20  # no CT subject shares its anatomy with an MR subject
    again = write_phantom(tmp_path / "again", subjects=2, seed=3, size=24)
    for path in written:
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out / path))),
                                      sitk.GetArrayFromImage(sitk.ReadImage(str(again / path))))


def test_rasterized_ellipsoid_matches_its_analytic_volume_on_an_oblique_grid():
    # a 30 x 20 x 25 mm ellipsoid (62.8 ml) on a tilted 2 x 2 x 3 mm grid
    direction = rotation((1.0, 2.0, 0.5), 12.0)
    grid = VoxelGrid((40, 60, 60), (2.0, 2.0, 3.0), (-60.0, -60.0, -60.0), direction)
    center = np.array([5.0, 3.0, 0.0])
    shape = Ellipsoid(center, rotation((0.0, 0.0, 1.0), 30.0), (30.0, 20.0, 25.0))
    tissue, label = rasterize(Anatomy((Paint(shape, Tissue.FAT, 7),), np.zeros(3), (300.0, 200.0)), grid)
    volume_ml = (label == 7).sum() * 2.0 * 2.0 * 3.0 / 1000.0
    assert volume_ml == pytest.approx(4 / 3 * np.pi * 30 * 20 * 25 / 1000.0, rel=0.03)
    np.testing.assert_array_equal(tissue == Tissue.FAT, label == 7)
    # the painted voxels' world centroid is the ellipsoid centre
    k, j, i = np.nonzero(label)
    world = np.asarray(grid.origin)[:, None] + direction @ (np.diag(grid.spacing) @ np.vstack([i, j, k]))
    np.testing.assert_allclose(world.mean(axis=1), center, atol=0.3)


@pytest.mark.parametrize("call, message", [
    (lambda: make_subject(0, "PET"), "modality"),
    (lambda: make_subject(-1, "CT"), "seed"),
    (lambda: make_subject(0, "CT", size=8), "size"),
    (lambda: write_phantom("unused", subjects=0, seed=0), "subject"),
])
def test_invalid_requests_raise_clear_errors(call, message):
    with pytest.raises(PhantomError, match=message):
        call()
    assert issubclass(PhantomError, ValueError)
