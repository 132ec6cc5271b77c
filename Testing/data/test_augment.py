"""Slice augmentation: the same affine for image and label, -1 padding, exact flips, determinism; the
segmenter's intensity augmentation: each change on its own, per image, reproducible."""
import math

import pytest
import torch

from sasan.config import AugmentConfig, IntensityAugmentConfig
from sasan.data.augment import augment_intensity, augment_slice, sample_affine, warp_slice

STILL = AugmentConfig(rotation_degrees=0.0, scale_range=[1.0, 1.0], flip_horizontal=False, flip_vertical=False)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def square_label(size: int = 12) -> torch.Tensor:
    label = torch.zeros(size, size, dtype=torch.long)
    label[3:7, 2:9] = 1
    label[7:10, 4:6] = 2
    return label


def test_identity_configuration_changes_nothing():
    image = torch.randn(3, 8, 10)
    label = torch.randint(0, 3, (8, 10))
    out_image, out_label = augment_slice(image, label, STILL, generator(0))
    torch.testing.assert_close(out_image, image, atol=1e-5, rtol=0)
    assert torch.equal(out_label, label) and out_label.dtype == torch.long


def test_warp_with_a_quarter_turn_matches_rot90():
    image = torch.arange(9.0).reshape(1, 3, 3)
    theta = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]])
    out_image, out_label = warp_slice(image, image[0].long(), theta)
    expected = torch.rot90(image[0], 1, (0, 1))
    torch.testing.assert_close(out_image[0], expected, atol=1e-5, rtol=0)
    assert torch.equal(out_label, expected.long())


def test_flips_are_exact_and_shared_by_image_and_label():
    config = AugmentConfig(rotation_degrees=0.0, scale_range=[1.0, 1.0], flip_horizontal=True, flip_vertical=True)
    label = square_label()
    image = torch.stack([label.float(), -label.float()])
    seen = set()
    for seed in range(30):
        out_image, out_label = augment_slice(image, label, config, generator(seed))
        candidates = [(), (1,), (0,), (0, 1)]
        flips = [dims for dims in candidates if torch.equal(out_label, label.flip(dims) if dims else label)]
        assert len(flips) == 1
        expected = image.flip([d + 1 for d in flips[0]]) if flips[0] else image
        torch.testing.assert_close(out_image, expected, atol=1e-5, rtol=0)
        seen.add(flips[0])
    assert seen == {(), (1,), (0,), (0, 1)}


def test_shrinking_pads_the_image_with_minus_one_and_the_label_with_background():
    config = AugmentConfig(rotation_degrees=0.0, scale_range=[0.5, 0.5], flip_horizontal=False)
    image = torch.ones(1, 8, 8)
    label = torch.ones(8, 8, dtype=torch.long)
    out_image, out_label = augment_slice(image, label, config, generator(0))
    expected = -torch.ones(8, 8)
    expected[2:6, 2:6] = 1.0
    torch.testing.assert_close(out_image[0], expected, atol=1e-5, rtol=0)
    assert torch.equal(out_label, (expected > 0).long())


def test_rotation_moves_image_and_label_together():
    config = AugmentConfig(rotation_degrees=40.0, scale_range=[0.75, 1.0], flip_horizontal=True)
    label = square_label(16)
    image = (label == 1).float()[None] * 2.0 - 1.0  # structure 1 at +1, everything else at the -1 fill
    for seed in range(5):
        out_image, out_label = augment_slice(image, label, config, generator(seed))
        inside = out_image[0] > 0.999  # all four bilinear neighbours were in structure 1
        assert inside.any() and (out_label[inside] == 1).all()
        assert set(out_label.unique().tolist()) <= {0, 1, 2}


def test_a_pure_rotation_stays_rigid_on_non_square_slices():
    config = AugmentConfig(rotation_degrees=90.0, scale_range=[1.0, 1.0], flip_horizontal=False)
    height, width = 6, 20
    theta = sample_affine(config, generator(3), height, width).double()
    half = torch.diag(torch.tensor([width / 2.0, height / 2.0], dtype=torch.float64))
    in_pixels = half @ theta[:, :2] @ torch.linalg.inv(half)
    torch.testing.assert_close(in_pixels @ in_pixels.T, torch.eye(2, dtype=torch.float64), atol=1e-6, rtol=0)


def test_same_generator_state_gives_the_same_result():
    config = AugmentConfig(rotation_degrees=30.0, scale_range=[0.75, 1.0], flip_horizontal=True, flip_vertical=True)
    image, label = torch.randn(3, 12, 12), square_label()
    first = augment_slice(image, label, config, generator(7))
    second = augment_slice(image, label, config, generator(7))
    other = augment_slice(image, label, config, generator(8))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], other[0])
    assert augment_slice(image, None, config, generator(7))[1] is None


NO_INTENSITY_CHANGE = dict(probability=0.0, blur_probability=0.0)


def ramp_batch(n: int = 6, channels: int = 3, size: int = 16) -> torch.Tensor:
    """``n`` images whose channels all hold the same ramp from -1 to 1."""
    ramp = torch.linspace(-1.0, 1.0, size * size).reshape(size, size)
    return ramp.expand(n, channels, size, size).clone()


def test_intensity_augmentation_at_probability_zero_changes_nothing():
    images = ramp_batch()
    out = augment_intensity(images, IntensityAugmentConfig(**NO_INTENSITY_CHANGE), generator(0))
    assert torch.equal(out, images)


def test_gamma_keeps_the_ends_and_bends_the_middle_within_its_range():
    config = IntensityAugmentConfig(probability=1.0, blur_probability=0.0, contrast_range=[1.0, 1.0],
                                    brightness=0.0, noise_std=0.0)
    images = torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 1, 3).repeat(50, 3, 1, 1)
    out = augment_intensity(images, config, generator(1))
    assert torch.allclose(out[..., 0], torch.tensor(-1.0)) and torch.allclose(out[..., 2], torch.tensor(1.0))
    middle = out[:, 0, 0, 1]   # 2 * 0.5 ** gamma - 1 for gamma in [0.7, 1.5]
    assert middle.min() >= 2 * 0.5 ** 1.5 - 1 - 1e-6 and middle.max() <= 2 * 0.5 ** 0.7 - 1 + 1e-6
    assert middle.max() - middle.min() > 0.2   # the gammas differ between images
    assert torch.equal(out[:, 0], out[:, 2])     # ... but not between an image's channels


def test_contrast_and_brightness_are_one_affine_map_per_image():
    config = IntensityAugmentConfig(probability=1.0, blur_probability=0.0, gamma_range=[1.0, 1.0],
                                    noise_std=0.0)
    images = ramp_batch(n=40)
    out = augment_intensity(images, config, generator(2))
    for original, changed in zip(images, out):
        slope = (changed[0, -1, -1] - changed[0, 0, 0]) / 2.0
        offset = changed[0, 0, 0] + slope
        assert 0.75 - 1e-5 <= slope <= 1.25 + 1e-5 and abs(offset) <= 0.1 + 1e-5
        assert torch.allclose(changed, slope * original + offset, atol=1e-5)


def test_blur_spreads_an_impulse_into_the_hand_computed_gaussian():
    config = IntensityAugmentConfig(probability=0.0, blur_probability=1.0, blur_sigma=[1.0, 1.0])
    images = torch.zeros(2, 3, 9, 9)
    images[:, :, 4, 4] = 1.0
    out = augment_intensity(images, config, generator(3))
    taps = torch.tensor([math.exp(-k * k / 2.0) for k in range(-2, 3)])
    taps = taps / taps.sum()
    expected = torch.zeros(9, 9)
    expected[2:7, 2:7] = taps[:, None] * taps[None, :]
    assert torch.allclose(out[0, 1], expected, atol=1e-6) and torch.allclose(out[1, 0], expected, atol=1e-6)
    constant = augment_intensity(torch.full((1, 3, 9, 9), 0.3), config, generator(3))
    assert torch.allclose(constant, torch.tensor(0.3))   # edges replicated: no dark rim


def test_noise_standard_deviation_is_uniform_up_to_its_bound():
    config = IntensityAugmentConfig(probability=1.0, blur_probability=0.0, gamma_range=[1.0, 1.0],
                                    contrast_range=[1.0, 1.0], brightness=0.0, noise_std=0.1)
    images = torch.zeros(400, 1, 32, 32)
    stds = augment_intensity(images, config, generator(4)).std(dim=(1, 2, 3))
    assert stds.max() <= 0.1 * 1.1 and stds.mean() == pytest.approx(0.05, abs=0.006)


def test_intensity_augmentation_is_reproducible_and_seed_dependent():
    config = IntensityAugmentConfig(probability=0.5, blur_probability=0.5)
    images = ramp_batch()
    first, again = (augment_intensity(images, config, generator(5)) for _ in range(2))
    other = augment_intensity(images, config, generator(6))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_intensity_augmentation_refuses_a_batch_without_channels():
    with pytest.raises(ValueError, match=r"expected a float batch \(N, C, H, W\)"):
        augment_intensity(torch.zeros(3, 16, 16), IntensityAugmentConfig(), generator(0))
