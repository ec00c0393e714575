"""Triplet margin loss on sampled or mined triplets."""

from __future__ import annotations

import torch
from torch import nn

from siamese.training.losses.distances import EuclideanDistance
from siamese.training.losses.reducers import MeanReducer
from siamese.training.losses.tuples import Triplets


def triplet_distances(
    distance: EuclideanDistance,
    embeddings: torch.Tensor,
    triplets: Triplets,
    ref: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(d(a, p), d(a, n)) per triplet; positives and negatives index ``ref`` when given."""
    other = embeddings if ref is None else ref
    anchors = embeddings[triplets.anchor]
    return (
        distance.pairs(anchors, other[triplets.positive]),
        distance.pairs(anchors, other[triplets.negative]),
    )


class TripletLoss(nn.Module):
    """max(d(a, p) − d(a, n) + margin, 0) per triplet, then reduced."""

    consumes = "triplets"

    def __init__(
        self, margin: float = 1.0, distance: EuclideanDistance | None = None, reducer=None
    ) -> None:
        super().__init__()
        self.margin = margin
        self.distance = distance or EuclideanDistance()
        self.reducer = reducer or MeanReducer()

    def forward(
        self, embeddings: torch.Tensor, triplets: Triplets, ref: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Positives and negatives index ``ref`` when given (a pair's other side)."""
        d_ap, d_an = triplet_distances(self.distance, embeddings, triplets, ref)
        return self.reducer(torch.clamp(d_ap - d_an + self.margin, min=0.0))
