"""The conv tower's backbone: compact VGG-style stages, pooled to a small grid (tower ``conv``)."""

from __future__ import annotations

from torch import nn

from siamese.core.errors import ConfigError
from siamese.training.config import FIRST_CONV_WIDTHS


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


def conv_backbone(
    in_channels: int = 1, widths: tuple[int, ...] = FIRST_CONV_WIDTHS, grid: int = 1
) -> tuple[nn.Module, int]:
    """Compact VGG-style stages (two 3×3 convs, 2×2 max-pool), average-pooled to a grid × grid map.

    Any input size is accepted.

    ``grid=1`` is global average pooling. A larger grid keeps where a feature sits, which is part of
    an identity in centred or aligned images (a boot's shaft, a face's eyes): on Fashion-MNIST's
    held-out classes a 4 × 4 grid lifted the backbone features' mAP@R from 0.54 to 0.62 (6-epoch
    probes).

    The defaults are what runs that did not record ``widths`` or ``grid`` were trained with, so they
    still load; the training recipe's own values live in TrainConfig and are always recorded.
    Wider stages transfer better from few classes at 2.24× the multiply-adds for 24-48-96-192
    (docs/benchmarks/accuracy.md), which makes fp32 CPU embedding inference-bound; hence not the
    default.
    """
    if not widths:
        raise ConfigError("conv tower needs at least one stage width")
    if grid < 1:
        raise ConfigError(f"conv tower grid must be at least 1, got {grid}")
    layers: list[nn.Module] = []
    cin = in_channels
    for stage, width in enumerate(widths):
        layers += _conv_bn_relu(cin, width) + _conv_bn_relu(width, width)
        if stage < len(widths) - 1:
            layers.append(nn.MaxPool2d(2))
        cin = width
    layers += [nn.AdaptiveAvgPool2d(grid), nn.Flatten()]
    return nn.Sequential(*layers), cin * grid * grid
