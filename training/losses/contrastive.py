"""Contrastive loss exactly as the seed defines it (Hadsell, Chopra and LeCun, 2006).

On sampled or mined pairs.
"""

from __future__ import annotations

import torch
from torch import nn

from siamese.training.losses.distances import EuclideanDistance
from siamese.training.losses.reducers import MeanReducer
from siamese.training.losses.tuples import Pairs


class ContrastiveLoss(nn.Module):
    """(1 − Y)·d² + Y·max(margin − d, 0)² per pair, then reduced.

    Y = 0 for same identity and 1 otherwise. With the default distance (pairwise_distance, eps
    1e-6) and mean reduction this is the seed's loss.
    """

    consumes = "pairs"

    def __init__(
        self, margin: float = 2.0, distance: EuclideanDistance | None = None, reducer=None
    ) -> None:
        super().__init__()
        self.margin = margin
        self.distance = distance or EuclideanDistance()
        self.reducer = reducer or MeanReducer()

    def forward(
        self, embeddings: torch.Tensor, pairs: Pairs, ref: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``pairs.second`` indexes ``ref`` when given (a pair's other side)."""
        other = embeddings if ref is None else ref
        d = self.distance.pairs(embeddings[pairs.first], other[pairs.second])
        target = pairs.target.to(d.dtype)
        losses = (1 - target) * d.pow(2) + target * torch.clamp(self.margin - d, min=0.0).pow(2)
        return self.reducer(losses)
