"""Starting weights for backbones: read safely from a file, a package or timm's hub.

Nothing here unpickles code: safetensors, or ``torch.load(weights_only=True)`` with a clear
error when a file would need more.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from siamese.core.errors import ConfigError, named
from siamese.training.towers.heads import EmbeddingTower
from siamese.training.towers.state_files import read_state_dict

#: ``--pretrained`` values that name a source rather than a file.
PRETRAINED_SOURCES = ("imagenet", "hub", "packaged")


def timm_weights(name: str, source: str) -> tuple[dict[str, torch.Tensor] | None, bool]:
    """(state dict to hand to timm, or None; whether timm downloads its own) for ``source``.

    "imagenet" takes the weights a package ships when it is installed (offline), else timm's
    hub; "hub" always asks timm; "packaged" insists on the package; anything else is a file.
    """
    from siamese.training.towers.packaged import (
        PACKAGED_WEIGHTS,
        load_packaged_state_dict,
        packaged_weights_available,
    )

    if source == "hub":
        return None, True
    if source == "packaged" or (
        source == "imagenet" and name in PACKAGED_WEIGHTS and packaged_weights_available(name)
    ):
        return load_packaged_state_dict(name), False
    if source == "imagenet":
        return None, True
    return read_state_dict(Path(source)), False


def describe_pretrained(name: str, source: str | None) -> str | None:
    """Where a tower's starting weights came from, for config.json and the model card."""
    if not source:
        return None
    if source in PRETRAINED_SOURCES:
        from siamese.training.towers.packaged import describe_source

        return describe_source(name, source)
    from siamese.core.files import sha256_file

    return f"file {Path(source).name} sha256:{sha256_file(Path(source))[:16]}"


def load_file_into_backbone(
    backbone: nn.Module, path: str | os.PathLike[str], name: str
) -> list[str]:
    """Initialise ``backbone`` from a local state-dict file; returns the keys the file lacked.

    3-channel first-conv weights are summed to fit grey input; keys the backbone lacks (a
    classifier) are ignored.

    Raises:
        ConfigError: unreadable file, or weights that do not fit the backbone.
    """
    path = Path(path)
    state = read_state_dict(path)
    target = backbone.state_dict()
    first = next(n for n, m in backbone.named_modules() if isinstance(m, nn.Conv2d)) + ".weight"
    if (
        first in state
        and state[first].ndim == 4
        and state[first].shape[1] != target[first].shape[1]
    ):
        state[first] = state[first].sum(dim=1, keepdim=True).expand_as(target[first]).clone()
    usable = {k: v for k, v in state.items() if k in target}
    mismatched = [k for k, v in usable.items() if v.shape != target[k].shape]
    if mismatched or not usable:
        raise ConfigError(
            f"{path}: weights do not fit {name} "
            f"({'shape mismatch at ' + mismatched[0] if mismatched else 'no matching keys'})"
        )
    backbone.load_state_dict(usable, strict=False)
    return sorted(set(target) - set(usable))


def load_pretrained(tower: nn.Module, path: str | os.PathLike[str], tower_name: str) -> list[str]:
    """Initialise a built tower's backbone from a local file (see :func:`load_file_into_backbone`).

    Raises:
        ConfigError: the tower trains from scratch only, or the file is unreadable or does not fit.
    """
    from siamese.training.towers.registry import tower_entry

    if not tower_entry(tower_name).pretrained or not isinstance(tower, EmbeddingTower):
        raise ConfigError(
            f"starting weights ({named('pretrained')}) initialise timm and torchvision backbones "
            f"only, not the {tower_name!r} tower"
        )
    return load_file_into_backbone(tower.backbone, path, tower_name)
