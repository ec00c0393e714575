"""Triplet margin loss: an anchor must be closer to its positive than to its negative by a margin."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TripletLoss(nn.Module):
    """mean(max(d(a, p) − d(a, n) + margin, 0)) with Euclidean distances."""

    sampling = "triplets"

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        return F.triplet_margin_loss(anchor, positive, negative, margin=self.margin)
