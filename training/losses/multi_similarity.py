"""Multi-similarity loss (Wang et al., CVPR 2019) with its built-in pair mining.

On unit-length embeddings.
"""

from __future__ import annotations

import torch
from torch import nn


class MultiSimilarityLoss(nn.Module):
    """Weights every pair of a batch by its own and its neighbours' cosine similarity.

    Mining keeps negatives more similar than the anchor's hardest positive minus ``epsilon`` and
    positives less similar than its hardest negative plus ``epsilon``. ``margin`` is the paper's λ.
    """

    consumes = "batch"

    def __init__(
        self, margin: float = 0.5, alpha: float = 2.0, beta: float = 50.0, epsilon: float = 0.1
    ) -> None:
        super().__init__()
        self.margin, self.alpha, self.beta, self.epsilon = margin, alpha, beta, epsilon

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """With ``ref``: each embedding against the reference embeddings (a pair's other side)."""
        unit = nn.functional.normalize(embeddings, dim=1)
        if ref is None:
            sim = unit @ unit.T
            same = labels[:, None] == labels[None, :]
            eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
            positive, negative = same & ~eye, ~same
        else:
            assert ref_labels is not None
            sim = unit @ nn.functional.normalize(ref, dim=1).T
            positive = labels[:, None] == ref_labels[None, :]
            negative = ~positive
        neg_inf, pos_inf = torch.full_like(sim, -float("inf")), torch.full_like(sim, float("inf"))
        hardest_negative = torch.where(negative, sim, neg_inf).amax(1, keepdim=True)
        hardest_positive = torch.where(positive, sim, pos_inf).amin(1, keepdim=True)
        keep_positive = positive & (sim - self.epsilon < hardest_negative)
        keep_negative = negative & (sim + self.epsilon > hardest_positive)
        pos_term = torch.where(
            keep_positive, torch.exp(-self.alpha * (sim - self.margin)), torch.zeros_like(sim)
        ).sum(1)
        neg_term = torch.where(
            keep_negative, torch.exp(self.beta * (sim - self.margin)), torch.zeros_like(sim)
        ).sum(1)
        per_anchor = torch.log1p(pos_term) / self.alpha + torch.log1p(neg_term) / self.beta
        active = keep_positive.any(1) | keep_negative.any(1)
        return per_anchor[active].mean() if active.any() else sim.sum() * 0.0
