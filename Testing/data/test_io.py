"""Reading and writing volumes: formats, geometry, refusals with clear messages, atomic writes."""
import locale
import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from sasan.config import LabelSpec
from sasan.data import io
from sasan.data.io import (
    GeometryMismatchError,
    VolumeReadError,
    check_finite,
    read_labels,
    read_volume,
    volume_to_image,
    write_volume,
)
from sasan.data.volume import Volume


def oblique_volume(dtype=np.float32) -> Volume:
    """A small volume with anisotropic spacing and a rotated, permuted direction matrix."""
    angle = np.radians(25.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    direction = rotation @ np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=float)
    array = (np.arange(4 * 5 * 6).reshape(4, 5, 6) * 3 - 20).astype(dtype)
    return Volume(array, spacing=(0.7, 1.3, 2.5), origin=(-12.5, 30.25, 7.0), direction=direction)


@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii", "v.nrrd", "v.mha"])
def test_round_trip_keeps_voxels_and_geometry(tmp_path, name):
    volume = oblique_volume()
    written = write_volume(volume, tmp_path / name)
    assert written == tmp_path / name
    back = read_volume(written)
    assert back.array.dtype == np.float32
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.same_geometry(volume)


def test_volume_to_image_puts_every_voxel_where_the_volume_says():
    volume = oblique_volume()
    image = volume_to_image(volume)
    assert image.GetSize() == volume.shape[::-1] and image.GetSpacing() == volume.spacing
    assert image.GetOrigin() == volume.origin
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), volume.direction)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(image), volume.array)
    to_world = volume.index_to_world()
    for index in [(0, 0, 0), (5, 0, 0), (0, 4, 0), (0, 0, 3), (5, 4, 3), (2, 1, 3)]:  # (i, j, k)
        np.testing.assert_allclose(image.TransformIndexToPhysicalPoint(index), (to_world @ (*index, 1))[:3])
    assert volume_to_image(volume.with_array(volume.array > 100)).GetPixelID() == sitk.sitkUInt8
    assert volume_to_image(volume.with_array(volume.array.astype(np.float16))).GetPixelID() == sitk.sitkFloat32


def test_integer_pixels_are_kept_when_dtype_is_none(tmp_path):
    volume = oblique_volume(np.int16)
    write_volume(volume, tmp_path / "labels.nrrd")
    assert read_volume(tmp_path / "labels.nrrd", dtype=None).array.dtype == np.int16
    assert read_volume(tmp_path / "labels.nrrd").array.dtype == np.float32


@pytest.mark.parametrize("name", ["v.mhd", "v.nhdr"])
def test_reads_detached_header_formats(tmp_path, name):
    volume = oblique_volume()
    image = sitk.GetImageFromArray(volume.array)
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(volume.direction.ravel().tolist())
    sitk.WriteImage(image, str(tmp_path / name))
    back = read_volume(tmp_path / name)
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.same_geometry(volume)


def write_dicom_series(folder: Path, array: np.ndarray, spacing, origin) -> None:
    folder.mkdir()
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    # GDCM's writer switches the process to the C locale (ASCII default text encoding), which broke later
    # tests reading or writing non-ASCII text in the same process: put the locale back afterwards.
    saved_locale = locale.setlocale(locale.LC_ALL)
    try:
        _write_dicom_planes(folder, image, array.shape[0], spacing, writer)
    finally:
        locale.setlocale(locale.LC_ALL, saved_locale)


def _write_dicom_planes(folder: Path, image, count: int, spacing, writer) -> None:
    for k in range(count):
        plane = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in [
            ("0008|0060", "CT"),
            ("0020|000d", "1.2.826.0.1.3680043.2.1125.1"),
            ("0020|000e", "1.2.826.0.1.3680043.2.1125.1.2"),
            ("0020|0032", "\\".join(f"{p:.4f}" for p in position)),
            ("0020|0037", "1\\0\\0\\0\\1\\0"),
            ("0020|0013", str(k + 1)),
            ("0018|0050", f"{spacing[2]:.4f}"),
        ]:
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(plane)


def test_reads_a_dicom_series_folder(tmp_path):
    array = (np.arange(3 * 4 * 5).reshape(3, 4, 5) * 7).astype(np.int16)
    write_dicom_series(tmp_path / "series", array, (0.8, 0.9, 2.0), (10.0, -5.0, 3.0))
    volume = read_volume(tmp_path / "series", dtype=None)
    np.testing.assert_array_equal(volume.array, array)
    np.testing.assert_allclose(volume.spacing, (0.8, 0.9, 2.0), atol=1e-4)
    np.testing.assert_allclose(volume.origin, (10.0, -5.0, 3.0), atol=1e-4)


def test_empty_folder_is_not_a_dicom_series(tmp_path):
    with pytest.raises(VolumeReadError, match="no DICOM series"):
        read_volume(tmp_path)


def test_refuses_missing_empty_and_non_image_files(tmp_path):
    with pytest.raises(VolumeReadError, match="no such file"):
        read_volume(tmp_path / "absent.nii.gz")
    (tmp_path / "zero.nii.gz").touch()
    with pytest.raises(VolumeReadError, match=r"zero\.nii\.gz: the file is empty"):
        read_volume(tmp_path / "zero.nii.gz")
    (tmp_path / "text.nii").write_text("not an image at all")
    with pytest.raises(VolumeReadError, match=r"text\.nii: not a readable image"):
        read_volume(tmp_path / "text.nii")
    (tmp_path / "picture.png").write_bytes(b"\x89PNG")
    with pytest.raises(VolumeReadError, match="unsupported file type"):
        read_volume(tmp_path / "picture.png")


@pytest.mark.parametrize("name", ["t.nii.gz", "t.nii", "t.nrrd", "t.mha"])
def test_refuses_truncated_files(tmp_path, name):
    noise = np.random.default_rng(0).random((10, 12, 14)).astype(np.float32)
    full = write_volume(Volume(noise), tmp_path / f"full_{name}")
    data = full.read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(VolumeReadError, match=name.replace(".", r"\.") + ".*truncated"):
        read_volume(tmp_path / name)


def test_refuses_2d_vector_and_4d_images(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5), np.float32)), str(tmp_path / "flat.nii.gz"))
    with pytest.raises(VolumeReadError, match=r"flat\.nii\.gz: a 2D image"):
        read_volume(tmp_path / "flat.nii.gz")
    rgb = sitk.GetImageFromArray(np.zeros((3, 4, 5, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.nrrd"))
    with pytest.raises(VolumeReadError, match="3 values per voxel"):
        read_volume(tmp_path / "rgb.nrrd")
    vectors = sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), np.float32))
    sitk.WriteImage(vectors, str(tmp_path / "vectors.nrrd"))
    with pytest.raises(VolumeReadError, match="5 values per voxel"):
        read_volume(tmp_path / "vectors.nrrd")
    frame = sitk.GetImageFromArray(np.zeros((2, 3, 4), np.float32))
    sitk.WriteImage(sitk.JoinSeries([frame, frame]), str(tmp_path / "time.nrrd"))
    with pytest.raises(VolumeReadError, match=r"time\.nrrd: a 4D image of size \(4, 3, 2, 2\)"):
        read_volume(tmp_path / "time.nrrd")


def test_refuses_an_absurd_header_before_allocating(tmp_path):
    # The data file does not even exist: only the header may be read.
    header = ("ObjectType = Image\nNDims = 3\nDimSize = 2048 2048 1024\nElementType = MET_FLOAT\n"
              "ElementDataFile = absent.raw\n")
    (tmp_path / "huge.mhd").write_text(header)
    with pytest.raises(VolumeReadError, match=r"huge\.mhd: the header declares 4294967296 voxels"):
        read_volume(tmp_path / "huge.mhd")


def test_non_finite_voxels_are_read_but_refused_by_check_finite(tmp_path):
    array = np.zeros((2, 3, 4), np.float32)
    array[1, 2, 3] = np.nan
    array[0, 0, 1] = np.inf
    write_volume(Volume(array), tmp_path / "nan.nrrd")  # (ITK's NIfTI reader turns NaN into 0)
    volume = read_volume(tmp_path / "nan.nrrd")
    assert np.isnan(volume.array[1, 2, 3])
    message = r"scan\.nii\.gz: 2 voxel\(s\) are NaN or infinite \(first at array index \(0, 0, 1\)\)"
    with pytest.raises(VolumeReadError, match=message):
        check_finite(volume, "scan.nii.gz")
    check_finite(Volume(np.zeros((2, 2, 2), np.float32)), "clean")


def test_write_refuses_existing_file_unless_overwrite(tmp_path):
    target = tmp_path / "out.nrrd"
    write_volume(Volume(np.zeros((2, 2, 2), np.float32)), target)
    with pytest.raises(FileExistsError, match="out.nrrd already exists"):
        write_volume(Volume(np.ones((2, 2, 2), np.float32)), target)
    write_volume(Volume(np.ones((2, 2, 2), np.float32)), target, overwrite=True)
    assert read_volume(target).array.sum() == 8
    assert [p.name for p in tmp_path.iterdir()] == ["out.nrrd"]


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "out.nii.gz"
    write_volume(Volume(np.zeros((2, 2, 2), np.float32)), target)

    def failing_write(image, name, useCompression=False):
        Path(name).write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(io.sitk, "WriteImage", failing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        write_volume(Volume(np.ones((2, 2, 2), np.float32)), target, overwrite=True)
    with pytest.raises(RuntimeError, match="disk full"):
        write_volume(Volume(np.ones((2, 2, 2), np.float32)), tmp_path / "new.nii.gz")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]
    assert read_volume(target).array.sum() == 0


def test_write_refuses_detached_formats(tmp_path):
    with pytest.raises(ValueError, match="cannot write this format"):
        write_volume(Volume(np.zeros((2, 2, 2))), tmp_path / "v.mhd")


def test_bool_arrays_are_written_as_uint8(tmp_path):
    mask = np.zeros((2, 3, 4), bool)
    mask[1, 1, 1] = True
    write_volume(Volume(mask), tmp_path / "mask.nii.gz")
    back = read_volume(tmp_path / "mask.nii.gz", dtype=None)
    assert back.array.dtype == np.uint8 and back.array.sum() == 1


HEART = [LabelSpec("myo", 205), LabelSpec("la", 420), LabelSpec("lv", 500)]


def test_read_labels_maps_values_to_class_indices(tmp_path, caplog):
    raw = np.array([0, 205, 420, 500, 999, 820, 205, 0] * 3, dtype=np.int16).reshape(2, 3, 4)
    reference = oblique_volume()
    reference = Volume(np.zeros((2, 3, 4), np.float32), reference.spacing, reference.origin, reference.direction)
    write_volume(reference.with_array(raw), tmp_path / "seg.nii.gz")
    with caplog.at_level(logging.WARNING):
        labels = read_labels(tmp_path / "seg.nii.gz", HEART, reference=reference)
    assert labels.array.dtype == np.uint8
    expected = np.array([0, 1, 2, 3, 0, 0, 1, 0] * 3).reshape(2, 3, 4)
    np.testing.assert_array_equal(labels.array, expected)
    assert labels.same_geometry(reference)
    warnings = [r.getMessage() for r in caplog.records if "became background" in r.getMessage()]
    assert len(warnings) == 1 and "820, 999" in warnings[0]


def test_read_labels_refuses_a_mismatched_grid(tmp_path):
    image = oblique_volume()
    write_volume(image.with_array(np.zeros(image.shape, np.uint16)), tmp_path / "same.nrrd")
    read_labels(tmp_path / "same.nrrd", HEART, reference=image)
    write_volume(Volume(np.zeros((4, 5, 7), np.uint16)), tmp_path / "shape.nrrd")
    with pytest.raises(GeometryMismatchError, match=r"label array shape \(4, 5, 7\).*\(4, 5, 6\)"):
        read_labels(tmp_path / "shape.nrrd", HEART, reference=image)
    moved = Volume(np.zeros(image.shape, np.uint16), image.spacing, (0.0, 0.0, 0.0), image.direction)
    write_volume(moved, tmp_path / "moved.nrrd")
    with pytest.raises(GeometryMismatchError, match=r"moved\.nrrd: the label grid does not match.*origin"):
        read_labels(tmp_path / "moved.nrrd", HEART, reference=image)


def test_read_labels_refuses_fractional_values_and_duplicate_specs(tmp_path):
    write_volume(Volume(np.full((2, 2, 2), 0.5, np.float32)), tmp_path / "image.nii.gz")
    with pytest.raises(VolumeReadError, match="whole-number values"):
        read_labels(tmp_path / "image.nii.gz", HEART)
    with pytest.raises(ValueError, match="distinct"):
        read_labels(tmp_path / "image.nii.gz", [LabelSpec("a", 1), LabelSpec("b", 1)])
