"""The paper's losses against values worked out by hand on tiny tensors."""
import math

import pytest
import torch
import torch.nn.functional as F

from sasan.losses import (
    attention_orthogonality_loss,
    auxiliary_segmentation_loss,
    cycle_consistency_loss,
    identity_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    pseudo_labels,
    segmentation_loss,
    ssim,
    voxel_loss,
)

C1 = (0.01 * 2.0) ** 2  # SSIM luminance constant for data range 2


def constant(value: float, shape=(1, 1, 16, 16)) -> torch.Tensor:
    return torch.full(shape, value)


# --- LSGAN -------------------------------------------------------------------------------------

def test_lsgan_discriminator_on_constant_scores():
    real, fake = constant(0.5, (2, 1, 3, 3)), constant(0.25, (2, 1, 2, 2))
    # 0.5 * [(0.5 - 1)^2 + 0.25^2] = 0.5 * (0.25 + 0.0625)
    assert lsgan_discriminator_loss(real, fake).item() == pytest.approx(0.15625)
    # factor 2 on the real term: 0.5 * (2 * 0.25 + 0.0625)
    assert lsgan_discriminator_loss(real, fake, real_weight=2.0).item() == pytest.approx(0.28125)


def test_lsgan_discriminator_sums_the_terms_of_several_fakes():
    real, fakes = constant(0.5, (2, 1, 3, 3)), [constant(0.25, (2, 1, 2, 2)), constant(0.5, (1, 1, 4, 4))]
    # 0.5 * [2 * (0.5 - 1)^2 + 0.25^2 + 0.5^2] = 0.5 * (0.5 + 0.0625 + 0.25)
    assert lsgan_discriminator_loss(real, fakes, real_weight=2.0).item() == pytest.approx(0.40625)


def test_lsgan_discriminator_is_zero_for_a_perfect_discriminator():
    assert lsgan_discriminator_loss(torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)).item() == 0.0


def test_lsgan_generator_on_constant_scores():
    assert lsgan_generator_loss(constant(0.25, (2, 1, 3, 3))).item() == pytest.approx(0.5625)
    assert lsgan_generator_loss(torch.ones(1, 1, 3, 3)).item() == 0.0


# --- SSIM, cycle, identity, voxel ---------------------------------------------------------------

def test_ssim_of_identical_images_is_one_and_cycle_loss_zero():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)
    assert cycle_consistency_loss(x, x.clone()).item() == pytest.approx(0.0, abs=1e-5)


def test_ssim_of_two_constant_images_is_the_luminance_term():
    # constant images have zero variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    value = ssim(constant(0.5), constant(-0.5)).item()
    assert value == pytest.approx((2 * 0.5 * -0.5 + C1) / (0.25 + 0.25 + C1), abs=1e-4)


def test_ssim_per_image_reduction_and_symmetry():
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    y = x.clone()
    y[1] = torch.rand(1, 16, 16) * 2 - 1  # independent noise: no shared structure
    per_image = ssim(x, y, reduction="none")
    assert per_image.shape == (2,)
    assert per_image[0].item() == pytest.approx(1.0, abs=1e-5)
    assert abs(per_image[1].item()) < 0.2
    assert torch.allclose(per_image, ssim(y, x, reduction="none"), atol=1e-6)


def test_ssim_stays_float32_under_bf16_autocast():
    x = torch.rand(1, 1, 16, 16) * 2 - 1
    y = (x + 0.1 * torch.randn_like(x)).clamp(-1, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = ssim(x, y)
    assert mixed.dtype == torch.float32
    assert mixed.item() == pytest.approx(ssim(x, y).item(), abs=1e-6)


def test_ssim_rejects_images_smaller_than_the_window_and_mismatched_shapes():
    with pytest.raises(ValueError, match="smaller than the 11x11 window"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        ssim(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 12))


def test_cycle_loss_on_constant_images():
    reconstructed, original = constant(0.25), constant(0.5)
    ssim_value = (2 * 0.25 * 0.5 + C1) / (0.25 ** 2 + 0.5 ** 2 + C1)
    expected = 0.25 + (1 - ssim_value)
    assert cycle_consistency_loss(reconstructed, original).item() == pytest.approx(expected, abs=1e-4)


def test_cycle_loss_gradient_is_finite_and_points_back_to_the_original():
    original = torch.rand(1, 1, 16, 16) * 2 - 1
    reconstructed = (original + 0.2 * torch.randn_like(original)).requires_grad_()
    loss = cycle_consistency_loss(reconstructed, original)
    loss.backward()
    assert torch.isfinite(reconstructed.grad).all()
    with torch.no_grad():
        stepped = reconstructed - 0.05 * reconstructed.grad / reconstructed.grad.abs().max()
    assert cycle_consistency_loss(stepped, original).item() < loss.item()


def test_identity_and_voxel_losses_are_l1():
    output = torch.tensor([[[[0.0, 1.0], [-1.0, 0.5]]]])
    target = torch.tensor([[[[0.5, 1.0], [1.0, 0.0]]]])
    expected = (0.5 + 0.0 + 2.0 + 0.5) / 4
    assert identity_loss(output, target).item() == pytest.approx(expected)
    assert voxel_loss(output, target).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="same shape"):
        voxel_loss(output, target[..., :1])


# --- attention orthogonality ------------------------------------------------------------------

def test_orthogonality_of_disjoint_maps_is_zero_with_finite_gradient():
    maps = torch.zeros(2, 4, 4, 4)
    for k in range(4):
        maps[:, k, k] = 0.3 + k  # map k covers row k only; magnitude must not matter
    maps.requires_grad_()
    loss = attention_orthogonality_loss(maps)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    assert torch.isfinite(maps.grad).all()


def test_orthogonality_of_two_identical_maps_is_sqrt_two():
    single = torch.rand(1, 1, 5, 5) + 0.1
    maps = torch.cat([single, 3.0 * single], dim=1)  # same direction after normalisation
    # A A^T - I = [[0, 1], [1, 0]] -> Frobenius norm sqrt(2)
    assert attention_orthogonality_loss(maps).item() == pytest.approx(math.sqrt(2.0), abs=1e-5)


def test_orthogonality_of_half_overlapping_maps_averages_over_the_batch():
    overlapping = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]).reshape(1, 2, 1, 3)
    disjoint = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]).reshape(1, 2, 1, 3)
    # overlapping rows have cosine 1/2 -> off-diagonals 1/2 -> norm sqrt(2 * 1/4); disjoint -> 0
    loss = attention_orthogonality_loss(torch.cat([overlapping, disjoint]))
    assert loss.item() == pytest.approx(math.sqrt(0.5) / 2, abs=1e-6)


# --- segmentation -----------------------------------------------------------------------------

def test_segmentation_loss_is_exact_cross_entropy_on_a_background_pixel():
    logits = torch.tensor([2.0, 0.0]).reshape(1, 2, 1, 1)
    target = torch.zeros(1, 1, 1, dtype=torch.long)
    # no foreground present -> Dice adds nothing; CE = -log(e^2 / (e^2 + 1))
    assert segmentation_loss(logits, target).item() == pytest.approx(math.log(1 + math.exp(-2.0)), abs=1e-6)


def test_segmentation_loss_on_a_foreground_pixel_adds_the_soft_dice():
    logits = torch.zeros(1, 2, 1, 1)
    target = torch.ones(1, 1, 1, dtype=torch.long)
    # CE = log 2; p(fg) = 0.5 -> Dice = 2 * 0.5 / (0.5 + 1) = 2/3 -> Dice loss 1/3
    assert segmentation_loss(logits, target).item() == pytest.approx(math.log(2.0) + 1 / 3, abs=1e-6)


def test_segmentation_loss_is_lower_for_correct_than_for_wrong_logits():
    target = torch.randint(0, 3, (2, 6, 6))
    correct = 5.0 * F.one_hot(target, 3).movedim(-1, 1).float()
    wrong = 5.0 * F.one_hot((target + 1) % 3, 3).movedim(-1, 1).float()
    good, bad = segmentation_loss(correct, target), segmentation_loss(wrong, target)
    assert good.item() < 0.05
    assert bad.item() > 5.0


def test_segmentation_loss_ignores_unlabelled_pixels():
    logits = torch.randn(2, 3, 5, 6)
    target = torch.randint(0, 3, (2, 5, 6))
    ignored = target.clone()
    ignored[..., -1] = -1
    # ignoring the last column is the same as cropping it away (CE and Dice both batch-wise)
    expected = segmentation_loss(logits[..., :-1], target[..., :-1])
    assert segmentation_loss(logits, ignored).item() == pytest.approx(expected.item(), abs=1e-6)
    # whatever the logits there, the loss does not change and no gradient reaches them
    changed = logits.clone()
    changed[..., -1] = 100.0 * torch.randn(2, 3, 5)
    changed.requires_grad_()
    loss = segmentation_loss(changed, ignored)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    loss.backward()
    assert torch.all(changed.grad[..., -1] == 0)
    assert torch.isfinite(changed.grad).all() and changed.grad[..., :-1].abs().sum() > 0


def test_segmentation_loss_with_no_labelled_pixel_is_zero_with_gradient():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = segmentation_loss(logits, torch.full((1, 4, 4), -1))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_segmentation_loss_rejects_bad_labels_and_shapes():
    logits = torch.zeros(1, 3, 2, 2)
    with pytest.raises(ValueError, match="outside 0..2"):
        segmentation_loss(logits, torch.full((1, 2, 2), 3))
    with pytest.raises(ValueError, match="does not match"):
        segmentation_loss(logits, torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer class indices"):
        segmentation_loss(logits, torch.zeros(1, 2, 2))


def test_auxiliary_loss_is_the_sum_over_real_and_translated():
    logits_a, logits_b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    labels_a, labels_b = torch.randint(0, 3, (2, 4, 4)), torch.randint(-1, 3, (2, 4, 4))
    expected = segmentation_loss(logits_a, labels_a) + segmentation_loss(logits_b, labels_b)
    assert auxiliary_segmentation_loss(logits_a, labels_a, logits_b, labels_b).item() == pytest.approx(expected.item())


def test_pseudo_labels_take_the_argmax_and_drop_unconfident_pixels():
    # pixel 0: softmax(3, 0) -> 0.95 for class 0; pixel 1: softmax(0, 0.2) -> 0.55 for class 1
    logits = torch.tensor([[3.0, 0.0], [0.0, 0.2]]).reshape(1, 2, 1, 2).requires_grad_()
    assert pseudo_labels(logits).tolist() == [[[0, 1]]]
    confident = pseudo_labels(logits, confidence=0.9)
    assert confident.tolist() == [[[0, -1]]]
    assert confident.dtype == torch.long and not confident.requires_grad
    with pytest.raises(ValueError, match="confidence"):
        pseudo_labels(logits, confidence=1.5)
