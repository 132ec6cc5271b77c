"""Slicing axes, slice stacks and the square resampling round trip: results must overlay the input."""
import numpy as np
import pytest
import torch

from sasan.data.geometry import (
    fit_to_square,
    fit_to_square_tensor,
    from_slice_stack,
    restore_from_square,
    restore_from_square_tensor,
    slicing_axis,
    to_slice_stack,
)
from sasan.data.io import read_volume, write_volume
from sasan.data.volume import Volume


def rotation_about_x(degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def test_slicing_axis_for_the_identity_direction():
    volume = Volume(np.zeros((2, 3, 4)))
    assert slicing_axis(volume) == 0
    assert slicing_axis(volume, "axial") == 0
    assert slicing_axis(volume, "coronal") == 1
    assert slicing_axis(volume, "sagittal") == 2


def test_slicing_axis_follows_a_permuted_direction():
    # Columns: i points S, j points L, k points P (a sagittal acquisition stored k-first).
    direction = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=float)
    volume = Volume(np.zeros((2, 3, 4)), direction=direction)
    assert slicing_axis(volume, "axial") == 2  # array axis of i
    assert slicing_axis(volume, "coronal") == 0  # array axis of k
    assert slicing_axis(volume, "sagittal") == 1  # array axis of j


def test_slicing_axis_for_oblique_directions():
    # Tilted 30 degrees about x, k is still mostly S; tilted 60 degrees, j has become the S-most axis.
    assert slicing_axis(Volume(np.zeros((2, 3, 4)), direction=rotation_about_x(30)), "axial") == 0
    assert slicing_axis(Volume(np.zeros((2, 3, 4)), direction=rotation_about_x(60)), "axial") == 1
    assert slicing_axis(Volume(np.zeros((2, 3, 4)), direction=rotation_about_x(60)), "coronal") == 0
    with pytest.raises(ValueError, match="unknown slicing plane 'oblique'"):
        slicing_axis(Volume(np.zeros((2, 3, 4))), "oblique")


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slice_stack_puts_the_axis_first_and_inverts_exactly(axis):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    stack = to_slice_stack(array, axis)
    assert stack.shape[0] == array.shape[axis]
    np.testing.assert_array_equal(stack[1], np.take(array, 1, axis=axis))
    np.testing.assert_array_equal(from_slice_stack(stack, axis), array)


def test_fit_pads_the_short_side_symmetrically_with_the_slice_minimum():
    stack = np.array([[[5.0, 6.0, 7.0, 8.0], [1.0, 2.0, 3.0, 4.0]]], dtype=np.float32)  # (1, 2, 4)
    squared = fit_to_square(stack, 4, "image")
    expected = np.array([[1, 1, 1, 1], [5, 6, 7, 8], [1, 2, 3, 4], [1, 1, 1, 1]], dtype=np.float32)
    np.testing.assert_array_equal(squared[0], expected)
    labels = np.array([[[1, 2], [3, 4], [5, 6]]], dtype=np.uint8)  # (1, 3, 2): pad one column, at the right
    squared_labels = fit_to_square(labels, 3, "label")
    assert squared_labels.dtype == np.uint8
    np.testing.assert_array_equal(squared_labels[0], [[1, 2, 0], [3, 4, 0], [5, 6, 0]])


@pytest.mark.parametrize("size", [4, 6, 9])
def test_a_square_slice_needs_no_padding_and_comes_back_as_a_new_tensor(size):
    square = torch.randn(2, 3, 6, 6)
    before = square.clone()
    got = fit_to_square_tensor(square, size, "image")
    expected = square if size == 6 else torch.nn.functional.interpolate(square, size=(size, size), mode="bilinear",
                                                                          align_corners=False)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    got.add_(1.0)
    torch.testing.assert_close(square, before, rtol=0, atol=0)  # the input is left as it was


@pytest.mark.parametrize("shape,size", [((6, 4), 12), ((6, 4), 18), ((5, 7), 14), ((3, 3), 9)])
def test_label_round_trip_is_exact_for_multiples(shape, size):
    labels = np.random.default_rng(1).integers(0, 5, size=(2, *shape)).astype(np.uint8)
    squared = fit_to_square(labels, size, "label")
    assert squared.shape == (2, size, size)
    np.testing.assert_array_equal(restore_from_square(squared, shape, "label"), labels)


@pytest.mark.parametrize("shape,size", [((50, 30), 16), ((7, 11), 16), ((16, 16), 16), ((33, 20), 48)])
def test_restore_always_returns_the_input_grid(shape, size):
    images = np.random.default_rng(2).normal(size=(3, *shape)).astype(np.float32)
    squared = fit_to_square(images, size, "image")
    assert squared.shape == (3, size, size) and squared.dtype == np.float32
    assert restore_from_square(squared, shape, "image").shape == (3, *shape)
    assert restore_from_square(fit_to_square(images > 0, size, "label"), shape, "label").shape == (3, *shape)


def test_image_round_trip_is_close_for_smooth_images_and_exact_for_odd_factors():
    rows, cols = np.meshgrid(np.linspace(0, 1, 30), np.linspace(0, 1, 20), indexing="ij")
    image = np.sin(3 * rows + 2 * cols)[None].astype(np.float32)  # (1, 30, 20)
    upsampled = restore_from_square(fit_to_square(image, 64, "image"), (30, 20), "image")
    # Columns next to the padding blend with the padded minimum at non-integer factors.
    assert np.abs(upsampled - image)[..., 1:-1].max() < 0.02
    tripled = restore_from_square(fit_to_square(image, 90, "image"), (30, 20), "image")
    np.testing.assert_allclose(tripled, image, atol=1e-5)


def test_restore_tensor_unsquares_multichannel_logits_like_the_numpy_version():
    logits = torch.randn(2, 3, 16, 16)
    restored = restore_from_square_tensor(logits, (10, 7), "image")
    assert restored.shape == (2, 3, 10, 7)
    per_channel = restore_from_square(logits[:, 1].numpy(), (10, 7), "image")
    np.testing.assert_allclose(restored[:, 1].numpy(), per_channel, atol=1e-6)
    with pytest.raises(ValueError, match="floating-point"):
        restore_from_square_tensor(logits.long(), (10, 7), "label")
    with pytest.raises(ValueError, match="unknown resampling mode"):
        restore_from_square_tensor(logits, (10, 7), "cubic")


@pytest.mark.parametrize("name", ["v.nii.gz", "v.nrrd"])
def test_oblique_anisotropic_volume_survives_the_whole_round_trip(tmp_path, name):
    direction = rotation_about_x(50) @ np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1]], dtype=float)
    labels = np.random.default_rng(3).integers(0, 4, size=(6, 8, 5)).astype(np.uint8)
    original = Volume(labels, spacing=(0.6, 1.7, 3.1), origin=(-40.0, 12.5, 98.25), direction=direction)
    read = read_volume(write_volume(original, tmp_path / name), dtype=None)
    axis = slicing_axis(read, "axial")
    stack = to_slice_stack(read.array, axis)
    restored = restore_from_square(fit_to_square(stack, 16, "label"), stack.shape[1:], "label")
    result = read.with_array(np.ascontiguousarray(from_slice_stack(restored, axis)))
    np.testing.assert_array_equal(result.array, labels)
    assert result.same_geometry(original)
