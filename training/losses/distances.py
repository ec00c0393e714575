"""Distances between embeddings: Euclidean, as FAISS's L2 search uses at query time."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class EuclideanDistance:
    """Euclidean distance; ``eps`` (pairwise_distance's default) keeps the gradient finite at 0."""

    def __init__(self, eps: float = 1e-6) -> None:
        self.eps = eps

    def pairs(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """Distance of each row of ``first`` to the same row of ``second``."""
        return F.pairwise_distance(first, second, eps=self.eps)

    def matrix(self, embeddings: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        """Distances of every embedding to every other (or to every ``ref`` embedding).

        For mining; differentiable away from zero.
        """
        other = embeddings if ref is None else ref
        squared = torch.cdist(embeddings, other, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
        return squared.clamp_min(0).add(self.eps**2).sqrt()
