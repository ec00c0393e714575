"""Augmentation presets, applied to a whole batch of uint8 N×C×H×W images at once.

Why a batch at a time: torchvision's per-image transforms build an affine grid and resample for
one small image per call, and on a 2-core CPU that alone was a quarter of a training epoch
(benchmarks/results/train-profile-20261201.md). Here every image gets its own random crop,
rotation, lighting, blur, erasing and flips, as the per-image presets drew them, but through one
``affine_grid``/``grid_sample`` and a few broadcast operations for the whole batch. Randomness
comes from torch's global generator, which the trainer and the DataLoader's workers seed, so runs
stay reproducible.

Flips are a separate choice: they preserve identity for faces and most products, but not for
text, signatures or parts with a handedness, so none is the default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import get_args

import torch
import torch.nn.functional as F

from siamese.core.errors import ConfigError
from siamese.training import config

AUGMENTATIONS = get_args(config.Augmentation)
FLIPS = get_args(config.Flip)

_ERASE_RATIO = (0.3, 3.3)  # aspect ratios of an erased patch (torchvision's default)
_BLUR_KERNEL = 5


@dataclass(frozen=True)
class Preset:
    """The random ranges of one preset (each image draws its own values from them)."""

    crop_area: tuple[float, float]  # share of the image a crop keeps
    crop_ratio: tuple[float, float]  # crop aspect ratio
    degrees: float  # rotation, either way
    lighting: float  # brightness and contrast (and saturation in colour) factors 1 ± this
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    erase_p: float = 0.0
    erase_area: tuple[float, float] = (0.02, 0.2)


PRESETS = {
    "light": Preset((0.8, 1.0), (0.9, 1.1), 10.0, 0.2),
    "medium": Preset((0.8, 1.0), (0.9, 1.1), 10.0, 0.2, erase_p=0.5),
    "strong": Preset(
        (0.6, 1.0), (0.8, 1.25), 25.0, 0.35, blur_p=0.3, erase_p=0.25, erase_area=(0.02, 0.15)
    ),
}


def _uniform(count: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(count)


def _crop_and_rotate(images: torch.Tensor, preset: Preset) -> torch.Tensor:
    """A random resized crop and rotation per image, as one affine resampling of the batch.

    In normalised coordinates an output point u maps to the input point c + S·R·u: R rotates
    (in pixel units, so non-square images are not sheared), S shrinks to the crop's size, c is the
    crop's centre. Points outside the image read as 0, as torchvision's rotation fills them.
    """
    count, _, height, width = images.shape
    area = _uniform(count, *preset.crop_area)
    log_ratio = _uniform(count, math.log(preset.crop_ratio[0]), math.log(preset.crop_ratio[1]))
    ratio = torch.exp(log_ratio)
    crop_w = torch.sqrt(area * ratio).clamp(max=1.0)  # shares of the width and height
    crop_h = torch.sqrt(area / ratio).clamp(max=1.0)
    centre_x = (1 - crop_w) * (2 * torch.rand(count) - 1)
    centre_y = (1 - crop_h) * (2 * torch.rand(count) - 1)
    angle = torch.deg2rad(_uniform(count, -preset.degrees, preset.degrees))
    theta = affine_theta(crop_w, crop_h, centre_x, centre_y, angle, width / height)
    grid = F.affine_grid(theta, [count, 1, height, width], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def affine_theta(
    crop_w: torch.Tensor,
    crop_h: torch.Tensor,
    centre_x: torch.Tensor,
    centre_y: torch.Tensor,
    angle: torch.Tensor,
    aspect: float,
) -> torch.Tensor:
    """``affine_grid``'s N×2×3 matrices: crop shares, crop centres, angles in radians.

    ``aspect`` is width / height: the rotation scales y by H/W before turning and by W/H after,
    so it turns pixels, not the normalised square.
    """
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(len(angle), 2, 3)
    theta[:, 0, 0] = crop_w * cos
    theta[:, 0, 1] = -crop_w * sin / aspect
    theta[:, 1, 0] = crop_h * sin * aspect
    theta[:, 1, 1] = crop_h * cos
    theta[:, 0, 2] = centre_x
    theta[:, 1, 2] = centre_y
    return theta


def _grey(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 1:
        return images
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def _lighting(images: torch.Tensor, amount: float) -> torch.Tensor:
    """Brightness, contrast and (colour only) saturation factors in 1 ± amount, per image."""
    count = images.shape[0]

    def factors() -> torch.Tensor:
        return _uniform(count, 1 - amount, 1 + amount).view(count, 1, 1, 1)

    images = (images * factors()).clamp(0, 255)
    mean = _grey(images).mean(dim=(1, 2, 3), keepdim=True)
    contrast = factors()
    images = (contrast * images + (1 - contrast) * mean).clamp(0, 255)
    if images.shape[1] == 3:
        saturation = factors()
        images = (saturation * images + (1 - saturation) * _grey(images)).clamp(0, 255)
    return images


def _blur(images: torch.Tensor, preset: Preset) -> torch.Tensor:
    """A Gaussian blur of its own width on a random share of the images (separable, grouped)."""
    count, channels, height, width = images.shape
    chosen = torch.rand(count) < preset.blur_p
    sigma = _uniform(count, *preset.blur_sigma)
    offsets = torch.arange(_BLUR_KERNEL) - _BLUR_KERNEL // 2
    kernel = torch.exp(-(offsets.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)
    kernel = kernel.repeat_interleave(channels, dim=0)  # one per image and channel
    flat = images.reshape(1, count * channels, height, width)
    pad = _BLUR_KERNEL // 2
    flat = F.conv2d(
        F.pad(flat, (pad, pad, 0, 0), mode="replicate"),
        kernel.view(-1, 1, 1, 5),
        groups=count * channels,
    )
    flat = F.conv2d(
        F.pad(flat, (0, 0, pad, pad), mode="replicate"),
        kernel.view(-1, 1, 5, 1),
        groups=count * channels,
    )
    blurred = flat.view(count, channels, height, width)
    return torch.where(chosen.view(count, 1, 1, 1), blurred, images)


def _erase(images: torch.Tensor, preset: Preset) -> torch.Tensor:
    """Black out one random rectangle in a random share of the images (random erasing)."""
    count, _, height, width = images.shape
    chosen = torch.rand(count) < preset.erase_p
    area = _uniform(count, *preset.erase_area) * height * width
    ratio = torch.exp(_uniform(count, math.log(_ERASE_RATIO[0]), math.log(_ERASE_RATIO[1])))
    patch_h = torch.sqrt(area * ratio).round().clamp(1, height)
    patch_w = torch.sqrt(area / ratio).round().clamp(1, width)
    top = (torch.rand(count) * (height - patch_h + 1)).floor()
    left = (torch.rand(count) * (width - patch_w + 1)).floor()
    rows = torch.arange(height).view(1, height, 1)
    cols = torch.arange(width).view(1, 1, width)
    inside = (
        (rows >= top.view(-1, 1, 1))
        & (rows < (top + patch_h).view(-1, 1, 1))
        & (cols >= left.view(-1, 1, 1))
        & (cols < (left + patch_w).view(-1, 1, 1))
        & chosen.view(-1, 1, 1)
    )
    return images.masked_fill(inside.unsqueeze(1), 0.0)


def _flip(images: torch.Tensor, dims: int) -> torch.Tensor:
    chosen = (torch.rand(images.shape[0]) < 0.5).view(-1, 1, 1, 1)
    return torch.where(chosen, images.flip(dims), images)


class BatchAugmentation:
    """A preset and a flip rule, applied to uint8 N×C×H×W batches (see the module docstring)."""

    def __init__(self, preset: Preset | None, flip: str) -> None:
        self.preset = preset
        self.flip = flip

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.float()
        if (preset := self.preset) is not None:
            batch = _crop_and_rotate(batch, preset)
            batch = _lighting(batch, preset.lighting)
            if preset.blur_p > 0:
                batch = _blur(batch, preset)
            if preset.erase_p > 0:
                batch = _erase(batch, preset)
        if self.flip in ("horizontal", "both"):
            batch = _flip(batch, 3)
        if self.flip in ("vertical", "both"):
            batch = _flip(batch, 2)
        return batch.round_().clamp_(0, 255).to(torch.uint8)


def build_augmentation(preset: str, flip: str) -> BatchAugmentation | None:
    """The training-time augmentation for a preset, or None for "none" without flips.

    light: mild crop, rotation and lighting changes. medium (the default): light plus random erasing
    of a patch in half the images (as person re-identification trains), which makes the tower
    use every part of an image rather than the few that separate its training identities. strong:
    larger crops and rotations, blur and erasing, for small datasets that overfit.
    """
    if preset not in AUGMENTATIONS:
        raise ConfigError(
            f"unknown augmentation {preset!r}; choose one of: {', '.join(AUGMENTATIONS)}"
        )
    if flip not in FLIPS:
        raise ConfigError(f"unknown flip {flip!r}; choose one of: {', '.join(FLIPS)}")
    chosen = PRESETS.get(preset)
    if chosen is None and flip == "none":
        return None
    return BatchAugmentation(chosen, flip)
