"""Index tuples that miners produce and losses consume (positions in one batch of embeddings)."""

from __future__ import annotations

from typing import NamedTuple

import torch


class Pairs(NamedTuple):
    """Pairs (first[i], second[i]); target 0 = same identity, 1 = different (as in the seed)."""

    first: torch.Tensor
    second: torch.Tensor
    target: torch.Tensor


class Triplets(NamedTuple):
    """(anchor, positive, negative) triplets.

    Positive shares the anchor's identity, negative does not.
    """

    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor


def explicit_pairs(batch: int, target: torch.Tensor) -> Pairs:
    """Pairs laid out as [first₀…first_{B-1}, second₀…second_{B-1}] (seed-style sampled pairs)."""
    index = torch.arange(batch, device=target.device)
    return Pairs(index, index + batch, target)


def explicit_triplets(batch: int, device: torch.device) -> Triplets:
    """Triplets laid out as [anchors, positives, negatives] (sampled triplets)."""
    index = torch.arange(batch, device=device)
    return Triplets(index, index + batch, index + 2 * batch)
