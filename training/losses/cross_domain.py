"""Losses across the two sides of a pseudo-siamese pair: query embeddings against gallery ones.

Each compares every query of the batch with the gallery items (the reference embeddings) and
never two items of one side: the towers are trained to meet in one space, not to cluster each
domain on its own. The contrastive and triplet losses are the single tower's own, with its own
miners, given the gallery side as reference embeddings (losses.Criterion):

- ``contrastive``: the classic contrastive loss (Hadsell, Chopra and LeCun, 2006) as siamese
  defines it for one tower (losses/contrastive.py), ``(1 − Y)·d² + Y·max(margin − d, 0)²`` with
  Y = 0 for the same identity and 1 otherwise, averaged over all N × M cross-domain pairs.
- ``triplet``: the anchor is a query, positive and negative are gallery items;
  ``max(d(a, p) − d(a, n) + margin, 0)``, batch-hard (each anchor's farthest positive and nearest
  negative) or batch-all (the mean over the triplets that still violate the margin).
- ``symmetric-ce`` (:class:`SymmetricCrossEntropy`): the dual-encoder (CLIP) loss, which has no
  single-tower counterpart here. Logits are cosine similarities over the temperature;
  cross-entropy from each query to the gallery and from each gallery item to the queries,
  averaged. A batch with K items per identity has several right answers per row: the target
  spreads evenly over them (with K = 1 this is CLIP's loss exactly). The temperature is learnt
  (as log 1/τ, clamped so 1/τ ≤ 100) or fixed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from siamese.training.losses import Criterion
from siamese.training.losses.contrastive import ContrastiveLoss
from siamese.training.losses.distances import EuclideanDistance
from siamese.training.losses.miners import AllPairsMiner, BatchAllMiner, BatchHardMiner
from siamese.training.losses.reducers import MeanReducer, NonZeroMeanReducer
from siamese.training.losses.triplet import TripletLoss

CROSS_LOSSES = ("symmetric-ce", "contrastive", "triplet")
DEFAULT_MARGINS = {"contrastive": 1.0, "triplet": 0.2}
INITIAL_TEMPERATURE = 0.07


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
        ref: torch.Tensor,
        ref_labels: torch.Tensor,
    ) -> torch.Tensor:
        """Queries against the reference (gallery) embeddings, as every loss is called."""
        scale = self.log_scale.clamp(max=math.log(100.0)).exp()
        logits = scale * F.normalize(queries, dim=1) @ F.normalize(ref, dim=1).T
        same = (query_labels[:, None] == ref_labels[None, :]).to(logits.dtype)
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
    """The cross-domain loss by name (one of CROSS_LOSSES), called as
    ``loss(queries, query_labels, ref=gallery, ref_labels=gallery_labels)``."""
    distance = EuclideanDistance()
    if name == "contrastive":
        margin = DEFAULT_MARGINS[name] if margin is None else margin
        loss = ContrastiveLoss(margin=margin, distance=distance, reducer=MeanReducer())
        return Criterion(loss, AllPairsMiner(distance), "pk", name, "all-pairs")
    if name == "triplet":
        margin = DEFAULT_MARGINS[name] if margin is None else margin
        mining = miner or "batch-hard"
        if mining not in ("batch-hard", "batch-all"):
            raise ValueError(f"cross-domain triplets mine batch-hard or batch-all, not {mining!r}")
        reducer = NonZeroMeanReducer() if mining == "batch-all" else MeanReducer()
        loss = TripletLoss(margin=margin, distance=distance, reducer=reducer)
        mined = (
            BatchAllMiner(margin, distance) if mining == "batch-all" else BatchHardMiner(distance)
        )
        return Criterion(loss, mined, "pk", name, mining)
    if name == "symmetric-ce":
        return SymmetricCrossEntropy(temperature)
    raise ValueError(
        f"unknown cross-domain loss {name!r}; choose one of: {', '.join(CROSS_LOSSES)}"
    )
