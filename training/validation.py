"""Validation on identities held out from training: the numbers that pick the checkpoint to keep."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from siamese.metrics import retrieval_metrics, sample_pair_distances, verification_metrics
from siamese.training.batches import normalize_batch
from siamese.training.data import ImageDataset

_EVAL_BATCH = 256


@torch.no_grad()
def embed_dataset(tower: nn.Module, data: ImageDataset, device: torch.device, channels_last: bool = False) -> np.ndarray:
    """Embed every image without augmentation, in eval mode (restoring the previous mode)."""
    was_training = tower.training
    tower.eval()
    pixels = torch.from_numpy(data.pixels).permute(0, 3, 1, 2)
    chunks = []
    for start in range(0, len(pixels), _EVAL_BATCH):
        batch = normalize_batch(pixels[start : start + _EVAL_BATCH].to(device), data.spec)
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        chunks.append(tower(batch).float().cpu())
    tower.train(was_training)
    return torch.cat(chunks).numpy()


def validation_metrics(embeddings: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Leave-one-out recall@1/5 and mAP@R, plus verification ROC-AUC and EER, over held-out identities."""
    retrieval = retrieval_metrics(embeddings, labels, ks=(1, 5))
    same, different = sample_pair_distances(embeddings, labels, max_pairs=50_000, seed=seed)
    verification = verification_metrics(same, different, fars=())
    return {
        "recall_at_1": retrieval["recall_at_1"],
        "recall_at_5": retrieval["recall_at_5"],
        "map_at_r": retrieval["map_at_r"],
        "roc_auc": verification["roc_auc"],
        "eer": verification["eer"],
    }
