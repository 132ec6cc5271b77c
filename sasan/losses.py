"""Every loss of the SASAN paper (§ 3.2), one function each.

Images live in [-1, 1]. Segmentation targets are integer class maps in which ``-1`` marks pixels
that carry no label (outside a pseudo label's confidence, or unlabelled). The weights that combine
these terms are ``sasan.config.LossConfig`` (lambda_c, lambda_id, lambda_reg, lambda_aux,
...); the trainer applies them, so nothing here is weighted except where the paper fixes a factor.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from monai.metrics.regression import compute_ssim_and_cs

IGNORE_INDEX = -1


def _require_same_shape(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    # F.l1_loss would broadcast mismatched shapes with only a warning; a silent broadcast here is a bug.
    if a.shape != b.shape:
        raise ValueError(f"{what}: the two tensors must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def lsgan_discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor | Sequence[torch.Tensor],
                             real_weight: float = 1.0) -> torch.Tensor:
    """Least-squares GAN loss of a discriminator: 0.5 * [w * mean((D(real) - 1)^2) + sum_f mean(D(f)^2)].

    ``real_scores``: discriminator outputs of any shape (PatchGAN: (B, 1, h, w)); ``fake_scores``: one such
    tensor, or a sequence of them whose terms are summed (each of any shape). The segmentation discriminator
    takes two fakes against ``real_weight=2`` (the paper's eq. (1)). Returns a scalar.
    """
    fakes = [fake_scores] if isinstance(fake_scores, torch.Tensor) else list(fake_scores)
    real_term = torch.mean((real_scores - 1.0) ** 2)
    fake_term = sum(torch.mean(fake ** 2) for fake in fakes)
    return 0.5 * (real_weight * real_term + fake_term)


def lsgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN loss of a generator: mean((D(fake) - 1)^2). Any shape in, scalar out."""
    return torch.mean((fake_scores - 1.0) ** 2)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0, window: int = 11, sigma: float = 1.5,
         reduction: Literal["mean", "none"] = "mean") -> torch.Tensor:
    """Differentiable 2D SSIM with a Gaussian window (MONAI's ``compute_ssim_and_cs``).

    ``x``, ``y``: (B, C, H, W) with H, W >= ``window`` (the window is applied without padding, so
    only fully covered positions count). Channels are compared separately and averaged.
    Returns the mean SSIM as a scalar (``reduction="mean"``) or one value per image, shape (B,)
    (``reduction="none"``). Identical images give 1.
    """
    _require_same_shape(x, y, "ssim")
    if x.dim() != 4:
        raise ValueError(f"ssim: expected (B, C, H, W) images, got shape {tuple(x.shape)}")
    if min(x.shape[-2:]) < window:
        raise ValueError(f"ssim: images of {x.shape[-2]}x{x.shape[-1]} pixels are smaller than the "
                         f"{window}x{window} window")
    if reduction not in ("mean", "none"):
        raise ValueError(f"ssim: reduction must be 'mean' or 'none', got {reduction!r}")
    # Variances are differences of local means (E[x^2] - E[x]^2); in bf16 that cancellation costs up
    # to ~0.03 per pixel, so SSIM always runs in float32 even inside a mixed-precision region.
    with torch.autocast(device_type=x.device.type, enabled=False):
        ssim_map, _ = compute_ssim_and_cs(
            x.float(), y.float(), spatial_dims=2, kernel_size=(window, window), kernel_sigma=(sigma, sigma),
            data_range=data_range, kernel_type="gaussian",
        )
    per_image = ssim_map.flatten(1).mean(dim=1)
    return per_image.mean() if reduction == "mean" else per_image


def cycle_consistency_loss(reconstructed: torch.Tensor, original: torch.Tensor,
                           with_ssim: bool = True) -> torch.Tensor:
    """One direction of the dual cycle loss: L1 + (1 - SSIM) (the paper's), or L1 alone (``with_ssim=False``:
    CycleGAN's), images (B, C, H, W) in [-1, 1].

    The trainer sums both directions (x -> y -> x and y -> x -> y). Returns a scalar.
    """
    _require_same_shape(reconstructed, original, "cycle_consistency_loss")
    l1 = F.l1_loss(reconstructed, original)
    return l1 + (1.0 - ssim(reconstructed, original)) if with_ssim else l1


def identity_loss(output: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
    """L1 between G(y) and y for an image y already in the generator's output domain; scalar."""
    _require_same_shape(output, input, "identity_loss")
    return F.l1_loss(output, input)


def voxel_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between a translation and its paired (registered) target, any equal shapes; scalar."""
    _require_same_shape(output, target, "voxel_loss")
    return F.l1_loss(output, target)


def attention_orthogonality_loss(maps: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||A A^T - I||_F, A the K attention maps as unit-norm rows.

    ``maps``: (B, K, H, W) (any number of spatial dimensions). Each sample's maps are flattened to
    A (K, H*W) and each row scaled to unit L2 norm, so the loss only sees overlap between maps, not
    their magnitude: K disjoint maps give 0, K identical maps give sqrt(K^2 - K). Returns a scalar.
    """
    if maps.dim() < 3:
        raise ValueError(f"attention_orthogonality_loss: expected maps (B, K, H, W), got shape {tuple(maps.shape)}")
    rows = F.normalize(maps.flatten(2), p=2, dim=2)
    gram = rows @ rows.transpose(1, 2)
    identity = torch.eye(maps.shape[1], dtype=gram.dtype, device=gram.device)
    return torch.linalg.matrix_norm(gram - identity, ord="fro").mean()


def _check_segmentation_inputs(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Validate shapes and label values; return the mask of labelled pixels, shape of ``target``."""
    if logits.dim() < 3 or logits.shape[1] < 2:
        raise ValueError(f"segmentation_loss: expected logits (B, C>=2, H, W), got shape {tuple(logits.shape)}")
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(f"segmentation_loss: target shape {tuple(target.shape)} does not match logits "
                         f"{tuple(logits.shape)} (expected (B, H, W))")
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise ValueError(f"segmentation_loss: target must hold integer class indices, got {target.dtype}")
    valid = target != ignore_index
    num_classes = logits.shape[1]
    if bool((valid & ((target < 0) | (target >= num_classes))).any()):
        raise ValueError(f"segmentation_loss: target holds labels outside 0..{num_classes - 1} "
                         f"(other than ignore_index {ignore_index})")
    return valid


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Cross-entropy + soft Dice over the labelled pixels; scalar.

    ``logits``: (B, C, H, W) raw scores, C >= 2 with class 0 the background; ``target``: (B, H, W)
    integer labels in 0..C-1, or ``ignore_index`` for pixels without a label (they add nothing to
    either term). Cross-entropy is the mean over labelled pixels. Dice is computed over the whole
    batch at once and averaged over the foreground classes *present* among the labelled target
    pixels: an absent class has no overlap to measure, and counting it would only push its
    probability towards exactly zero (cross-entropy already penalises false positives).
    A batch with no labelled pixels gives 0, still attached to the graph (no NaN).
    """
    valid = _check_segmentation_inputs(logits, target, ignore_index)
    num_valid = valid.sum()
    cross_entropy = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
    cross_entropy = cross_entropy / num_valid.clamp(min=1)

    # Written here rather than with monai.losses.DiceLoss: that averages over every class, present
    # or not, and has no "present classes only" mode.
    num_classes = logits.shape[1]
    probabilities = torch.softmax(logits.float(), dim=1)
    labels = torch.where(valid, target, torch.zeros_like(target))
    one_hot = F.one_hot(labels, num_classes).movedim(-1, 1).to(probabilities.dtype)
    mask = valid.unsqueeze(1).to(probabilities.dtype)
    probabilities, one_hot = probabilities * mask, one_hot * mask
    sum_dims = [0] + list(range(2, logits.dim()))
    intersection = (probabilities * one_hot).sum(dim=sum_dims)[1:]
    predicted = probabilities.sum(dim=sum_dims)[1:]
    actual = one_hot.sum(dim=sum_dims)[1:]
    present = actual > 0
    # A present class has actual >= 1, so Dice needs no smoothing term; the clamp only keeps absent
    # classes (masked out below) from computing 0/0 = NaN, which would survive the masking.
    dice = 2.0 * intersection / (predicted + actual).clamp(min=1.0)
    dice_loss = ((1.0 - dice) * present).sum() / present.sum().clamp(min=1)
    return cross_entropy + dice_loss.to(cross_entropy.dtype)


def auxiliary_segmentation_loss(logits_real: torch.Tensor, labels_real: torch.Tensor,
                                logits_translated: torch.Tensor, labels_translated: torch.Tensor,
                                ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """The auxiliary loss: ``segmentation_loss`` on real images plus on translated images; scalar.

    Logits (B, C, H, W), labels (B, H, W). Labels may be pseudo labels (see ``pseudo_labels``)
    where a domain has none; ``ignore_index`` pixels are skipped in both terms.
    """
    return (segmentation_loss(logits_real, labels_real, ignore_index)
            + segmentation_loss(logits_translated, labels_translated, ignore_index))


@torch.no_grad()
def pseudo_labels(logits: torch.Tensor, confidence: float = 0.0) -> torch.Tensor:
    """Hard labels from logits (B, C, H, W): argmax over C, shape (B, H, W), dtype long, no gradient.

    Pixels whose largest softmax probability is below ``confidence`` become ``IGNORE_INDEX`` (-1),
    so ``segmentation_loss`` skips them. ``confidence=0`` keeps every pixel.
    """
    if logits.dim() < 3:
        raise ValueError(f"pseudo_labels: expected logits (B, C, H, W), got shape {tuple(logits.shape)}")
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"pseudo_labels: confidence must be a probability in [0, 1], got {confidence}")
    top_probability, labels = torch.softmax(logits.float(), dim=1).max(dim=1)
    return torch.where(top_probability < confidence, torch.full_like(labels, IGNORE_INDEX), labels)
