"""Metrics against hand-worked values on tiny volumes."""
import math

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice

from sasan.metrics import (
    ASSD_CAP_MM,
    MetricInputError,
    assd,
    dice,
    image_scores,
    mae,
    pcc,
    psnr,
    rmse,
    segmentation_scores,
    ssim,
)

SPACING_XYZ = (0.5, 0.7, 2.0)


def _cube(offset_zyx=(0, 0, 0), shape=(10, 9, 9), side=4):
    """A side^3 cube starting at voxel (2, 2, 2) + offset in a (z, y, x) array."""
    mask = np.zeros(shape, dtype=bool)
    z, y, x = (2 + o for o in offset_zyx)
    mask[z : z + side, y : y + side, x : x + side] = True
    return mask


def test_dice_of_a_cube_shifted_by_one_voxel():
    # 4x4x4 cubes overlapping in 3 of 4 layers: 2 * 48 / (64 + 64) = 0.75.
    pred, truth = _cube(), _cube((1, 0, 0))
    assert dice(pred, truth) == pytest.approx(0.75)
    monai_value = compute_dice(
        torch.from_numpy(pred)[None, None], torch.from_numpy(truth)[None, None], include_background=True
    )
    assert dice(pred, truth) == pytest.approx(float(monai_value))


def test_dice_of_empty_masks():
    empty = np.zeros((3, 3, 3), dtype=bool)
    assert dice(empty, empty) == 1.0
    assert dice(_cube(), np.zeros_like(_cube())) == 0.0


def test_assd_of_a_cube_shifted_along_z_in_millimetres():
    # Each cube has 56 surface voxels (64 minus the 2x2x2 core). Shifting by one slice along z:
    # the 16 voxels of the face left behind are one z step (2.0 mm) from the other cube's surface;
    # the 4 centre voxels of the face that slides into the other cube's ring layer are one x step
    # (0.5 mm) from that ring; every other surface voxel lies on the other surface.
    # Per direction 16 * 2.0 + 4 * 0.5 = 34 mm, the same both ways: ASSD = 68 / 112 mm.
    value = assd(_cube(), _cube((1, 0, 0)), SPACING_XYZ)
    assert value == pytest.approx(68.0 / 112.0, rel=1e-6)


def test_assd_reads_spacing_in_xyz_order():
    # The same shift along x moves faces by 0.5 mm: per direction 16 * 0.5 + 4 * 0.5 = 10 mm.
    value = assd(_cube(), _cube((0, 0, 1)), SPACING_XYZ)
    assert value == pytest.approx(20.0 / 112.0, rel=1e-6)


def test_assd_counts_voxels_on_the_array_border_as_surface():
    # A mask filling the array and the same minus its first slice: 56 and 44 surface voxels; only
    # the 16 of the removed slice (2.0 mm) and the 4 core voxels of the new bottom face (0.5 mm) are off.
    full = np.ones((4, 4, 4), dtype=bool)
    partial = full.copy()
    partial[0] = False
    assert assd(full, partial, SPACING_XYZ) == pytest.approx((16 * 2.0 + 4 * 0.5) / 100.0, rel=1e-6)


def test_assd_of_identical_and_missing_structures():
    cube, empty = _cube(), np.zeros_like(_cube())
    assert assd(cube, cube, SPACING_XYZ) == 0.0
    assert assd(empty, cube, SPACING_XYZ) == ASSD_CAP_MM == 50.0
    assert assd(cube, empty, SPACING_XYZ) == ASSD_CAP_MM
    assert assd(empty, empty, SPACING_XYZ) == 0.0


@pytest.mark.parametrize(
    "pred, truth, spacing",
    [
        (np.zeros((4, 4, 4), dtype=bool), np.zeros((4, 4, 5), dtype=bool), SPACING_XYZ),
        (np.zeros((4, 4, 4), dtype=np.uint8), np.zeros((4, 4, 4), dtype=bool), SPACING_XYZ),
        (np.zeros((4, 4, 4), dtype=bool), np.zeros((4, 4, 4), dtype=bool), (1.0, 1.0)),
        (np.zeros((4, 4, 4), dtype=bool), np.zeros((4, 4, 4), dtype=bool), (1.0, 0.0, 1.0)),
        (np.zeros((4, 4), dtype=bool), np.zeros((4, 4), dtype=bool), SPACING_XYZ),
    ],
)
def test_assd_rejects_inputs_that_do_not_fit(pred, truth, spacing):
    with pytest.raises(MetricInputError):
        assd(pred, truth, spacing)


def test_segmentation_scores_per_structure():
    truth = _cube().astype(np.int16) + 2 * _cube((0, 0, 0), side=1)  # label 2 inside the cube's corner
    truth[truth == 3] = 2
    pred = _cube((1, 0, 0)).astype(np.int16)  # structure 2 is missing from the prediction
    scores = segmentation_scores(pred, truth, ["liver", "spleen"], SPACING_XYZ)
    assert list(scores) == ["liver", "spleen"]
    # The true liver lost a corner voxel, in the slice the prediction misses, to the spleen: 2 * 48 / (64 + 63).
    assert scores["liver"]["dice"] == pytest.approx(96.0 / 127.0)
    assert scores["liver"]["assd"] == pytest.approx(assd(pred == 1, truth == 1, SPACING_XYZ))
    assert scores["spleen"] == {"dice": 0.0, "assd": ASSD_CAP_MM}


def test_segmentation_scores_rejects_unnamed_labels():
    labels = np.zeros((3, 3, 3), dtype=np.uint8)
    labels[1, 1, 1] = 3
    with pytest.raises(MetricInputError, match="2 classes"):
        segmentation_scores(labels, np.zeros_like(labels), ["a", "b"], SPACING_XYZ)
    with pytest.raises(MetricInputError, match="integer"):
        segmentation_scores(labels.astype(float), labels.astype(float), ["a", "b", "c"], SPACING_XYZ)


def _random_volume(shape=(2, 12, 13)):
    return np.random.default_rng(1).uniform(0.0, 1.0, size=shape)


def test_identical_images_score_perfectly():
    image = _random_volume()
    scores = image_scores(image, image.copy(), data_range=1.0)
    assert scores["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert scores["psnr"] == math.inf
    assert scores["mae"] == 0.0 and scores["rmse"] == 0.0
    assert scores["pcc"] == pytest.approx(1.0)


def test_constant_offset_gives_known_errors():
    truth = _random_volume()
    pred = truth + 0.1
    assert mae(pred, truth) == pytest.approx(0.1)
    assert rmse(pred, truth) == pytest.approx(0.1)
    assert psnr(pred, truth, data_range=1.0) == pytest.approx(20.0)  # 10 log10(1 / 0.01)
    assert pcc(pred, truth) == pytest.approx(1.0)


def test_pcc_of_linear_transforms_and_constants():
    truth = _random_volume()
    assert pcc(3.0 * truth - 7.0, truth) == pytest.approx(1.0)
    assert pcc(-2.0 * truth, truth) == pytest.approx(-1.0)
    assert math.isnan(pcc(np.full_like(truth, 4.0), truth))


def test_ssim_of_constant_slices_is_the_luminance_term():
    # With no variance SSIM reduces to (2 mu_a mu_b + C1) / (mu_a² + mu_b² + C1), C1 = (0.01 * range)².
    a, b = np.full((1, 11, 11), 0.2), np.full((1, 11, 11), 0.6)
    c1 = 0.01**2
    expected = (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)
    # MONAI works in float32: E[x²] - E[x]² leaves about 1e-8 of variance, i.e. ~1e-4 on the score.
    assert ssim(a, b, data_range=1.0) == pytest.approx(expected, abs=2e-4)
    assert ssim(a, b, data_range=255.0) == pytest.approx(1.0 - 0.16 / (0.4 + 255.0**2 * 1e-4), abs=2e-4)


def test_ssim_is_slice_wise_and_falls_with_noise():
    truth = _random_volume((3, 16, 16))
    noisy = truth.copy()
    noisy[1] += np.random.default_rng(2).normal(0.0, 0.3, size=noisy[1].shape)
    whole = ssim(noisy, truth, data_range=1.0)
    per_slice = [ssim(noisy[k : k + 1], truth[k : k + 1], data_range=1.0) for k in range(3)]
    assert per_slice[0] == pytest.approx(1.0, abs=1e-6) and per_slice[1] < 0.9
    assert whole == pytest.approx(np.mean(per_slice), rel=1e-6)


def test_mask_restricts_every_image_metric():
    truth = _random_volume((2, 16, 16))
    pred = truth.copy()
    pred[:, :, :3] += 5.0  # errors only outside the mask
    mask = np.zeros(truth.shape, dtype=bool)
    mask[:, :, 8:] = True
    scores = image_scores(pred, truth, data_range=1.0, mask=mask)
    assert scores["mae"] == 0.0 and scores["psnr"] == math.inf
    assert scores["ssim"] == pytest.approx(1.0, abs=1e-6)  # windows centred at x >= 8 never reach x < 3
    assert image_scores(pred, truth, data_range=1.0)["mae"] == pytest.approx(5.0 * 3 / 16)


def test_image_scores_default_range_is_the_reference_range():
    truth = np.linspace(10.0, 30.0, 2 * 12 * 12).reshape(2, 12, 12)
    pred = truth + 2.0
    assert image_scores(pred, truth)["psnr"] == pytest.approx(10 * math.log10(20.0**2 / 4.0))


def test_image_metrics_reject_inputs_that_do_not_fit():
    image = _random_volume((1, 12, 12))
    with pytest.raises(MetricInputError, match="shape"):
        mae(image, image[:, :11])
    with pytest.raises(MetricInputError, match="empty"):
        rmse(image, image, mask=np.zeros(image.shape, dtype=bool))
    with pytest.raises(MetricInputError, match="data_range"):
        psnr(image, image, data_range=0.0)
    corner = np.zeros(image.shape, dtype=bool)
    corner[0, 0, 0] = True
    with pytest.raises(MetricInputError, match="window centre"):
        ssim(image, image, data_range=1.0, mask=corner)
    with pytest.raises(MetricInputError, match="11x11"):
        ssim(image[:, :10], image[:, :10], data_range=1.0)
