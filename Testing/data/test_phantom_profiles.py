"""The phantom's profiles: the default renders exactly what it always rendered; "transfer" varies each factor
over its stated range, measured on the rendered volumes (not read back from the drawn numbers)."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy import ndimage

from sasan.config import ConfigError, config_from_dict
from sasan.data.phantom import PhantomError, PhantomSubject, simulate_subject, subject_seed
from sasan.data.phantom_anatomy import LV_LABEL, Tissue
from sasan.data.phantom_profiles import DEFAULT, TRANSFER, phantom_profile

SIZE = 96
SEEDS = range(12)
CROSS = ndimage.generate_binary_structure(3, 1)
RESTING_LONG_AXIS = np.array([0.55, -0.45, -0.60]) / np.linalg.norm([0.55, -0.45, -0.60])

# sha256 of image, label and tissue arrays and the geometry, rendered by the phantom before profiles existed
# (commit a301c92). Every computation on the way is IEEE float32/float64 arithmetic, scipy's Gaussian filter
# and numpy's float32 exp (identical on x86-64 CPUs with AVX2 or AVX-512).
DEFAULT_CHECKSUMS = {
    (0, "CT", 48): "680f7f1bd6bcbd8051091053cf4147b65e2d0466d0559e3be97089ad6944513f",
    (0, "MR", 48): "d6d5b62ac46d54adfeb8e86802ab95f41abbad208686488dacfc203dc2f58e27",
    (5, "CT", 48): "52a37b452c95d2cc1a9d94066dc93aaea92582e2e1282fd35c7db197e672dd01",
    (5, "MR", 48): "1268fed9e5d220b8fadfca5597a4acaf76eaba23b9b6c958b111c6ee87139ece",
    (subject_seed(3, "CT", 0), "CT", 96): "d1fa39f4b9205ad655edf5a1dfae2f804bcfa2946eac9bedb6299315d0759b93",
    (subject_seed(3, "MR", 0), "MR", 96): "8f69ea1e276195ce38a424dda598d6393dcdba630c785c0c5bed33105d568564",
}


def checksum(subject: PhantomSubject) -> str:
    digest = hashlib.sha256()
    for volume in (subject.image, subject.label, subject.tissues):
        digest.update(np.ascontiguousarray(volume.array).tobytes())
        digest.update(np.asarray(volume.shape, np.int64).tobytes())
        for part in (volume.spacing, volume.origin, volume.direction):
            digest.update(np.asarray(part, np.float64).tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("case", list(DEFAULT_CHECKSUMS), ids=lambda case: f"{case[1]}-{case[2]}-seed{case[0]}")
def test_the_default_profile_renders_bit_for_bit_what_the_phantom_always_rendered(case):
    seed, modality, size = case
    assert checksum(simulate_subject(seed, modality, size)) == DEFAULT_CHECKSUMS[case]
    assert checksum(simulate_subject(seed, modality, size, "default")) == DEFAULT_CHECKSUMS[case]


def test_profiles_are_named_and_an_unknown_name_is_refused_with_the_known_ones():
    assert phantom_profile("transfer") is TRANSFER and phantom_profile(DEFAULT) is DEFAULT
    with pytest.raises(PhantomError, match="unknown phantom profile 'wild'; expected one of default, transfer"):
        simulate_subject(0, "CT", 32, "wild")
    labels = [{"name": "LV blood", "value": LV_LABEL}]
    chosen = config_from_dict({"data": {"phantom_profile": "transfer", "labels": labels}})
    assert chosen.data.phantom_profile == "transfer"
    assert config_from_dict({"data": {"labels": labels}}).data.phantom_profile == "default"
    with pytest.raises(ConfigError, match="data.phantom_profile"):
        config_from_dict({"data": {"phantom_profile": "wild", "labels": labels}})


@pytest.fixture(scope="module")
def rendered() -> dict:
    """(profile, modality) -> the subjects of ``SEEDS`` at ``SIZE``."""
    return {(profile, modality): [simulate_subject(seed, modality, SIZE, profile) for seed in SEEDS]
            for profile in ("default", "transfer") for modality in ("CT", "MR")}


def core(mask: np.ndarray, depth: int) -> np.ndarray:
    """The voxels of ``mask`` at least ``depth`` voxels from its edge (blur barely mixes other tissue in)."""
    return ndimage.binary_erosion(mask, CROSS, iterations=depth)


def lv_slice(subject: PhantomSubject) -> int:
    return int(np.median(np.nonzero(subject.label.array == LV_LABEL)[0]))


def blood_pool(subject: PhantomSubject) -> float:
    """Mean intensity of the LV blood's core."""
    return float(subject.image.array[core(subject.label.array == LV_LABEL, 2)].mean())


def right_heart_pool(subject: PhantomSubject) -> float:
    """Median intensity of the right-heart blood's core (RV, RA, pulmonary trunk)."""
    return float(np.median(subject.image.array[core(subject.tissues.array == Tissue.BLOOD_RIGHT, 2)]))


def air_noise(subject: PhantomSubject, modality: str) -> float:
    """Noise sigma measured in the air around the body (MR: Rician in air is Rayleigh, std 0.655 sigma)."""
    spread = float(subject.image.array[core(subject.tissues.array == Tissue.AIR, 5)].std())
    return spread / np.sqrt(2 - np.pi / 2) if modality == "MR" else spread


def fitted_blur(subject: PhantomSubject) -> float:
    """The Gaussian sigma (in-plane voxels; 0.7 of it through-plane) that best turns the piecewise-constant
    image of the tissue map (each tissue at its core's median) into the rendered CT, around the heart."""
    k = lv_slice(subject)
    box = np.s_[max(k - 12, 0):k + 12, 24:72, 24:72]
    image, tissue = subject.image.array[box], subject.tissues.array[box]
    values = np.zeros(len(Tissue), np.float32)
    for value in np.unique(tissue):
        inside = tissue == value
        inner = core(inside, 2)
        values[value] = np.median(image[inner if inner.sum() > 20 else inside])
    ideal = values[tissue]
    sigmas = np.arange(0.2, 2.01, 0.1)
    errors = [np.mean((image - ndimage.gaussian_filter(ideal, (0.7 * s, s, s), mode="nearest")) ** 2) for s in sigmas]
    return float(sigmas[int(np.argmin(errors))])


def body_depth_mm(subject: PhantomSubject) -> float:
    """Antero-posterior extent of the body in the slice through the LV centre."""
    rows = np.nonzero((subject.tissues.array[lv_slice(subject)] != Tissue.AIR).any(axis=1))[0]
    return float((rows.max() - rows.min() + 1) * subject.image.spacing[1])


def body_offset_mm(subject: PhantomSubject) -> float:
    """Distance of the body's centroid from the centre of the slice through the LV centre."""
    body = subject.tissues.array[lv_slice(subject)] != Tissue.AIR
    centre = np.array(ndimage.center_of_mass(body)) - (np.array(body.shape) - 1) / 2
    return float(np.hypot(*centre) * subject.image.spacing[0])


def body_cut_by_field_of_view(subject: PhantomSubject) -> bool:
    body = subject.tissues.array[lv_slice(subject)] != Tissue.AIR
    return bool(np.concatenate([body[0], body[-1], body[:, 0], body[:, -1]]).any())


def heart_tilt_degrees(subject: PhantomSubject) -> float:
    """Angle between the LV blood's principal axis (world mm) and the resting long axis."""
    k, j, i = np.nonzero(subject.label.array == LV_LABEL)
    matrix = subject.label.index_to_world()
    points = (matrix[:3, :3] @ np.vstack([i, j, k])).T
    axis = np.linalg.svd(points - points.mean(axis=0), full_matrices=False)[2][0]
    return float(np.degrees(np.arccos(min(1.0, abs(axis @ RESTING_LONG_AXIS)))))


def tissue_ml(subject: PhantomSubject, tissue: Tissue) -> float:
    return float((subject.tissues.array == tissue).sum() * np.prod(subject.image.spacing) / 1000.0)


def spread(rendered: dict, profile: str, modality: str, measure) -> np.ndarray:
    return np.array([measure(subject) for subject in rendered[profile, modality]])


def test_contrast_timing_spans_blood_pools_of_150_to_500_hu(rendered):
    transfer, default = spread(rendered, "transfer", "CT", blood_pool), spread(rendered, "default", "CT", blood_pool)
    low, high = TRANSFER.ct.left_blood_hu
    assert (low, high) == (150.0, 500.0)
    quarter = (high - low) / 4  # twelve subjects reach into both outer quarters of the range
    assert transfer.min() < low + quarter and transfer.max() > high - quarter, transfer
    assert transfer.min() > low - 40 and transfer.max() < high + 20, transfer  # blur pulls a pool down, never up
    assert default.min() > 240 and default.max() < 410, default
    assert np.ptp(transfer) > 2 * np.ptp(default)


def test_the_right_heart_is_there_unlabelled_and_from_darker_to_brighter_than_the_left(rendered):
    for (profile, modality), subjects in rendered.items():
        for subject in subjects:
            right = subject.tissues.array == Tissue.BLOOD_RIGHT
            assert tissue_ml(subject, Tissue.BLOOD_RIGHT) > 50, f"{profile} {modality}: no right heart"
            assert not subject.label.array[right].any(), f"{profile} {modality}: the right heart carries a label"
            # the pulmonary trunk and its branches rise above the LV centre
            k = np.nonzero(right)[0]
            assert k.max() > lv_slice(subject) + 30 / subject.image.spacing[2]
    ratios = spread(rendered, "transfer", "CT", right_heart_pool) / spread(rendered, "transfer", "CT", blood_pool)
    assert ratios.min() < 0.6 and ratios.max() > 1.1, ratios
    default = spread(rendered, "default", "CT", right_heart_pool) / spread(rendered, "default", "CT", blood_pool)
    assert default.max() < 1.05, default


@pytest.mark.parametrize("modality, low, high", [("CT", 12.0, 45.0), ("MR", 9.0, 30.0)])
def test_noise_varies_over_its_range(rendered, modality, low, high):
    measured = spread(rendered, "transfer", modality, lambda subject: air_noise(subject, modality))
    drawn = np.array([subject.parameters["noise"] for subject in rendered["transfer", modality]])
    np.testing.assert_allclose(measured, drawn, rtol=0.1)
    stated = TRANSFER.ct.noise_hu if modality == "CT" else TRANSFER.mr.noise
    assert stated[0] <= measured.min() < low and high < measured.max() <= stated[1] * 1.1, measured


def test_reconstruction_blur_varies_and_the_fit_follows_the_drawn_sigma(rendered):
    measured = spread(rendered, "transfer", "CT", fitted_blur)
    drawn = np.array([subject.parameters["blur_voxels"] for subject in rendered["transfer", "CT"]])
    assert measured.min() <= 0.5 and measured.max() >= 1.0, measured
    assert np.corrcoef(measured, drawn)[0, 1] > 0.8
    assert spread(rendered, "default", "CT", fitted_blur).max() <= 0.8


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_slice_thickness_and_field_of_view_vary(rendered, modality):
    subjects = rendered["transfer", modality]
    thickness = np.array([subject.image.spacing[2] for subject in subjects])
    stated = TRANSFER.acquisition(modality).slice_mm
    assert stated[0] <= thickness.min() < stated[0] + 1.0 and stated[1] - 1.5 < thickness.max() <= stated[1]
    field_of_view = np.array([SIZE * subject.image.spacing[0] for subject in subjects])
    assert field_of_view.max() > 1.6 * field_of_view.min()
    cut = [body_cut_by_field_of_view(subject) for subject in subjects]
    assert any(cut) and not all(cut)  # sometimes the body is cut at the sides, as in a cropped real CT
    assert not any(body_cut_by_field_of_view(subject) for subject in rendered["default", modality])


def test_body_size_and_position_vary_more_than_in_the_default_phantom(rendered):
    depth = {profile: spread(rendered, profile, "CT", body_depth_mm) for profile in ("default", "transfer")}
    assert depth["transfer"].max() > 1.45 * depth["transfer"].min()
    assert np.ptp(depth["transfer"]) > 1.5 * np.ptp(depth["default"])
    offset = {profile: spread(rendered, profile, "CT", body_offset_mm) for profile in ("default", "transfer")}
    assert offset["default"].max() < 16 and offset["transfer"].max() > 28, offset


def test_heart_orientation_varies_from_upright_to_35_degrees(rendered):
    tilt = spread(rendered, "transfer", "CT", heart_tilt_degrees)
    assert tilt.min() < 8 and tilt.max() > 25 and tilt.max() < 40, tilt
    assert spread(rendered, "default", "CT", heart_tilt_degrees).max() < 22


def test_every_subject_has_lungs_with_vessels_ribs_and_spine_and_the_vessels_vary(rendered):
    for (profile, modality), subjects in rendered.items():
        for subject in subjects:
            for tissue in (Tissue.LUNG, Tissue.LUNG_VESSEL, Tissue.BONE, Tissue.MARROW):
                assert tissue_ml(subject, tissue) > 1, f"{profile} {modality}: no {tissue.name}"
    vessels = spread(rendered, "transfer", "CT", lambda subject: tissue_ml(subject, Tissue.LUNG_VESSEL))
    assert vessels.max() > 2.5 * vessels.min()


def test_the_mr_blood_pool_varies_more_than_in_the_default_phantom(rendered):
    blood = spread(rendered, "transfer", "MR", blood_pool)
    assert np.ptp(blood) > 1.5 * np.ptp(spread(rendered, "default", "MR", blood_pool))
