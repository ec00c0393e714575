"""Recipes: colour told from the images, the recipe chosen from the data, options that win."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamese.training import TrainConfig
from siamese.training.data import FolderLook, look_at_folder
from siamese.training.recipes import PHOTO_CPU_SIZE, apply_recipe, choose_recipe


def _folder(root: Path, size: int, colour: bool, grey_as_rgb: bool = False) -> Path:
    rng = np.random.default_rng(size)
    for identity in ("a", "b", "c"):
        (root / identity).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 256, size=(size, size * 3 // 4, 3), dtype=np.uint8)
            if not colour:
                pixels[..., 1] = pixels[..., 2] = pixels[..., 0]
            image = Image.fromarray(pixels)
            if not colour and not grey_as_rgb:
                image = image.convert("L")
            image.save(root / identity / f"{i}.{'jpg' if i % 2 else 'png'}")
    return root


def test_colour_is_told_from_the_pixels_not_the_file_mode(tmp_path: Path) -> None:
    assert look_at_folder(_folder(tmp_path / "c", 120, colour=True)).colour
    assert not look_at_folder(_folder(tmp_path / "g", 120, colour=False)).colour
    grey_rgb = look_at_folder(_folder(tmp_path / "gr", 120, colour=False, grey_as_rgb=True))
    assert not grey_rgb.colour  # grey photos saved as RGB stay grey
    assert look_at_folder(tmp_path / "c").longer_side == 120


@pytest.mark.parametrize(
    ("look", "recipe"),
    [
        (FolderLook(3000, 640, colour=True), "photo"),  # smartphone photographs
        (FolderLook(400, 112, colour=False), "conv"),  # grey faces
        (FolderLook(4000, 100, colour=False), "conv"),  # glyphs
        (FolderLook(9000, 28, colour=False), "conv"),  # Fashion-MNIST
        (FolderLook(500, 40, colour=True), "conv"),  # small colour icons: not photographs
    ],
)
def test_auto_recipe_follows_the_data(look: FolderLook, recipe: str) -> None:
    choice = choose_recipe(TrainConfig(data_dir="d", out_dir="o"), look)
    assert choice.recipe == recipe
    assert choice.line().startswith(f"recipe {recipe}: ")


def test_photo_recipe_fills_only_what_was_left_open() -> None:
    photos = FolderLook(3000, 640, colour=True)
    config, _ = apply_recipe(TrainConfig(data_dir="d", out_dir="o"), cuda=False, look=photos)
    assert (config.tower, config.pretrained, config.channels) == (
        "tf_efficientnet_lite0",
        "imagenet",
        3,
    )
    assert (config.resize, config.image_size) == ("fit-crop", PHOTO_CPU_SIZE)
    assert config.freeze_epochs > 0 and config.backbone_lr < 1
    on_gpu, _ = apply_recipe(TrainConfig(data_dir="d", out_dir="o"), cuda=True, look=photos)
    assert on_gpu.image_size is None  # the backbone's own 224 px
    mine = TrainConfig(data_dir="d", out_dir="o", epochs=3, image_size=96, pretrained="none")
    config, _ = apply_recipe(mine, cuda=False, look=photos)
    assert (config.epochs, config.image_size, config.starting_weights) == (3, 96, None)
    assert config.backbone_lr == 1.0 and config.freeze_epochs == 0.0  # nothing to protect
    again, _ = apply_recipe(config, cuda=False, look=photos)
    assert again == config  # a resolved config (config.json's) resolves to itself


def test_conv_recipe_takes_colour_when_the_images_have_it() -> None:
    colour = FolderLook(500, 40, colour=True)
    grey = FolderLook(500, 40, colour=False)
    base = TrainConfig(data_dir="d", out_dir="o")
    assert apply_recipe(base, look=colour)[0].channels == 3
    assert apply_recipe(base, look=grey)[0].channels == 1
    explicit = TrainConfig(data_dir="d", out_dir="o", channels=1)
    assert apply_recipe(explicit, look=colour)[0].channels == 1
    resolved = apply_recipe(base, look=grey)[0]
    assert (resolved.tower, resolved.epochs, resolved.resize) == ("conv", 30, "stretch")


def test_a_named_tower_picks_its_family(tmp_path: Path) -> None:
    grey = FolderLook(500, 40, colour=False)
    timm_run = TrainConfig(data_dir="d", out_dir="o", tower="resnet18")
    config, choice = apply_recipe(timm_run, look=grey)
    assert choice.recipe == "photo" and config.tower == "resnet18"
    assert config.channels == 3  # pretrained towers take colour; grey images are replicated
    named = TrainConfig(data_dir="d", out_dir="o", recipe="conv")
    assert choose_recipe(named, FolderLook(3000, 640, colour=True)).recipe == "conv"
