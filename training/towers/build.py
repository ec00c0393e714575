"""Build a tower by name: the registry entry's network, its head, and its starting weights."""

from __future__ import annotations

from typing import Any

from torch import nn

from siamese.contracts.spec import InputSpec
from siamese.core.errors import ConfigError, named
from siamese.training.towers.classic import ClassicTower
from siamese.training.towers.conv import conv_backbone
from siamese.training.towers.heads import EmbeddingTower
from siamese.training.towers.registry import TowerEntry, tower_entry
from siamese.training.towers.torchvision_backbones import torchvision_backbone
from siamese.training.towers.weights import load_file_into_backbone, timm_weights


def create_tower(
    name: str,
    spec: InputSpec,
    options: dict[str, Any] | None = None,
    pretrained: str | None = None,
) -> nn.Module:
    """Build a tower by name for the given input spec.

    Args:
        name: a registry name (training/towers/registry.py); "seed" is the classic tower's.
        spec: the input spec (channels, and the size for towers built for one size).
        options: head_dim (``embedding_dim`` in runs written before the rename), normalize,
            batch_norm (head), embed_from ("both", "features" or "head"), widths and grid (conv).
        pretrained: the backbone's starting weights: None (random), "imagenet" (packaged when
            installed, else timm's hub), "hub", "packaged", or a local file.

    Raises:
        ConfigError: unknown tower, unknown option, or weights that cannot be had or do not fit.
    """
    entry = tower_entry(name)
    options = dict(options or {})
    if "embedding_dim" in options and "head_dim" not in options:  # the option's former name
        options["head_dim"] = options.pop("embedding_dim")
    unknown = set(options) - entry.options
    if unknown:
        raise ConfigError(
            f"tower {entry.name!r} does not take option(s): {', '.join(sorted(unknown))}"
        )
    if pretrained and not entry.pretrained:
        raise ConfigError(
            f"the {entry.name!r} tower trains from scratch; starting weights "
            f"({named('pretrained')}) need a timm or torchvision backbone"
        )
    if entry.name == "classic":
        return ClassicTower(spec.channels, spec.height, spec.width, **options)
    backbone, features = _backbone(entry, spec, options, pretrained)
    return EmbeddingTower(backbone, features, **options)


def _backbone(
    entry: TowerEntry, spec: InputSpec, options: dict[str, Any], pretrained: str | None
) -> tuple[nn.Module, int]:
    if entry.family == "siamese":  # conv: the only own tower with a backbone
        args: dict[str, Any] = {}
        if "widths" in options:
            args["widths"] = tuple(int(w) for w in options.pop("widths"))
        if "grid" in options:
            args["grid"] = int(options.pop("grid"))
        return conv_backbone(spec.channels, **args)
    if entry.family == "timm":
        from siamese.training.towers.timm_backbones import timm_backbone

        state, from_hub = timm_weights(entry.name, pretrained) if pretrained else (None, False)
        return timm_backbone(entry.name, spec, state_dict=state, from_hub=from_hub)
    backbone, features = torchvision_backbone(entry.name, spec.channels)
    if pretrained:
        load_file_into_backbone(backbone, pretrained, entry.name)
    return backbone, features


def count_parameters(tower: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in tower.parameters() if p.requires_grad)
