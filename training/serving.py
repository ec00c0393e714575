"""What the tower serves: its embeddings of a dataset, and the feature projection fitted into it.

The projection is part of the served model (exported as a matrix product in the ONNX graph), so
it is fitted here, beside the code that embeds as serving does, not with validation.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from siamese.training.batches import normalize_batch
from siamese.training.data import ImageDataset

_EVAL_BATCH = 256


#: Training images whose backbone features fit the served FeatureProjection (a sample, for speed).
PROJECTION_SAMPLE = 5000
#: Training images whose features refit it after each epoch, for validation only: the kept
#: epoch's projection is then refitted on PROJECTION_SAMPLE images. The per-epoch fit's forward
#: pass over 5,000 images was a quarter of an epoch at 64 px on a 2-core CPU (issue 20).
EPOCH_PROJECTION_SAMPLE = 1024


@torch.no_grad()
def _forward_all(
    tower: nn.Module,
    module: nn.Module,
    data: ImageDataset,
    device: torch.device,
    channels_last: bool,
) -> torch.Tensor:
    """Run ``module`` over every image without augmentation.

    With the tower in eval mode (restoring its mode).
    """
    was_training = tower.training
    tower.eval()
    pixels = torch.from_numpy(data.pixels).permute(0, 3, 1, 2)
    chunks = []
    for start in range(0, len(pixels), _EVAL_BATCH):
        batch = normalize_batch(pixels[start : start + _EVAL_BATCH].to(device), data.spec)
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        chunks.append(module(batch).float())
    tower.train(was_training)
    return torch.cat(chunks)


def embed_dataset(
    tower: nn.Module, data: ImageDataset, device: torch.device, channels_last: bool = False
) -> np.ndarray:
    """Embed every image as the tower serves it."""
    return _forward_all(tower, tower, data, device, channels_last).cpu().numpy()


def fit_projection(
    tower: nn.Module,
    data: ImageDataset,
    device: torch.device,
    channels_last: bool = False,
    seed: int = 0,
    sample: int = PROJECTION_SAMPLE,
) -> None:
    """Refit the tower's FeatureProjection (if it has one) to backbone features of training images.

    It sees up to ``sample`` training images, drawn with ``seed``.
    """
    if getattr(tower, "projection", None) is None:
        return
    if len(data) > sample:
        keep = np.sort(np.random.default_rng(seed).choice(len(data), sample, replace=False))
        data = data.rows(keep)
    tower.projection.fit(_forward_all(tower, tower.backbone, data, device, channels_last))
