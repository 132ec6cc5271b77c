"""Random augmentation: in-plane geometry of one 2.5D training slice (the paper: rotation, scaling,
flips), and intensity changes of a batch that the detached U-Net is about to see.

One affine per slice, applied identically to the image (bilinear) and its label (nearest). The
affine is built in pixel units and converted to ``affine_grid``'s normalised coordinates, so a
rotation stays a rotation on non-square slices too.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from sasan.config import AugmentConfig, IntensityAugmentConfig

# The normalised background value: what appears where the warped slice uncovers the border.
IMAGE_FILL = -1.0


def sample_affine(config: AugmentConfig, generator: torch.Generator, height: int, width: int) -> torch.Tensor:
    """A random ``(2, 3)`` sampling matrix for ``F.affine_grid`` (output -> input, normalised coords).

    Content is rotated by an angle uniform in +-``rotation_degrees``, scaled by separate factors
    for width and height drawn from ``scale_range`` (content shrinks for factors < 1), then flipped
    left-right / up-down with probability 1/2 each where enabled. Five numbers are always drawn,
    so the generator advances the same way whatever the configuration.
    """
    low, high = config.scale_range
    u = torch.rand(5, generator=generator, dtype=torch.float64)
    angle = math.radians(config.rotation_degrees) * (2.0 * float(u[0]) - 1.0)
    scale_x = low + (high - low) * float(u[1])
    scale_y = low + (high - low) * float(u[2])
    flip_x = -1.0 if config.flip_horizontal and u[3] < 0.5 else 1.0
    flip_y = -1.0 if config.flip_vertical and u[4] < 0.5 else 1.0
    cos, sin = math.cos(angle), math.sin(angle)
    # Forward map in pixels (about the centre): flip, then scale, then rotate.
    rotate = torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64)
    forward = rotate @ torch.diag(torch.tensor([scale_x * flip_x, scale_y * flip_y], dtype=torch.float64))
    # affine_grid wants the inverse (output -> input) in coordinates normalised by half the size.
    half = torch.diag(torch.tensor([width / 2.0, height / 2.0], dtype=torch.float64))
    inverse = torch.linalg.inv(half) @ torch.linalg.inv(forward) @ half
    return torch.cat([inverse, torch.zeros(2, 1, dtype=torch.float64)], dim=1).float()


def warp_slice(
    image: torch.Tensor, label: Optional[torch.Tensor], theta: torch.Tensor
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Resample ``image`` ``(C, H, W)`` (bilinear, border -1) and ``label`` ``(H, W)`` (nearest, border 0)
    with the ``(2, 3)`` sampling matrix ``theta``."""
    grid = F.affine_grid(theta[None].to(image.dtype), [1, 1, *image.shape[-2:]], align_corners=False)
    # Sampling (image + 1) with zero padding and subtracting 1 pads with exactly -1.
    shifted = F.grid_sample((image - IMAGE_FILL)[None], grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
    warped_image = shifted[0] + IMAGE_FILL
    if label is None:
        return warped_image, None
    warped = F.grid_sample(label[None, None].to(image.dtype), grid, mode="nearest", padding_mode="zeros",
                           align_corners=False)
    return warped_image, warped[0, 0].round().to(label.dtype)


def augment_slice(
    image: torch.Tensor, label: Optional[torch.Tensor], config: AugmentConfig, generator: torch.Generator
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Apply one random affine to ``image`` float ``(C, H, W)`` and ``label`` long ``(H, W)`` or None.

    Deterministic for a given generator state.
    """
    if image.ndim != 3 or not image.is_floating_point():
        raise ValueError(f"expected a float image (C, H, W); got {tuple(image.shape)} {image.dtype}")
    if label is not None and tuple(label.shape) != tuple(image.shape[-2:]):
        raise ValueError(f"label shape {tuple(label.shape)} differs from the image's {tuple(image.shape[-2:])}")
    theta = sample_affine(config, generator, image.shape[-2], image.shape[-1])
    return warp_slice(image, label, theta)


def augment_intensity(images: torch.Tensor, config: IntensityAugmentConfig,
                      generator: torch.Generator) -> torch.Tensor:
    """Random gamma, contrast/brightness, blur and noise per image of ``images`` ``(N, C, H, W)`` (values
    about [-1, 1]); every context channel of an image changes alike. Deterministic for a generator state
    (drawn on the CPU, applied on the images' device); the labels are untouched.
    """
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"expected a float batch (N, C, H, W); got {tuple(images.shape)} {images.dtype}")
    n = images.shape[0]
    u = torch.rand(n, 9, generator=generator, dtype=torch.float64)
    noise = torch.randn(images.shape, generator=generator, dtype=torch.float32)

    def per_image(values: torch.Tensor) -> torch.Tensor:
        return values.to(images.device, images.dtype).view(n, 1, 1, 1)

    def uniform(bounds: list[float], column: int) -> torch.Tensor:
        return bounds[0] + (bounds[1] - bounds[0]) * u[:, column]

    def chosen(column: int, probability: float) -> torch.Tensor:
        return per_image(u[:, column]) < probability

    x = images
    gamma = per_image(uniform(config.gamma_range, 1))
    x = torch.where(chosen(0, config.probability), 2.0 * ((x + 1.0).clamp(min=0.0) / 2.0) ** gamma - 1.0, x)
    contrast = per_image(uniform(config.contrast_range, 3))
    offset = per_image(uniform([-config.brightness, config.brightness], 4))
    x = torch.where(chosen(2, config.probability), contrast * x + offset, x)
    x = torch.where(chosen(5, config.blur_probability), _gaussian_blur(x, uniform(config.blur_sigma, 6)), x)
    std = per_image(config.noise_std * u[:, 8])
    return torch.where(chosen(7, config.probability), x + std * noise.to(x.device, x.dtype), x)


def _gaussian_blur(images: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of each image of ``(N, C, H, W)`` with its own sigma (pixels), edges
    replicated; the kernel reaches two sigmas of the largest."""
    n, channels = images.shape[:2]
    radius = max(1, math.ceil(2.0 * float(sigmas.max())))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernels = torch.exp(-offsets[None] ** 2 / (2.0 * sigmas[:, None] ** 2))
    kernels = (kernels / kernels.sum(1, keepdim=True)).repeat_interleave(channels, 0).to(images.device, images.dtype)
    groups = n * channels
    flat = images.reshape(1, groups, *images.shape[-2:])
    rows = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernels[:, None, None, :], groups=groups)
    both = F.conv2d(F.pad(rows, (0, 0, radius, radius), mode="replicate"), kernels[:, None, :, None], groups=groups)
    return both.reshape(images.shape)
