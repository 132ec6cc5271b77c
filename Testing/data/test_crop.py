"""In-plane crops: which region each setting keeps, that a crop stays where it was in world space
(checked against SimpleITK's own region extraction on an oblique, anisotropic grid), pasting back,
and the clear refusals of bad settings."""
import logging

import numpy as np
import pytest
import SimpleITK as sitk

from sasan.config import (
    ConfigError,
    CropConfig,
    CropError,
    LabelSpec,
    NormalizationConfig,
    config_from_dict,
    crop_from_dict,
    crop_to_dict,
)
from sasan.data.crop import CropRegion, crop_region, crop_volume, paste
from sasan.data.domains import prepare_volume
from sasan.data.io import write_volume
from sasan.data.layouts import Subject
from sasan.data.volume import Volume

OBLIQUE = (np.array([[0.96, -0.28, 0.0], [0.28, 0.96, 0.0], [0.0, 0.0, 1.0]])
           @ np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]]))


def block_volume() -> Volume:
    """z 6, y 20, x 30, spacing (x 0.5, y 2.0, z 3.0) mm, oblique; a bright block at y 8..11, x 10..19."""
    array = np.full((6, 20, 30), -1000.0, np.float32)
    array[1:5, 8:12, 10:20] = 40.0
    return Volume(array, spacing=(0.5, 2.0, 3.0), origin=(10.0, -20.0, 5.5), direction=np.eye(3))


def test_foreground_crop_is_the_bounding_box_grown_by_the_margin_in_millimetres():
    volume = block_volume()
    region = crop_region(volume, CropConfig(method="foreground", margin_mm=4.0), axis=0)
    # 4 mm is 2 rows at 2.0 mm and 8 columns at 0.5 mm; the slicing axis (z) is never cropped.
    assert region.start == (0, 6, 2) and region.stop == (6, 14, 28)


def test_foreground_threshold_defaults_to_otsu_and_ignores_isolated_noise_voxels():
    rng = np.random.default_rng(3)
    array = rng.normal(0.0, 5.0, (5, 24, 24)).astype(np.float32)  # "air" with noise
    array[:, 4:20, 6:18] = 100.0                                  # the body
    array[:, 9:13, 10:14] = 300.0                                 # a bright organ inside it
    array[2, 1, 22] = array[3, 22, 1] = 500.0                     # isolated noise voxels outside
    volume = Volume(array)
    default = crop_region(volume, CropConfig(method="foreground", margin_mm=1.0), axis=0)
    assert default.start == (0, 3, 5) and default.stop == (5, 21, 19)
    organ = crop_region(volume, CropConfig(method="foreground", margin_mm=0.0, threshold=200.0), axis=0)
    assert organ.start == (0, 9, 10) and organ.stop == (5, 13, 14)


def test_foreground_crop_of_a_constant_volume_keeps_everything_and_says_so(caplog):
    volume = Volume(np.zeros((3, 8, 9), np.float32))
    with caplog.at_level(logging.WARNING, logger="sasan.data.crop"):
        region = crop_region(volume, CropConfig(method="foreground"), axis=0)
    assert region.is_whole and "whole volume" in caplog.text


def test_box_crop_takes_fractions_of_the_in_plane_axes_whatever_the_slicing_axis():
    volume = Volume(np.zeros((10, 20, 40), np.float32))
    region = crop_region(volume, CropConfig(method="box", rows=[0.25, 0.75], columns=[0.1, 0.6]), axis=1)
    # Sliced along j: the slices' rows are k (10) and their columns i (40).
    assert region.start == (2, 0, 4) and region.stop == (8, 20, 24)
    assert crop_region(volume, CropConfig(), axis=1).is_whole


def test_a_crop_lies_where_simpleitk_puts_the_same_region_in_world_space():
    array = np.random.default_rng(0).normal(size=(7, 11, 13)).astype(np.float32)
    volume = Volume(array, spacing=(0.7, 1.9, 3.1), origin=(-4.0, 12.5, 30.0), direction=OBLIQUE)
    region = CropRegion((0, 2, 3), (7, 9, 12), volume.shape)
    cropped = crop_volume(volume, region)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(volume.spacing), image.SetOrigin(volume.origin), image.SetDirection(OBLIQUE.ravel().tolist())
    expected = sitk.RegionOfInterest(image, [9, 7, 7], [3, 2, 0])  # size and index in (x, y, z)
    np.testing.assert_allclose(cropped.origin, expected.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(cropped.direction.ravel(), expected.GetDirection(), atol=1e-12)
    assert cropped.spacing == volume.spacing
    np.testing.assert_array_equal(cropped.array, sitk.GetArrayFromImage(expected))


def test_paste_puts_the_crop_back_and_fills_the_rest():
    volume = block_volume()
    region = crop_region(volume, CropConfig(method="foreground", margin_mm=2.0), axis=0)
    back = paste(region, crop_volume(volume, region).array, fill=-7.0)
    inside = np.zeros(volume.shape, bool)
    inside[region.slices] = True
    np.testing.assert_array_equal(back[inside], volume.array[inside])
    assert np.all(back[~inside] == -7.0) and back.dtype == volume.array.dtype
    with pytest.raises(CropError, match=r"cannot paste \(2, 2, 2\)"):
        paste(region, np.zeros((2, 2, 2), np.float32), 0.0)


def test_prepare_volume_crops_image_and_labels_alike(tmp_path):
    volume = block_volume()
    labels = (volume.array > 0).astype(np.uint8) * 5
    write_volume(volume, tmp_path / "image.nii.gz")
    write_volume(volume.with_array(labels), tmp_path / "label.nii.gz")
    subject = Subject("s", tmp_path / "image.nii.gz", tmp_path / "label.nii.gz", "CT")
    prepared = prepare_volume(subject, NormalizationConfig(method="window", window=[-1000.0, 100.0]),
                              [LabelSpec("block", 5)], "axial", CropConfig(method="foreground", margin_mm=2.0))
    assert prepared.stack.shape == (6, 6, 18) and prepared.labels.shape == (6, 6, 18)
    assert prepared.labels.sum() == 4 * 4 * 10  # the whole block, as class 1
    np.testing.assert_array_equal(prepared.labels == 1, prepared.stack > 0)


def test_card_description_round_trips_and_bad_ones_are_named():
    crop = CropConfig(method="foreground", threshold=-300.0, margin_mm=15.0)
    assert crop_from_dict(crop_to_dict(crop)) == crop
    with pytest.raises(CropError, match="crop.margin_mm"):
        crop_from_dict({"method": "foreground", "margin_mm": -1.0})
    with pytest.raises(CropError, match="crop.method"):
        crop_from_dict({"method": "circle"})


@pytest.mark.parametrize("crop, message", [
    ({"method": "box", "rows": [0.5, 0.5]}, r"data.source.crop.rows: expected \[start, end\]"),
    ({"method": "box", "columns": [0.2, 1.5]}, "data.source.crop.columns"),
    ({"method": "foreground", "margin_mm": -2.0}, "data.source.crop.margin_mm"),
    ({"method": "lungs"}, "data.source.crop.method"),
])
def test_bad_crop_settings_are_refused_by_the_configuration(crop, message):
    mapping = {"data": {"source": {"modality": "CT", "labelled": False, "crop": crop},
                        "target": {"modality": "MR", "labelled": True},
                        "labels": [{"name": "heart", "value": 1}]}}
    with pytest.raises(ConfigError, match=message):
        config_from_dict(mapping)


@pytest.mark.parametrize("source, target", [
    ({"method": "foreground"}, {"method": "foreground"}),
    ({"method": "box", "rows": [0.1, 0.9]}, {"method": "none"}),
])
def test_the_paired_set_up_refuses_crops_that_would_misalign_a_pair(source, target):
    mapping = {"data": {"source": {"modality": "CT", "crop": source}, "target": {"modality": "MR", "crop": target},
                        "labels": [{"name": "heart", "value": 1}]},
               "training": {"setup": "paired"}}
    with pytest.raises(ConfigError, match="paired set-up needs the same crop"):
        config_from_dict(mapping)
    same = {"method": "box", "rows": [0.1, 0.9]}
    mapping["data"]["source"]["crop"] = mapping["data"]["target"]["crop"] = same
    assert config_from_dict(mapping).data.source.crop.rows == [0.1, 0.9]
