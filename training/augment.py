"""Augmentation presets (torchvision.transforms.v2) for uint8 C×H×W tensors, before normalisation.

Flips are a separate choice: they preserve identity for faces and most products, but not for
text, signatures or parts with a handedness, so none is the default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import get_args

import torch
from torchvision.transforms import v2

from siamese.errors import ConfigError
from siamese.spec import InputSpec
from siamese.training import config

AUGMENTATIONS = get_args(config.Augmentation)
FLIPS = get_args(config.Flip)

Augmentation = Callable[[torch.Tensor], torch.Tensor]


def _flips(flip: str) -> list[v2.Transform]:
    transforms: list[v2.Transform] = []
    if flip in ("horizontal", "both"):
        transforms.append(v2.RandomHorizontalFlip())
    if flip in ("vertical", "both"):
        transforms.append(v2.RandomVerticalFlip())
    return transforms


def build_augmentation(preset: str, flip: str, spec: InputSpec) -> Augmentation | None:
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
    size = (spec.height, spec.width)
    colour = {"saturation": 0.2} if spec.channels == 3 else {}
    steps: list[v2.Transform] = []
    if preset in ("light", "medium"):
        steps = [
            v2.RandomResizedCrop(size, scale=(0.8, 1.0), ratio=(0.9, 1.1), antialias=True),
            v2.RandomRotation(10),
            v2.ColorJitter(brightness=0.2, contrast=0.2, **colour),
        ]
        if preset == "medium":
            steps.append(v2.RandomErasing(p=0.5, scale=(0.02, 0.2)))
    elif preset == "strong":
        steps = [
            v2.RandomResizedCrop(size, scale=(0.6, 1.0), ratio=(0.8, 1.25), antialias=True),
            v2.RandomRotation(25),
            v2.ColorJitter(brightness=0.35, contrast=0.35, **{k: 0.35 for k in colour}),
            v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.5))], p=0.3),
            v2.RandomErasing(p=0.25, scale=(0.02, 0.15)),
        ]
    steps += _flips(flip)
    return v2.Compose(steps) if steps else None
