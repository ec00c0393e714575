"""Validation on identities held out from training: the numbers that pick the checkpoint to keep."""

from __future__ import annotations

import numpy as np

from siamese.core.metrics import retrieval_metrics, sample_pair_distances, verification_metrics


def validation_metrics(
    embeddings: np.ndarray, labels: np.ndarray, seed: int = 0
) -> dict[str, float]:
    """Leave-one-out recall@1/5, mAP@R, verification ROC-AUC and EER over held-out identities."""
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
