"""Instance discrimination (NT-Xent, as in SimCLR): two augmented views of an image must find each other.

Labels alone teach a tower only what separates the training identities; with few of them (six
clothing classes, not thousands of people) it learns little that tells new identities apart.
Asking every image to recognise its own other view keeps the detail that labels do not ask for.
Measured on Fashion-MNIST's held-out classes (README, Accuracy) it recovers part of what training
on six classes loses, not all of it, so it is an option (``--instance-weight``), not the default.
"""

from __future__ import annotations

import torch
from torch import nn

#: Softmax temperature of the view-matching term (SimCLR's value for unit-length embeddings).
TEMPERATURE = 0.1


class InstanceLoss(nn.Module):
    """Cross-entropy of picking an image's other view among every other embedding in the batch, times ``weight``."""

    def __init__(self, weight: float = 1.0, temperature: float = TEMPERATURE) -> None:
        super().__init__()
        self.weight, self.temperature = weight, temperature

    def forward(self, embeddings: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
        """``instances[i]`` names the image embedding ``i`` is a view of; each image has exactly two views."""
        unit = nn.functional.normalize(embeddings, dim=1)
        logits = unit @ unit.T / self.temperature
        eye = torch.eye(len(instances), dtype=torch.bool, device=embeddings.device)
        logits = logits.masked_fill(eye, -float("inf"))
        other_view = ((instances[:, None] == instances[None, :]) & ~eye).float().argmax(1)
        return self.weight * nn.functional.cross_entropy(logits, other_view)
