"""Photo-like JPEGs for the speed suite: decode cost like a camera picture's, generated offline.

A scene is a smooth multi-scale colour field with shapes; each identity's views are crops of
its scene with their own lighting and film grain, saved at quality 90 (about 80 kB at 640×480,
like a real photo of that size). Grain matters: JPEG decode time follows the entropy-coded
detail, and a flat synthetic picture would decode unrealistically fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def _scene(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    field = np.zeros((height, width, 3), np.float32)
    for cells, weight in ((4, 0.6), (16, 0.25), (64, 0.1)):
        coarse = (rng.random((max(2, cells * height // width), cells, 3)) * 255).astype(np.uint8)
        field += weight * np.asarray(
            Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.float32
        )
    scene = Image.fromarray(np.clip(field / 0.95, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(scene)
    for _ in range(12):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        w, h = rng.uniform(0.03, 0.3, 2) * width
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(
            (x0, y0, x0 + w, y0 + h), fill=colour
        )
    return scene.filter(ImageFilter.GaussianBlur(1.0))


def _view(scene: Image.Image, rng: np.random.Generator, width: int, height: int) -> Image.Image:
    dx, dy = (int(v) for v in rng.integers(0, [scene.width - width + 1, scene.height - height + 1]))
    crop = np.asarray(scene.crop((dx, dy, dx + width, dy + height)), np.float32)
    crop = crop * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20) + rng.normal(0, 6, crop.shape)
    return Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8))


def generate_photos(
    out_dir: Path,
    count: int,
    *,
    width: int = 640,
    height: int = 480,
    per_identity: int = 4,
    seed: int = 0,
) -> list[Path]:
    """Write ``count`` RGB JPEGs as an ImageFolder (``per_identity`` views per scene).

    Return their paths.
    """
    rng = np.random.default_rng(seed)
    paths: list[Path] = []
    margin = max(8, width // 16)
    for index in range(count):
        if index % per_identity == 0:
            scene = _scene(rng, width + margin, height + margin)
        folder = out_dir / f"scene_{index // per_identity:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{index % per_identity}.jpg"
        _view(scene, rng, width, height).save(path, quality=90)
        paths.append(path)
    return paths


def resized_copies(
    paths: list[Path], src_root: Path, out_root: Path, size: tuple[int, int]
) -> list[Path]:
    """The same pictures saved at another size (the tower's native input size), same layout."""
    copies = []
    for path in paths:
        target = out_root / path.relative_to(src_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            image.convert("RGB").resize(size, Image.Resampling.BILINEAR).save(target, quality=90)
        copies.append(target)
    return copies
