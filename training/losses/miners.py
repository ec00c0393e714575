"""Online miners: choose informative pairs or triplets inside a batch of P identities × K images.

Miners see detached distances (mining is selection, not part of the gradient) and return index
tuples; the loss then recomputes distances for just those tuples with gradients. With reference
embeddings (``ref``, as pytorch-metric-learning's ``ref_emb``: a pair's gallery side), anchors
and first items index the embeddings and every other position indexes ``ref``: tuples then
always cross from one side to the other.
"""

from __future__ import annotations

from typing import Any

import torch

from siamese.training.losses.distances import EuclideanDistance
from siamese.training.losses.tuples import Pairs, Triplets


def _masks(
    labels: torch.Tensor, ref_labels: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) masks; an item is never its own positive within one batch."""
    if ref_labels is not None:
        same = labels[:, None] == ref_labels[None, :]
        return same, ~same
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def _detached(ref: torch.Tensor | None) -> torch.Tensor | None:
    return None if ref is None else ref.detach()


class _Miner:
    """What every miner does first: detached distances and the positive and negative masks
    (across the two sides when ``ref`` is given); ``_mine`` picks the tuples from them."""

    distance: EuclideanDistance

    def __call__(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
    ) -> Any:
        d = self.distance.matrix(embeddings.detach(), _detached(ref))
        return self._mine(d, *_masks(labels, ref_labels), crossing=ref is not None)

    def _mine(
        self, d: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, *, crossing: bool
    ) -> Any:
        raise NotImplementedError


class AllPairsMiner(_Miner):
    """Every positive and negative pair of the batch.

    With ``hard_negatives_only`` drop negatives beyond the margin.
    """

    produces = "pairs"

    def __init__(
        self, distance: EuclideanDistance | None = None, margin: float | None = None
    ) -> None:
        self.distance = distance or EuclideanDistance()
        self.margin = margin

    def _mine(
        self, d: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, *, crossing: bool
    ) -> Pairs:
        # within one batch each pair once; across two sides every (embedding, ref) pair
        upper = torch.ones_like(positive) if crossing else torch.ones_like(positive).triu(1)
        if self.margin is not None:
            negative = negative & (d < self.margin)
        pi, pj = torch.nonzero(positive & upper, as_tuple=True)
        ni, nj = torch.nonzero(negative & upper, as_tuple=True)
        target = torch.cat([torch.zeros_like(pi), torch.ones_like(ni)])
        return Pairs(torch.cat([pi, ni]), torch.cat([pj, nj]), target)


class BatchHardMiner(_Miner):
    """For each anchor, its farthest positive and nearest negative (Hermans et al., 2017)."""

    produces = "triplets"

    def __init__(self, distance: EuclideanDistance | None = None) -> None:
        self.distance = distance or EuclideanDistance()

    def _mine(
        self, d: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, *, crossing: bool
    ) -> Triplets:
        valid = positive.any(1) & negative.any(1)
        hardest_positive = torch.where(positive, d, torch.full_like(d, -1.0)).argmax(1)
        hardest_negative = torch.where(negative, d, torch.full_like(d, float("inf"))).argmin(1)
        anchors = torch.nonzero(valid, as_tuple=True)[0]
        return Triplets(anchors, hardest_positive[anchors], hardest_negative[anchors])


class _MarginTripletMiner(_Miner):
    """Shared by the miners that pick triplets relative to a margin."""

    produces = "triplets"

    def __init__(self, margin: float, distance: EuclideanDistance | None = None) -> None:
        self.margin = margin
        self.distance = distance or EuclideanDistance()


class SemiHardMiner(_MarginTripletMiner):
    """Semi-hard negatives (FaceNet): for each (anchor, positive), the nearest such negative.

    The negative is farther than the positive but within the margin.
    """

    def _mine(
        self, d: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, *, crossing: bool
    ) -> Triplets:
        a, p = torch.nonzero(positive, as_tuple=True)
        d_ap = d[a, p][:, None]
        d_an = d[a]
        semi_hard = negative[a] & (d_an > d_ap) & (d_an < d_ap + self.margin)
        candidates = torch.where(semi_hard, d_an, torch.full_like(d_an, float("inf")))
        n = candidates.argmin(1)
        found = semi_hard.any(1)
        return Triplets(a[found], p[found], n[found])


class BatchAllMiner(_MarginTripletMiner):
    """Every valid triplet that still violates the margin (pair with a non-zero-mean reducer)."""

    def _mine(
        self, d: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, *, crossing: bool
    ) -> Triplets:
        violating = (
            positive[:, :, None]
            & negative[:, None, :]
            & (d[:, :, None] - d[:, None, :] + self.margin > 0)
        )
        a, p, n = torch.nonzero(violating, as_tuple=True)
        return Triplets(a, p, n)
