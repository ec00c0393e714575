"""The tower's first layer: uint8 pixels in, normalised float32 out, with the spec's constants.

Training normalises its (augmented, still uint8) batches with :class:`PixelNormalizer`, and the
exported graph is :class:`PixelInputTower`, which starts with the same module. The constants come
from :func:`siamese.contracts.spec.normalization_constants`, the one definition the engine's host
path
for old float-input models also uses, so no side can drift from the other.
"""

from __future__ import annotations

import torch
from torch import nn

from siamese.contracts.spec import InputSpec, normalization_constants


class PixelNormalizer(nn.Module):
    """``(x - 255·mean) · 1/(255·std)`` per channel on N×C×H×W pixels (uint8, or floats 0..255)."""

    def __init__(self, spec: InputSpec) -> None:
        super().__init__()
        shift, scale = normalization_constants(spec)
        # Buffers, not parameters: constants of the model, exported into the graph, never trained.
        self.register_buffer("shift", torch.from_numpy(shift).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("scale", torch.from_numpy(scale).view(1, -1, 1, 1), persistent=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels.to(torch.float32) - self.shift) * self.scale


class PixelInputTower(nn.Module):
    """A tower that takes uint8 pixels: what ``siamese export`` traces into model.onnx."""

    def __init__(self, tower: nn.Module, spec: InputSpec) -> None:
        super().__init__()
        self.normalize = PixelNormalizer(spec)
        self.tower = tower

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.tower(self.normalize(pixels))
