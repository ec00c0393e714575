"""Arithmetic per training image.

What the tower's forward and backward passes cost, counted by torch.

Counted with torch.utils.flop_counter.FlopCounterMode on the training path (``training_embedding``,
in train mode), per image: a figure to set images/s against a machine's arithmetic peak. It counts
the matrix products and convolutions (multiply and add = 2 FLOPs), not element-wise work.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from siamese.contracts.spec import InputSpec


def training_flops(tower: nn.Module, spec: InputSpec, batch: int = 4) -> dict[str, int]:
    """FLOPs per image of one training step's forward and backward pass (weights left untouched)."""
    was_training = tower.training
    tower.train()
    device = next(tower.parameters()).device
    images = torch.zeros(batch, spec.channels, spec.height, spec.width, device=device)
    saved = {k: v.detach().clone() for k, v in tower.state_dict().items()}  # batch-norm statistics
    try:
        with FlopCounterMode(display=False) as forward:
            output = tower.training_embedding(images)
        with FlopCounterMode(display=False) as backward:
            output.float().pow(2).sum().backward()
    finally:
        tower.zero_grad(set_to_none=True)
        tower.load_state_dict(saved)
        tower.train(was_training)
    return {
        "forward": forward.get_total_flops() // batch,
        "backward": backward.get_total_flops() // batch,
    }
