"""Hoffer and Ailon's triplet-network loss (2015).

A softmax over the two distances, pushed to (0, 1).

For a triplet (anchor x, positive x⁺, negative x⁻) with Euclidean distances d(x, x⁺) and d(x, x⁻):

    d⁺ = e^{d(x, x⁺)} / (e^{d(x, x⁺)} + e^{d(x, x⁻)}),   d⁻ = 1 − d⁺

and the loss is the mean squared error of (d⁺, d⁻) against (0, 1): ((d⁺)² + (d⁻ − 1)²) / 2 = (d⁺)².
The paper writes ‖(d⁺, d⁻ − 1)‖² = 2·(d⁺)², the same objective twice as large. Unlike the margin
loss it never reaches zero: it keeps pulling positives in and pushing negatives out on every
triplet, with a gradient that fades as the ratio of the two distances grows, not at a fixed margin.
"""

from __future__ import annotations

import torch
from torch import nn

from siamese.training.losses.distances import EuclideanDistance
from siamese.training.losses.reducers import MeanReducer
from siamese.training.losses.triplet import triplet_distances
from siamese.training.losses.tuples import Triplets


class SoftmaxTripletLoss(nn.Module):
    """MSE of softmax(d(a, p), d(a, n)) against (0, 1) per triplet, then reduced.

    It has no margin.
    """

    consumes = "triplets"
    #: With ``--sampler random`` its triplets come from pairs of identities
    #: (samplers.sample_class_pair_triplets).
    sampling = "class-pair-triplets"
    margin = None

    def __init__(self, distance: EuclideanDistance | None = None, reducer=None) -> None:
        super().__init__()
        self.distance = distance or EuclideanDistance()
        self.reducer = reducer or MeanReducer()

    def forward(
        self, embeddings: torch.Tensor, triplets: Triplets, ref: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Positives and negatives index ``ref`` when given (a pair's other side)."""
        d_ap, d_an = triplet_distances(self.distance, embeddings, triplets, ref)
        shares = torch.softmax(torch.stack([d_ap, d_an], dim=1), dim=1)  # (d⁺, d⁻) per triplet
        target = shares.new_tensor([0.0, 1.0])
        return self.reducer((shares - target).pow(2).mean(dim=1))
