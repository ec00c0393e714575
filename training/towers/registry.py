"""The tower registry: one entry per tower name, with its builder and its default input.

As timm's registry and ``pretrained_cfg`` do, an entry knows how to build its network and what
input it expects by default (size, normalisation, interpolation, resize rule); timm entries
take theirs from timm's pretrained configuration. Training, export and the recipes choose
towers here, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from siamese.core.errors import ConfigError
from siamese.training.config import TOWER_ALIASES, TOWERS

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: Options every tower with an embedding head takes.
HEAD_OPTIONS = frozenset({"head_dim", "normalize", "batch_norm", "embed_from"})


@dataclass(frozen=True)
class TowerEntry:
    """One tower: its family, options, weights it can start from, and its default input.

    Attributes:
        family: "siamese" (the project's own), "torchvision" or "timm".
        options: tower options it accepts (head options included).
        pretrained: where its starting weights can come from: "" (trained from scratch only),
            "file" (a local state dict), or "imagenet" (timm's hub, a file or a package).
        size: default input size in pixels (None: from timm's pretrained configuration).
        resize: default resize rule ("fit-crop" keeps a photograph's aspect ratio).
    """

    name: str
    family: str
    summary: str
    options: frozenset[str] = HEAD_OPTIONS
    pretrained: str = ""
    size: int | None = None
    resize: str = "stretch"
    _defaults: Callable[[], dict[str, Any]] | None = field(default=None, repr=False)

    def default_input(self) -> dict[str, Any]:
        """size, mean, std (for 3 channels; None = none), interpolation, resize."""
        found: dict[str, Any] = {"mean": None, "std": None, "interpolation": "bilinear"}
        if self.family == "torchvision":
            found.update(mean=IMAGENET_MEAN, std=IMAGENET_STD)
        if self._defaults is not None:
            found.update(self._defaults())
        if self.size is not None:
            found["size"] = self.size
        return {**found, "resize": self.resize}


def _timm_defaults(name: str) -> Callable[[], dict[str, Any]]:
    def defaults() -> dict[str, Any]:
        from siamese.training.towers.timm_backbones import timm_input_defaults

        return timm_input_defaults(name)

    return defaults


def _timm(name: str, summary: str) -> TowerEntry:
    return TowerEntry(
        name,
        "timm",
        summary,
        pretrained="imagenet",
        resize="fit-crop",
        _defaults=_timm_defaults(name),
    )


REGISTRY: dict[str, TowerEntry] = {
    entry.name: entry
    for entry in (
        TowerEntry(
            "conv",
            "siamese",
            "compact VGG-style stages pooled to a grid; trains from scratch in minutes",
            options=HEAD_OPTIONS | {"widths", "grid"},
            size=64,
        ),
        TowerEntry(
            "classic",
            "siamese",
            "the tutorials' Siamese network, 100×100 grey, layer for layer",
            options=frozenset({"head_dim"}),
            size=100,
        ),
        _timm("tf_efficientnet_lite0", "EfficientNet-Lite0 (4.7 M parameters, 224 px)"),
        _timm("resnet18", "ResNet-18 (11.7 M parameters, 224 px)"),
        _timm("resnet34", "ResNet-34 (21.8 M parameters, 224 px)"),
        _timm("resnet50", "ResNet-50 (25.6 M parameters, 224 px)"),
        _timm("mobilenetv3_large_100", "MobileNetV3-Large (5.5 M parameters, 224 px)"),
        _timm("vit_tiny_patch16_224", "ViT-Tiny, 16 px patches (5.7 M parameters, 224 px)"),
        *(
            TowerEntry(name, "torchvision", f"torchvision {name}", pretrained="file", size=112)
            for name in ("mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0")
        ),
    )
}
if set(TOWERS) != set(REGISTRY):  # the names TrainConfig offers are the towers registered here
    raise ImportError(f"TrainConfig's towers {TOWERS} differ from the registry's {tuple(REGISTRY)}")


def tower_entry(name: str) -> TowerEntry:
    """The registry entry of ``name`` (former names accepted).

    Raises:
        ConfigError: no such tower.
    """
    entry = REGISTRY.get(TOWER_ALIASES.get(name, name))
    if entry is None:
        raise ConfigError(f"unknown tower {name!r}; choose one of: {', '.join(REGISTRY)}")
    return entry
