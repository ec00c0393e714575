"""Feeding the tower: a Dataset over decoded images, batch augmentation and the batch samplers.

A batch is a list of image indices; labels travel with the images, so P×K miners and seed-style
sampled pairs (target = labels differ) need nothing else.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from siamese.contracts.spec import InputSpec
from siamese.training.augment import BatchAugmentation
from siamese.training.data import ImageDataset
from siamese.training.pixels import PixelNormalizer
from siamese.training.samplers import PKSampler, RandomTupleSampler


class TrainingImages(Dataset):
    """Decoded uint8 images served as C×H×W tensors with their labels (augmented per batch)."""

    def __init__(self, data: ImageDataset) -> None:
        self.pixels = torch.from_numpy(data.pixels).permute(0, 3, 1, 2)  # a view: no copy
        self.labels = torch.from_numpy(data.labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pixels[index], self.labels[index]


class AugmentedBatches:
    """The loader's collate step: stack a batch, then augment it as a whole (training/augment.py).

    With ``views=2`` each image comes as two independently augmented views, N×2×C×H×W (for the
    instance-discrimination term).
    """

    def __init__(self, augmentation: BatchAugmentation | None, views: int = 1) -> None:
        if views not in (1, 2) or (views == 2 and augmentation is None):
            raise ValueError("two views need an augmentation; otherwise use one view")
        self.augmentation = augmentation
        self.views = views

    def __call__(
        self, items: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.stack([image for image, _ in items])
        labels = torch.stack([label for _, label in items])
        if self.augmentation is None:
            return images, labels
        if self.views == 2:
            return torch.stack([self.augmentation(images), self.augmentation(images)], 1), labels
        return self.augmentation(images), labels


def flatten_views(
    images: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """A batch of N×V×C×H×W views → (N·V)×C×H×W images, labels, and which image each view shows.

    A plain N×C×H×W batch passes through with ``None`` for the instances.
    """
    if images.dim() == 4:
        return images, labels, None
    count, views = images.shape[:2]
    instances = torch.arange(count, device=labels.device).repeat_interleave(views)
    return images.flatten(0, 1), labels.repeat_interleave(views), instances


def make_sampler(
    labels: np.ndarray,
    sampler: str,
    kind: str,
    batch_size: int,
    p: int,
    k: int,
    steps: int,
    seed: int,
    *,
    rank: int = 0,
    world: int = 1,
) -> PKSampler | RandomTupleSampler:
    """The batch sampler for a criterion.

    P×K for mined losses, random tuples for seed-style training.

    ``rank`` and ``world`` give each training process its share of one shared global batch.
    """
    if sampler == "pk":
        return PKSampler(labels, p, k, steps, seed, rank=rank, world=world)
    return RandomTupleSampler(labels, kind, batch_size, steps, seed, rank=rank, world=world)


def make_loader(
    data: ImageDataset,
    augmentation: BatchAugmentation | None,
    batch_sampler,
    workers: int,
    seed: int,
    pin: bool,
    views: int = 1,
) -> DataLoader:
    """A DataLoader whose augmentation randomness is reproducible from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        TrainingImages(data),
        batch_sampler=batch_sampler,
        collate_fn=AugmentedBatches(augmentation, views),
        num_workers=workers,
        generator=generator,
        pin_memory=pin,
        persistent_workers=workers > 0,
    )


def normalize_batch(images: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """uint8 N×C×H×W → the tower's float input, by the exported graph's own first layer."""
    return PixelNormalizer(spec).to(images.device)(images)
