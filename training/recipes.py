"""Training recipes, and the rule that picks one from the data.

A recipe fills every training choice the user left open (``None`` in TrainConfig): the tower,
its starting weights, channels, input size, resize rule, epochs and fine-tuning schedule.
``recipe="auto"`` looks at a sample of the training images first: colour photographs get a
pretrained ImageNet backbone fine-tuned on them (``photo``), anything else the conv tower
trained from scratch (``conv``: glyphs, grey faces, small images). An explicit tower decides
the recipe's family too: a timm backbone fine-tunes as ``photo`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from siamese.training.config import TrainConfig
from siamese.training.data import FolderLook, look_at_folder

#: Shorter than this (median longer side, px), colour images are not photographs worth a
#: pretrained backbone at 128 px or more: they keep the conv tower.
PHOTO_MIN_SIDE = 96


@dataclass(frozen=True)
class Recipe:
    """A named set of defaults for the open training choices."""

    name: str
    summary: str
    settings: dict[str, Any]


RECIPES: dict[str, Recipe] = {
    "conv": Recipe(
        "conv",
        "the conv tower trained from scratch, the images' own size up to 64 px",
        {"tower": "conv", "pretrained": None, "epochs": 30},
    ),
    "photo": Recipe(
        "photo",
        "ImageNet EfficientNet-Lite0 fine-tuned: backbone frozen for 1.5 epochs, then all of it "
        "at a tenth of the head's learning rate, batch-norm statistics kept, aspect kept",
        {
            "tower": "tf_efficientnet_lite0",
            "pretrained": "imagenet",
            "channels": 3,
            "resize": "fit-crop",
            "epochs": 8,
        },
    ),
}
#: Input size of the photo recipe on a CPU: 224 px (EfficientNet-Lite0's own) costs three times
#: the compute of 128 px, beyond the 10-minute budget for 3,000 images on 2 cores.
PHOTO_CPU_SIZE = 128


@dataclass(frozen=True)
class Choice:
    """The recipe a run follows and why, as ``siamese train`` prints it."""

    recipe: str
    reason: str

    def line(self) -> str:
        return f"recipe {self.recipe}: {RECIPES[self.recipe].summary} ({self.reason})"


def choose_recipe(config: TrainConfig, look: FolderLook | None = None) -> Choice:
    """Which recipe ``config`` follows: its own, or the one its tower or its data calls for."""
    if config.recipe != "auto":
        return Choice(config.recipe, "asked for by name")
    if config.tower is not None:
        family = "photo" if _is_timm(config.tower) else "conv"
        return Choice(family, f"the {config.tower} tower was asked for")
    look = look or look_at_folder(config.data_dir)
    if look.colour and look.longer_side >= PHOTO_MIN_SIDE:
        return Choice("photo", f"colour photographs, {look.longer_side} px typical")
    kind = "colour" if look.colour else "grey"
    return Choice("conv", f"{kind} images of {look.longer_side} px typical")


def apply_recipe(
    config: TrainConfig, cuda: bool = False, look: FolderLook | None = None
) -> tuple[TrainConfig, Choice]:
    """``config`` with every open choice filled from its recipe and the data; and the choice.

    Idempotent: a resolved config (as config.json records it) resolves to itself.
    """
    if look is None and (config.channels is None or config.recipe == "auto" and not config.tower):
        look = look_at_folder(config.data_dir)  # once, for the recipe and the channels alike
    choice = choose_recipe(config, look)
    settings = dict(RECIPES[choice.recipe].settings)
    tower = config.tower or settings["tower"]
    filled = {k: v for k, v in settings.items() if getattr(config, k) is None and k != "tower"}
    pretrained = filled.get("pretrained", config.pretrained) not in (None, "none")
    if config.channels is None and "channels" not in filled:
        assert look is not None
        filled["channels"] = 3 if look.colour or pretrained else 1
    if config.resize is None and "resize" not in filled:
        filled["resize"] = "fit-crop" if _is_timm(tower) else "stretch"
    if config.image_size is None and choice.recipe == "photo" and not cuda:
        filled["image_size"] = PHOTO_CPU_SIZE
    if config.backbone_lr is None and "backbone_lr" not in filled:
        filled["backbone_lr"] = 0.1 if pretrained else 1.0
    if config.freeze_epochs is None and "freeze_epochs" not in filled:
        filled["freeze_epochs"] = 1.5 if pretrained else 0.0
    if config.epochs is None and "epochs" not in filled:
        filled["epochs"] = 30
    return replace(config, recipe=choice.recipe, tower=tower, **filled), choice


def _is_timm(tower: str) -> bool:
    from siamese.training.towers.registry import tower_entry

    return tower_entry(tower).family == "timm"
