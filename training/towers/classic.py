"""The classic Siamese network of the tutorials (tower ``classic``; ``seed`` is its former name)."""

from __future__ import annotations

import torch
from torch import nn


class ClassicTower(nn.Module):
    """The classic Siamese network of the tutorials, layer for layer: three padded 3×3 conv blocks
    and a 3-layer MLP (tower ``classic``; ``seed``, the project's first network, is its old name).

    It flattens full-resolution feature maps, so it only accepts the input size it was built for
    (100×100 grey by default), and its embeddings are not normalised. Its last layer is its head:
    ``head_dim`` is also the size it serves.
    """

    normalized = training_normalized = False

    def __init__(
        self, in_channels: int = 1, height: int = 100, width: int = 100, head_dim: int = 5
    ) -> None:
        super().__init__()
        self.embedding_dim = head_dim  # served size
        self.cnn1 = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(in_channels, 4, kernel_size=3),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(4),
            nn.ReflectionPad2d(1),
            nn.Conv2d(4, 8, kernel_size=3),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(8),
            nn.ReflectionPad2d(1),
            nn.Conv2d(8, 8, kernel_size=3),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(8),
        )
        self.fc1 = nn.Sequential(
            nn.Linear(8 * height * width, 500),
            nn.ReLU(inplace=True),
            nn.Linear(500, 500),
            nn.ReLU(inplace=True),
            nn.Linear(500, head_dim),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.cnn1(images)
        return self.fc1(features.reshape(features.size(0), -1))

    def training_embedding(self, images: torch.Tensor) -> torch.Tensor:
        """What the loss sees: the same embedding the tower serves."""
        return self(images)
