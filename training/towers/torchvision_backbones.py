"""torchvision networks as backbones: mobilenet_v3_small/large and efficientnet_b0.

Kept so runs trained with them still load and export; new work takes timm backbones
(timm_backbones.py), which come with their pretrained configuration and weights.
"""

from __future__ import annotations

from torch import nn


def torchvision_backbone(name: str, in_channels: int) -> tuple[nn.Module, int]:
    """A torchvision classification network without its classifier, first conv fitted to the
    channels."""
    import torchvision

    model = getattr(torchvision.models, name)(weights=None)
    features = next(m for m in model.classifier if isinstance(m, nn.Linear)).in_features
    model.classifier = nn.Identity()
    if in_channels != 3:
        _replace_first_conv(model, "features.0.0", in_channels)
    return model, features


def _replace_first_conv(model: nn.Module, path: str, in_channels: int) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    old: nn.Conv2d = getattr(parent, attr)
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        old.kernel_size,
        old.stride,
        old.padding,
        bias=old.bias is not None,
    )
    setattr(parent, attr, new)
