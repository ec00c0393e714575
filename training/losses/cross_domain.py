"""Losses across the two sides of a pseudo-siamese pair: query embeddings against gallery ones.

Each takes ``queries`` (N × D, from the query tower) with their identity labels and ``gallery``
(M × D, from the gallery tower) with theirs, and compares every query with every gallery item of
the batch, never two items of one side: the towers are trained to meet in one space, not to
cluster each domain on its own.

- :class:`CrossContrastiveLoss`: the classic contrastive loss (Hadsell, Chopra and LeCun, 2006) as
  siamese defines it for one tower (losses/contrastive.py), ``(1 − Y)·d² + Y·max(margin − d, 0)²``
  with Y = 0 for the same identity and 1 otherwise, averaged over all N × M cross-domain pairs.
- :class:`CrossTripletLoss`: the anchor is a query, positive and negative are gallery items;
  ``max(d(a, p) − d(a, n) + margin, 0)``, batch-hard (each anchor's farthest positive and nearest
  negative) or batch-all (the mean over the triplets that still violate the margin).
- :class:`SymmetricCrossEntropy`: the dual-encoder (CLIP) loss. Logits are cosine similarities
  over the temperature; cross-entropy from each query to the gallery and from each gallery item
  to the queries, averaged. A batch with K items per identity has several right answers per row:
  the target spreads evenly over them (with K = 1 this is CLIP's loss exactly). The temperature
  is learnt (as log 1/τ, clamped so 1/τ ≤ 100) or fixed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

CROSS_LOSSES = ("symmetric-ce", "contrastive", "triplet")
DEFAULT_MARGINS = {"contrastive": 1.0, "triplet": 0.2}
INITIAL_TEMPERATURE = 0.07


def cross_distances(queries: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """Euclidean distances N × M, with a gradient that stays finite at distance 0."""
    squared = (queries[:, None, :] - gallery[None, :, :]).pow(2).sum(-1)
    return squared.clamp(min=1e-12).sqrt()


def _same(query_labels: torch.Tensor, gallery_labels: torch.Tensor) -> torch.Tensor:
    return query_labels[:, None] == gallery_labels[None, :]


class CrossContrastiveLoss(nn.Module):
    """Contrastive loss over every query × gallery pair of the batch (module docstring)."""

    def __init__(self, margin: float = DEFAULT_MARGINS["contrastive"]) -> None:
        super().__init__()
        self.margin = margin

    def forward(
        self,
        queries: torch.Tensor,
        query_labels: torch.Tensor,
        gallery: torch.Tensor,
        gallery_labels: torch.Tensor,
    ) -> torch.Tensor:
        d = cross_distances(queries, gallery)
        different = (~_same(query_labels, gallery_labels)).to(d.dtype)  # Y: 0 same, 1 different
        losses = (1 - different) * d.pow(2) + different * (self.margin - d).clamp(min=0).pow(2)
        return losses.mean()


class CrossTripletLoss(nn.Module):
    """Query anchors, gallery positives and negatives (module docstring)."""

    def __init__(self, margin: float = DEFAULT_MARGINS["triplet"], mining: str = "batch-hard"):
        super().__init__()
        if mining not in ("batch-hard", "batch-all"):
            raise ValueError(f"cross-domain triplets mine batch-hard or batch-all, not {mining!r}")
        self.margin, self.mining = margin, mining

    def forward(
        self,
        queries: torch.Tensor,
        query_labels: torch.Tensor,
        gallery: torch.Tensor,
        gallery_labels: torch.Tensor,
    ) -> torch.Tensor:
        d = cross_distances(queries, gallery)
        same = _same(query_labels, gallery_labels)
        usable = same.any(1) & (~same).any(1)  # anchors with a positive and a negative
        if not usable.any():
            return d.sum() * 0.0  # no triplet in this batch: no gradient, no NaN
        d, same = d[usable], same[usable]
        if self.mining == "batch-hard":
            hardest_positive = d.masked_fill(~same, -math.inf).amax(1)
            hardest_negative = d.masked_fill(same, math.inf).amin(1)
            return (hardest_positive - hardest_negative + self.margin).clamp(min=0).mean()
        # batch-all: every (anchor, positive, negative); mean over those with a positive loss
        losses = (d[:, :, None] - d[:, None, :] + self.margin).clamp(min=0)
        valid = same[:, :, None] & ~same[:, None, :]
        violating = valid & (losses > 0)
        if not violating.any():
            return losses.sum() * 0.0
        return losses[violating].mean()


class SymmetricCrossEntropy(nn.Module):
    """CLIP's symmetric cross-entropy over the batch's similarity matrix (module docstring)."""

    def __init__(self, temperature: float | None = None) -> None:
        super().__init__()
        self.learnt = temperature is None
        start = math.log(1.0 / (temperature or INITIAL_TEMPERATURE))
        if self.learnt:
            self.log_scale = nn.Parameter(torch.tensor(start))
        else:
            self.register_buffer("log_scale", torch.tensor(start))

    @property
    def temperature(self) -> float:
        return float(1.0 / self.log_scale.detach().clamp(max=math.log(100.0)).exp())

    def forward(
        self,
        queries: torch.Tensor,
        query_labels: torch.Tensor,
        gallery: torch.Tensor,
        gallery_labels: torch.Tensor,
    ) -> torch.Tensor:
        scale = self.log_scale.clamp(max=math.log(100.0)).exp()
        logits = scale * F.normalize(queries, dim=1) @ F.normalize(gallery, dim=1).T
        same = _same(query_labels, gallery_labels).to(logits.dtype)
        rows, columns = same.sum(1) > 0, same.sum(0) > 0
        to_gallery = -(same / same.sum(1, keepdim=True).clamp(min=1)) * logits.log_softmax(1)
        to_queries = -(same / same.sum(0, keepdim=True).clamp(min=1)) * logits.log_softmax(0)
        return 0.5 * (to_gallery.sum(1)[rows].mean() + to_queries.sum(0)[columns].mean())


def create_cross_loss(
    name: str,
    margin: float | None = None,
    temperature: float | None = None,
    miner: str | None = None,
) -> nn.Module:
    """The cross-domain loss by name (one of CROSS_LOSSES)."""
    if name == "contrastive":
        return CrossContrastiveLoss(DEFAULT_MARGINS[name] if margin is None else margin)
    if name == "triplet":
        return CrossTripletLoss(
            DEFAULT_MARGINS[name] if margin is None else margin, miner or "batch-hard"
        )
    if name == "symmetric-ce":
        return SymmetricCrossEntropy(temperature)
    raise ValueError(
        f"unknown cross-domain loss {name!r}; choose one of: {', '.join(CROSS_LOSSES)}"
    )
