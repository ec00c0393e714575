"""Reducers: how per-tuple losses become one number."""

from __future__ import annotations

import torch


class MeanReducer:
    """Mean over every tuple (the seed's reduction)."""

    def __call__(self, losses: torch.Tensor) -> torch.Tensor:
        return losses.mean() if losses.numel() else losses.sum()


class NonZeroMeanReducer:
    """Mean over tuples still violating the margin, so easy ones do not dilute it (batch-all)."""

    def __call__(self, losses: torch.Tensor) -> torch.Tensor:
        active = losses > 0
        return losses[active].mean() if active.any() else losses.sum() * 0.0


REDUCERS = {"mean": MeanReducer, "nonzero-mean": NonZeroMeanReducer}
