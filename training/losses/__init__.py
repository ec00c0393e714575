"""Metric-learning criteria: a loss, and how its tuples are found (sampled, or mined in P×K).

Distance, miner and reducer are separate strategy objects (pytorch-metric-learning style), so
contrastive and triplet losses share mining and distance code.
"""

from __future__ import annotations

from typing import Any, get_args

import torch
from torch import nn

from siamese.core.errors import ConfigError, named
from siamese.training import config
from siamese.training.losses.contrastive import ContrastiveLoss
from siamese.training.losses.distances import EuclideanDistance
from siamese.training.losses.miners import (
    AllPairsMiner,
    BatchAllMiner,
    BatchHardMiner,
    SemiHardMiner,
)
from siamese.training.losses.multi_similarity import MultiSimilarityLoss
from siamese.training.losses.reducers import MeanReducer, NonZeroMeanReducer
from siamese.training.losses.softmax_triplet import SoftmaxTripletLoss
from siamese.training.losses.triplet import TripletLoss
from siamese.training.losses.tuples import Pairs, Triplets, explicit_pairs, explicit_triplets

LOSSES: dict[str, type[nn.Module]] = {
    "contrastive": ContrastiveLoss,
    "triplet": TripletLoss,
    "multi-similarity": MultiSimilarityLoss,
    "triplet-softmax": SoftmaxTripletLoss,
}
#: Miners each loss accepts with P×K batches; the first is the default.
MINERS: dict[str, tuple[str, ...]] = {
    "contrastive": ("hard-pairs", "all-pairs"),
    "triplet": ("batch-hard", "semi-hard", "batch-all"),
    "multi-similarity": ("builtin",),
    "triplet-softmax": ("batch-hard",),
}
#: Default margins: the seed's 2.0 for raw embeddings; smaller ones for unit-length embeddings,
#: whose distances lie in [0, 2]. Multi-similarity's is a cosine similarity (the paper's λ).
DEFAULT_MARGINS = {
    ("contrastive", False): 2.0,
    ("contrastive", True): 1.0,
    ("triplet", False): 1.0,
    ("triplet", True): 0.2,
    ("multi-similarity", False): 0.5,
    ("multi-similarity", True): 0.5,
}
SAMPLERS = get_args(config.SamplerName)
if set(LOSSES) != set(get_args(config.LossName)) or {
    "none",
    *(m for ms in MINERS.values() for m in ms),
} != set(
    get_args(config.MinerName)
):  # TrainConfig's choices (what the command line offers) are the ones built here
    raise ImportError("training/config.py's loss or miner names differ from training/losses'")


class Criterion(nn.Module):
    """A loss with its tuple source: the one interface of every loss, single tower or pair.

    ``sampler="random"`` draws seed-style pairs/triplets, ``"pk"`` mines batches. Reference
    embeddings (``ref``, ``ref_labels``; pytorch-metric-learning's ``ref_emb``) make it a
    cross-domain loss: every tuple then has its anchor (or first item) among the embeddings and
    its other items among the references, so a pair's query tower meets its gallery tower
    through the same losses and miners a single tower trains with.
    """

    def __init__(
        self, loss: nn.Module, miner: Any, sampler: str, loss_name: str, miner_name: str
    ) -> None:
        super().__init__()
        self.loss, self.miner = loss, miner
        self.sampler, self.loss_name, self.miner_name = sampler, loss_name, miner_name

    @property
    def margin(self) -> float | None:
        """The loss margin in use (None for a loss without one)."""
        return None if self.loss.margin is None else float(self.loss.margin)

    @property
    def tuple_kind(self) -> str:
        """What ``--sampler random`` draws for this loss.

        Pairs, triplets, or its own kind of triplets.
        """
        return getattr(self.loss, "sampling", self.loss.consumes)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Loss of one batch: P×K images mined here, or sampled tuples laid out block-wise.

        Sampled tuples come as [firsts, seconds] or [a, p, n] (one side only).
        """
        if self.sampler == "random":
            if self.loss.consumes == "pairs":
                half = len(labels) // 2
                return self.loss(
                    embeddings, explicit_pairs(half, (labels[:half] != labels[half:]).long())
                )
            return self.loss(embeddings, explicit_triplets(len(labels) // 3, embeddings.device))
        if self.miner is None:
            if ref is None:
                return self.loss(embeddings, labels)
            return self.loss(embeddings, labels, ref, ref_labels)
        tuples = self.miner(embeddings, labels, ref, ref_labels)
        return self.loss(embeddings, tuples) if ref is None else self.loss(embeddings, tuples, ref)

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary for config.json."""
        return {
            "name": self.loss_name,
            "margin": self.margin,
            "miner": self.miner_name,
            "sampler": self.sampler,
        }


#: The random sampler draws pairs or triplets itself: a miner would have nothing to choose from.
_NO_MINER = (
    f"the random sampler ({named('sampler')} random) draws pairs/triplets directly; it takes no "
    f"miner ({named('miner')})"
)


def create_criterion(
    name: str,
    *,
    margin: float | None,
    normalized: bool,
    sampler: str = "pk",
    miner: str | None = None,
) -> Criterion:
    """Build a loss and its miner by name, validating that they fit together.

    Raises:
        ConfigError: unknown loss/miner/sampler, or a combination that cannot work.
    """
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
    if sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {sampler!r}; choose one of: {', '.join(SAMPLERS)}")
    if name == "triplet-softmax":
        return _softmax_triplet(sampler, miner, margin)
    margin = DEFAULT_MARGINS[(name, normalized)] if margin is None else margin
    if margin <= 0:
        raise ConfigError(f"margin must be positive, got {margin}")
    if sampler == "random":
        if name == "multi-similarity":
            raise ConfigError(
                f"the multi-similarity loss needs P×K batches ({named('sampler')} pk)"
            )
        if miner not in (None, "none"):
            raise ConfigError(_NO_MINER)
        return Criterion(LOSSES[name](margin=margin), None, sampler, name, "none")
    miner = miner or MINERS[name][0]
    if miner not in MINERS[name]:
        raise ConfigError(
            f"loss {name!r} works with miners: {', '.join(MINERS[name])}; got {miner!r}"
        )
    distance = EuclideanDistance()
    reducer = NonZeroMeanReducer() if miner == "batch-all" else MeanReducer()
    if name == "multi-similarity":
        return Criterion(MultiSimilarityLoss(margin=margin), None, sampler, name, miner)
    loss = LOSSES[name](margin=margin, distance=distance, reducer=reducer)
    mining = {
        "all-pairs": lambda: AllPairsMiner(distance),
        "hard-pairs": lambda: AllPairsMiner(distance, margin=margin),
        "batch-hard": lambda: BatchHardMiner(distance),
        "semi-hard": lambda: SemiHardMiner(margin, distance),
        "batch-all": lambda: BatchAllMiner(margin, distance),
    }[miner]()
    return Criterion(loss, mining, sampler, name, miner)


def _softmax_triplet(sampler: str, miner: str | None, margin: float | None) -> Criterion:
    """Hoffer and Ailon's loss: class-pair triplets with ``--sampler random``, batch-hard in P×K."""
    if margin is not None:
        raise ConfigError(
            f"the triplet-softmax loss has no margin; leave the margin ({named('margin')}) out"
        )
    loss = SoftmaxTripletLoss()
    if sampler == "random":
        if miner not in (None, "none"):
            raise ConfigError(_NO_MINER)
        return Criterion(loss, None, sampler, "triplet-softmax", "none")
    miner = miner or MINERS["triplet-softmax"][0]
    if miner not in MINERS["triplet-softmax"]:
        raise ConfigError(
            f"loss 'triplet-softmax' works with miners: {', '.join(MINERS['triplet-softmax'])}; "
            f"got {miner!r}"
        )
    return Criterion(loss, BatchHardMiner(loss.distance), sampler, "triplet-softmax", miner)


__all__ = [
    "DEFAULT_MARGINS",
    "LOSSES",
    "MINERS",
    "SAMPLERS",
    "AllPairsMiner",
    "BatchAllMiner",
    "BatchHardMiner",
    "ContrastiveLoss",
    "Criterion",
    "EuclideanDistance",
    "MultiSimilarityLoss",
    "Pairs",
    "SemiHardMiner",
    "SoftmaxTripletLoss",
    "TripletLoss",
    "Triplets",
    "create_criterion",
]
