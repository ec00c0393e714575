"""Contrastive loss exactly as the seed defines it (Hadsell, Chopra and LeCun, 2006)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ContrastiveLoss(nn.Module):
    """mean((1 − Y)·d² + Y·max(margin − d, 0)²), with Y = 0 for same-identity pairs and 1 otherwise.

    ``d`` is torch's pairwise_distance (Euclidean, with its small eps), as in the seed.
    """

    sampling = "pairs"

    def __init__(self, margin: float = 2.0) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, first: torch.Tensor, second: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        distance = F.pairwise_distance(first, second, keepdim=True)
        target = target.reshape(-1, 1).to(distance.dtype)
        same_term = (1 - target) * distance.pow(2)
        different_term = target * torch.clamp(self.margin - distance, min=0.0).pow(2)
        return torch.mean(same_term + different_term)
