"""Metric-learning losses, chosen by name from LOSSES."""

from __future__ import annotations

from torch import nn

from siamese.errors import ConfigError
from siamese.training.losses.contrastive import ContrastiveLoss
from siamese.training.losses.triplet import TripletLoss

LOSSES: dict[str, type[nn.Module]] = {"contrastive": ContrastiveLoss, "triplet": TripletLoss}

#: Default margins: the seed's 2.0 for raw embeddings; smaller ones for unit-length embeddings,
#: whose distances lie in [0, 2].
DEFAULT_MARGINS = {
    ("contrastive", False): 2.0,
    ("contrastive", True): 1.0,
    ("triplet", False): 1.0,
    ("triplet", True): 0.2,
}


def create_loss(name: str, margin: float | None, normalized: bool) -> nn.Module:
    """Build a loss by name; ``margin=None`` takes the default for (un)normalised embeddings."""
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
    if margin is None:
        margin = DEFAULT_MARGINS[(name, normalized)]
    if margin <= 0:
        raise ConfigError(f"margin must be positive, got {margin}")
    return LOSSES[name](margin=margin)


__all__ = ["LOSSES", "DEFAULT_MARGINS", "ContrastiveLoss", "TripletLoss", "create_loss"]
