"""Synthetic identities: an offline, generated ImageFolder for tests and the demo.

Each identity is a distinct random visual pattern (shapes over a smooth texture); each sample
shows it under a random pose, scale, lighting, blur and noise. Pose changes alone defeat
raw-pixel matching, while a trained tower can learn to ignore them, so the data shows learning.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from siamese.files import atomic_path

_CANVAS = 160  # identities are drawn large, then posed and reduced to the output size


@dataclass(frozen=True)
class SyntheticSpec:
    """Size and difficulty of a generated dataset."""

    identities: int = 40
    images_per_identity: int = 10
    size: int = 72
    max_rotation: float = 30.0
    scale_range: tuple[float, float] = (0.8, 1.2)
    max_shift: float = 0.1
    noise: float = 0.06
    max_blur: float = 1.2
    formats: tuple[str, ...] = ("png", "jpg")
    rgb: bool = False


def _identity_pattern(rng: np.random.Generator, rgb: bool) -> Image.Image:
    """A random pattern: a smooth texture overlaid with 4–7 random filled shapes."""
    channels = 3 if rgb else 1
    coarse = rng.random((6, 6, channels))
    texture = Image.fromarray((coarse * 255).astype(np.uint8).squeeze(), "RGB" if rgb else "L")
    canvas = texture.resize((_CANVAS, _CANVAS), Image.Resampling.BICUBIC)
    canvas = canvas.filter(ImageFilter.GaussianBlur(6))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(4, 8))):
        colour = tuple(int(v) for v in rng.integers(0, 256, size=channels))
        fill = colour if rgb else colour[0]
        x0, y0 = rng.uniform(0.1, 0.7, size=2) * _CANVAS
        w, h = rng.uniform(0.12, 0.45, size=2) * _CANVAS
        box = (
            float(x0),
            float(y0),
            float(min(x0 + w, _CANVAS * 0.95)),
            float(min(y0 + h, _CANVAS * 0.95)),
        )
        kind = int(rng.integers(0, 4))
        if kind == 0:
            draw.ellipse(box, fill=fill)
        elif kind == 1:
            draw.rectangle(box, fill=fill)
        elif kind == 2:
            points = [
                tuple(float(v) for v in rng.uniform(0.1, 0.9, size=2) * _CANVAS) for _ in range(3)
            ]
            draw.polygon(points, fill=fill)
        else:
            draw.line([box[:2], box[2:]], fill=fill, width=int(rng.integers(4, 12)))
    return canvas


def _sample(pattern: Image.Image, spec: SyntheticSpec, rng: np.random.Generator) -> Image.Image:
    """One view of a pattern: random rotation, scale, shift, lighting, blur and noise."""
    angle = float(rng.uniform(-spec.max_rotation, spec.max_rotation))
    scale = float(rng.uniform(*spec.scale_range))
    shift = rng.uniform(-spec.max_shift, spec.max_shift, size=2) * _CANVAS
    # Inverse affine map (output → input) for a rotation/scale about the centre plus a shift.
    theta = np.deg2rad(angle)
    cos, sin = np.cos(theta) / scale, np.sin(theta) / scale
    centre = _CANVAS / 2
    cx, cy = centre + shift[0], centre + shift[1]
    coeffs = (cos, sin, centre - cos * cx - sin * cy, -sin, cos, centre + sin * cx - cos * cy)
    border = pattern.getpixel((0, 0))
    posed = pattern.transform(
        pattern.size, Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR, fillcolor=border
    )
    crop = int(_CANVAS * 0.8)
    offset = (_CANVAS - crop) // 2
    posed = posed.crop((offset, offset, offset + crop, offset + crop)).resize(
        (spec.size, spec.size), Image.Resampling.BILINEAR
    )
    blur = float(rng.uniform(0, spec.max_blur))
    if blur > 0.2:
        posed = posed.filter(ImageFilter.GaussianBlur(blur))
    pixels = np.asarray(posed, dtype=np.float32) / 255.0
    contrast, brightness = rng.uniform(0.7, 1.3), rng.uniform(-0.15, 0.15)
    gamma = rng.uniform(0.75, 1.35)
    pixels = np.clip((pixels - 0.5) * contrast + 0.5 + brightness, 0, 1) ** gamma
    pixels = pixels + rng.normal(0, spec.noise, size=pixels.shape)
    return Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8), posed.mode)


def generate_identities(
    out_dir: str | os.PathLike[str], spec: SyntheticSpec = SyntheticSpec(), seed: int = 0
) -> Path:
    """Write an ImageFolder of ``spec.identities`` folders (id_000, id_001, …) to ``out_dir``.

    Formats alternate between the ones in ``spec.formats``, so readers are exercised on each.
    The same seed always produces the same images.
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    for identity in range(spec.identities):
        pattern = _identity_pattern(rng, spec.rgb)
        folder = out_dir / f"id_{identity:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(spec.images_per_identity):
            fmt = spec.formats[index % len(spec.formats)]
            target = folder / f"{index:03d}.{fmt}"
            with atomic_path(target) as tmp:
                _sample(pattern, spec, rng).save(
                    tmp,
                    format="JPEG" if fmt == "jpg" else fmt.upper(),
                    **({"quality": 92} if fmt == "jpg" else {}),
                )
    return out_dir
