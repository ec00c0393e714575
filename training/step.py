"""One training step's loss, the same code for one process and for several.

DDP only sees what a module's ``forward`` computes, while the trainer needs the tower's training
embedding (and, for the instance term, the backbone's features): :class:`TrainingForward` is that
forward, the module DDP wraps. :func:`step_loss` then gathers the global batch and applies the
loss and miner to it (training/distributed.py says why the gradients need no rescaling).
"""

from __future__ import annotations

import torch
from torch import nn

from siamese.training.distributed import Ranks, gather_batch
from siamese.training.losses import Criterion
from siamese.training.losses.instance import InstanceLoss


class TrainingForward(nn.Module):
    """The tower's training forward pass; holds the instance term so DDP syncs its projector too."""

    def __init__(self, tower: nn.Module, instance_loss: InstanceLoss | None = None) -> None:
        super().__init__()
        self.tower = tower
        self.instance_loss = instance_loss

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings the loss sees, what the instance term compares)."""
        if self.instance_loss is not None and self.instance_loss.on_features:
            features = self.tower.backbone(batch)  # its projector takes the backbone's features
            return self.tower.head(features), features
        embeddings = self.tower.training_embedding(batch)
        return embeddings, embeddings


def _full_precision(tensor: torch.Tensor) -> torch.Tensor:
    """Autocast's half-precision outputs as float32; float32 and float64 stay as they are."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def batch_blocks(criterion: Criterion) -> int:
    """How a batch is laid out: 1 (P×K), 2 ([firsts, seconds]) or 3 ([a, p, n], a triplet each)."""
    if criterion.sampler != "random":
        return 1
    return 2 if criterion.loss.consumes == "pairs" else 3


def step_loss(
    forward: nn.Module,
    criterion: Criterion,
    instance_loss: InstanceLoss | None,
    batch: torch.Tensor,
    labels: torch.Tensor,
    instances: torch.Tensor | None,
    ranks: Ranks,
    autocast=None,
) -> torch.Tensor:
    """The loss of the global batch (this rank's ``batch`` plus every other rank's).

    Ready for backward.

    ``forward`` is a :class:`TrainingForward`, or the DDP module wrapping one.
    """
    if autocast is None:
        embeddings, compared = forward(batch)
    else:
        with autocast():
            embeddings, compared = forward(batch)
    embeddings, compared = _full_precision(embeddings), _full_precision(compared)
    use_instances = instance_loss is not None and instances is not None
    embeddings, labels, compared, instances = gather_batch(
        ranks,
        embeddings,
        labels,
        compared=compared if use_instances else None,
        instances=instances if use_instances else None,
        blocks=batch_blocks(criterion),
    )
    loss = criterion(embeddings, labels)
    if use_instances:  # two views per image: instances name them
        loss = loss + instance_loss(compared, instances)
    return loss
