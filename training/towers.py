"""Tower networks: the shared-weight encoder of a Siamese network, chosen by name from TOWERS."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from siamese.errors import ConfigError
from siamese.spec import InputSpec


class SeedTower(nn.Module):
    """The seed's network, layer for layer: three padded 3×3 conv blocks and a 3-layer MLP.

    It flattens full-resolution feature maps, so it only accepts the input size it was built for
    (100×100 grey in the seed), and its embeddings are not normalised.
    """

    normalized = False

    def __init__(self, in_channels: int = 1, height: int = 100, width: int = 100, embedding_dim: int = 5) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
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
            nn.Linear(500, embedding_dim),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.cnn1(images)
        return self.fc1(features.reshape(features.size(0), -1))


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class ConvTower(nn.Module):
    """Compact default tower: VGG-style conv stages, global average pooling, linear embedding head.

    Global pooling makes it accept any input size; L2 normalisation (on by default) puts every
    embedding on the unit sphere, so distances lie in [0, 2] and margins mean the same everywhere.
    """

    def __init__(
        self,
        in_channels: int = 1,
        embedding_dim: int = 128,
        widths: tuple[int, ...] = (16, 32, 64, 128),
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if not widths:
            raise ConfigError("conv tower needs at least one stage width")
        self.embedding_dim = embedding_dim
        self.normalized = normalize
        layers: list[nn.Module] = []
        cin = in_channels
        for stage, width in enumerate(widths):
            layers += _conv_bn_relu(cin, width) + _conv_bn_relu(width, width)
            if stage < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(cin, embedding_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(self.features(images)).flatten(1)
        embedding = self.head(pooled)
        return F.normalize(embedding, dim=1) if self.normalized else embedding


TOWERS: dict[str, type[nn.Module]] = {"seed": SeedTower, "conv": ConvTower}

#: Input size each tower trains at unless told otherwise.
DEFAULT_INPUT_SIZE = {"seed": 100, "conv": 96}


def create_tower(name: str, spec: InputSpec, options: dict[str, Any] | None = None) -> nn.Module:
    """Build a tower by name for the given input spec.

    Args:
        name: a key of TOWERS.
        spec: the input spec (channels, and for the seed tower the exact size).
        options: tower arguments beyond the input (embedding_dim, normalize, widths).

    Raises:
        ConfigError: unknown tower or unknown option.
    """
    if name not in TOWERS:
        raise ConfigError(f"unknown tower {name!r}; choose one of: {', '.join(TOWERS)}")
    options = dict(options or {})
    if name == "seed":
        allowed = {"embedding_dim"}
        args: dict[str, Any] = {"in_channels": spec.channels, "height": spec.height, "width": spec.width}
    else:
        allowed = {"embedding_dim", "normalize", "widths"}
        args = {"in_channels": spec.channels}
        if "widths" in options:
            options["widths"] = tuple(int(w) for w in options["widths"])
    unknown = set(options) - allowed
    if unknown:
        raise ConfigError(f"tower {name!r} does not take option(s): {', '.join(sorted(unknown))}")
    return TOWERS[name](**args, **options)


def count_parameters(tower: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in tower.parameters() if p.requires_grad)
