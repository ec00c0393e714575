"""Instance discrimination (NT-Xent, as in SimCLR).

Two augmented views of an image must find each other.

Labels alone teach a tower only what separates the training identities; with few of them (six
clothing classes, not thousands of people) it learns little that tells new identities apart.
Asking every image to recognise its own other view keeps the detail that labels do not ask for.
Measured on Fashion-MNIST's held-out classes (docs/benchmarks/accuracy.md) it recovers a little
of what training on six classes loses, for twice the compute, so it is an option
(``--instance-weight``), not the default.
"""

from __future__ import annotations

import torch
from torch import nn

#: Softmax temperature of the view-matching term (SimCLR's value for unit-length embeddings).
TEMPERATURE = 0.1


#: Width of the projector's hidden layer and output (SimCLR's MLP, scaled to a small tower).
PROJECTOR_HIDDEN, PROJECTOR_OUT = 512, 128


class InstanceLoss(nn.Module):
    """Cross-entropy of picking an image's other view among every other embedding, times ``weight``.

    With ``in_features`` the term has its own projector (an MLP, as in SimCLR) and takes the
    backbone's features, not the served head's output: the supervised loss wants a training
    identity's images together, this term wants every image apart, and in one shared head they
    fight. Through a projector of its own it shapes only the backbone, whose principal components
    the tower serves; the projector is thrown away after training.
    """

    def __init__(
        self, weight: float = 1.0, temperature: float = TEMPERATURE, in_features: int | None = None
    ) -> None:
        super().__init__()
        self.weight, self.temperature = weight, temperature
        self.on_features = bool(in_features)
        self.projector = (
            nn.Sequential(
                nn.Linear(in_features, PROJECTOR_HIDDEN),
                nn.ReLU(inplace=True),
                nn.Linear(PROJECTOR_HIDDEN, PROJECTOR_OUT),
            )
            if self.on_features
            else nn.Identity()
        )

    def forward(self, embeddings: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
        """``instances[i]`` names the image embedding ``i`` is a view of.

        Each image has exactly two views.
        """
        unit = nn.functional.normalize(self.projector(embeddings), dim=1)
        logits = unit @ unit.T / self.temperature
        eye = torch.eye(len(instances), dtype=torch.bool, device=embeddings.device)
        logits = logits.masked_fill(eye, -float("inf"))
        other_view = ((instances[:, None] == instances[None, :]) & ~eye).float().argmax(1)
        return self.weight * nn.functional.cross_entropy(logits, other_view)
