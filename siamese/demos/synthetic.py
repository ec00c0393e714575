"""Synthetic identities: an offline, generated ImageFolder for tests and the demo.

Each identity is a distinct random visual pattern (shapes over a smooth texture); each sample
shows it under a random pose, scale, lighting, blur and noise. Pose changes alone defeat
raw-pixel matching, while a trained tower can learn to ignore them, so the data shows learning.

:func:`generate_pair_identities` draws a second kind of identity for pseudo-siamese (two-tower)
training: a scene of two or three named shapes rendered twice, as a colour photo and as a grey
line drawing, with captions written from the scene (kind, colour, size, place, relations).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

from siamese.core.files import atomic_path

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


# ----------------------------------------------------------------------------- two domains
#: Named colours of the two-domain generator: what a caption may call a shape.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (205, 40, 40),
    "green": (40, 150, 60),
    "blue": (40, 70, 200),
    "yellow": (225, 200, 40),
    "purple": (135, 60, 165),
    "orange": (235, 125, 30),
    "grey": (125, 125, 125),
    "black": (25, 25, 25),
}
#: Shape kinds and the words captions use for each (varied phrasings).
KINDS: dict[str, tuple[str, ...]] = {
    "disc": ("disc", "circle", "round dot"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "wedge"),
    "bar": ("bar", "stripe"),
}
_ROWS, _COLUMNS = ("top", "middle", "bottom"), ("left", "centre", "right")
_CELL_CENTRES = (0.28, 0.5, 0.72)  # of the canvas; the pose crop keeps 0.1–0.9 in view


@dataclass(frozen=True)
class Shape:
    """One shape of a scene, in words and in canvas coordinates."""

    kind: str
    colour: str
    large: bool
    row: int
    column: int

    @property
    def centre(self) -> tuple[float, float]:
        return (_CELL_CENTRES[self.column] * _CANVAS, _CELL_CENTRES[self.row] * _CANVAS)

    @property
    def radius(self) -> float:
        return (0.17 if self.large else 0.1) * _CANVAS

    @property
    def place(self) -> str:
        if (self.row, self.column) == (1, 1):
            return "centre"
        if self.row == 1:
            return _COLUMNS[self.column]
        if self.column == 1:
            return _ROWS[self.row]
        return f"{_ROWS[self.row]} {_COLUMNS[self.column]}"


@dataclass(frozen=True)
class PairSpec:
    """A two-domain dataset: photo-like renderings, sketches and captions of the same scenes.

    The last ``photo_only`` identities get photos and nothing else (gallery distractors: an
    identity may have images on one side only).
    """

    identities: int = 40
    photos_per_identity: int = 6
    sketches_per_identity: int = 4
    captions_per_identity: int = 3
    photo_size: int = 96
    sketch_size: int = 64
    photo_only: int = 0
    max_rotation: float = 12.0


@dataclass(frozen=True)
class PairPaths:
    """Where :func:`generate_pair_identities` wrote each domain."""

    photos: Path
    sketches: Path
    captions: Path


def _scene(rng: np.random.Generator) -> list[Shape]:
    """Two or three shapes of distinct cells: kind, colour, size and place drawn at random."""
    cells = rng.permutation(9)[: int(rng.integers(2, 4))]
    kinds, colours = list(KINDS), list(COLOURS)
    return [
        Shape(
            kind=kinds[int(rng.integers(len(kinds)))],
            colour=colours[int(rng.integers(len(colours)))],
            large=bool(rng.random() < 0.5),
            row=int(cell) // 3,
            column=int(cell) % 3,
        )
        for cell in cells
    ]


def _outline(shape: Shape, points: int = 48) -> NDArray[np.float64]:
    """The shape's outline as a closed polyline in canvas coordinates."""
    (cx, cy), r = shape.centre, shape.radius
    if shape.kind == "disc":
        t = np.linspace(0, 2 * np.pi, points, endpoint=False)
        return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)
    corners = {
        "square": [(-r, -r), (r, -r), (r, r), (-r, r)],
        "triangle": [(0, -r), (r, r * 0.8), (-r, r * 0.8)],
        "bar": [(-r * 1.3, -r * 0.3), (r * 1.3, -r * 0.3), (r * 1.3, r * 0.3), (-r * 1.3, r * 0.3)],
    }[shape.kind]
    corner = np.array(corners, dtype=np.float64) + (cx, cy)
    closed = np.vstack([corner, corner[:1]])
    per_side = max(2, points // len(corners))
    lines = [
        np.linspace(closed[i], closed[i + 1], per_side, endpoint=False) for i in range(len(corners))
    ]
    return np.vstack(lines)


def _photo_pattern(scene: list[Shape], rng: np.random.Generator) -> Image.Image:
    """The photo-like rendering: filled colour shapes over a smooth pale texture."""
    coarse = 165 + rng.random((5, 5, 1)) * 60 + rng.random((5, 5, 3)) * 25
    canvas = Image.fromarray(coarse.astype(np.uint8), "RGB").resize(
        (_CANVAS, _CANVAS), Image.Resampling.BICUBIC
    )
    canvas = canvas.filter(ImageFilter.GaussianBlur(5))
    draw = ImageDraw.Draw(canvas)
    for shape in scene:
        shade = np.clip(np.array(COLOURS[shape.colour]) + rng.integers(-15, 16, size=3), 0, 255)
        draw.polygon([tuple(p) for p in _outline(shape)], fill=tuple(int(v) for v in shade))
    return canvas


def _sketch_pattern(scene: list[Shape], rng: np.random.Generator) -> Image.Image:
    """The line drawing: grey jittered outlines of the same shapes on white paper, no colour."""
    paper = 235 + rng.random((4, 4)) * 20
    canvas = Image.fromarray(paper.astype(np.uint8), "L").resize(
        (_CANVAS, _CANVAS), Image.Resampling.BICUBIC
    )
    draw = ImageDraw.Draw(canvas)
    for shape in scene:
        for _stroke in range(int(rng.integers(1, 3))):  # sketchers go over a line twice
            points = _outline(shape) + rng.normal(0, 1.6, size=(len(_outline(shape)), 2))
            line = [tuple(p) for p in points] + [tuple(points[0])]
            draw.line(line, fill=int(rng.integers(30, 100)), width=int(rng.integers(2, 4)))
    return canvas


def _relation(a: Shape, b: Shape) -> str:
    if a.row < b.row:
        return "above"
    if a.row > b.row:
        return "below"
    return "left of" if a.column < b.column else "right of"


def _phrase(shape: Shape, rng: np.random.Generator, place: bool = True) -> str:
    words = KINDS[shape.kind]
    size = "large" if shape.large else "small"
    size = (size, "big" if shape.large else "little")[int(rng.integers(2))]
    noun = words[int(rng.integers(len(words)))]
    text = f"a {size} {shape.colour} {noun}"
    if place:
        where = shape.place
        text += f" in the {where}" if where in ("centre", "middle") else f" at the {where}"
    return text


def scene_caption(scene: list[Shape], rng: np.random.Generator) -> str:
    """One caption of a scene from what was drawn, in one of several phrasings."""
    order = [scene[int(i)] for i in rng.permutation(len(scene))]
    style = int(rng.integers(4))
    if style == 0:  # relation between two shapes
        a, b = order[0], order[1]
        text = f"{_phrase(a, rng, place=False)} {_relation(a, b)} {_phrase(b, rng, place=False)}"
        if len(order) > 2:
            text += f", and {_phrase(order[2], rng)}"
        return text
    parts = [_phrase(shape, rng) for shape in order]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return ("{}", "a picture of {}", "there is {}", "{} on a pale background")[style].format(listed)


def generate_pair_identities(
    out_dir: str | os.PathLike[str], spec: PairSpec = PairSpec(), seed: int = 0
) -> PairPaths:
    """Write each identity in two domains, plus captions, under ``out_dir``.

    ``photos/`` (RGB, ``photo_size`` px) and ``sketches/`` (grey, ``sketch_size`` px) are
    ImageFolders with the same identity names; ``captions.csv`` has columns ``identity`` and
    ``text``, each caption written from the shapes, colours, sizes and places the generator drew.
    Both renderings of an identity are posed independently (rotation, scale, shift, lighting,
    noise), so no pixel lines up across domains. The same seed always writes the same files.
    """
    import csv

    out_dir = Path(out_dir)
    paths = PairPaths(out_dir / "photos", out_dir / "sketches", out_dir / "captions.csv")
    rng = np.random.default_rng(seed)
    photo_pose = SyntheticSpec(
        size=spec.photo_size, max_rotation=spec.max_rotation, rgb=True, noise=0.04
    )
    sketch_pose = SyntheticSpec(
        size=spec.sketch_size, max_rotation=spec.max_rotation, noise=0.02, max_blur=0.6
    )
    rows: list[tuple[str, str]] = []
    for identity in range(spec.identities):
        name = f"id_{identity:03d}"
        scene = _scene(rng)
        photo = _photo_pattern(scene, rng)
        sketch = _sketch_pattern(scene, rng)
        one_sided = identity >= spec.identities - spec.photo_only
        sides = [(paths.photos, photo, photo_pose, spec.photos_per_identity)]
        if not one_sided:
            sides.append((paths.sketches, sketch, sketch_pose, spec.sketches_per_identity))
            rows.extend(
                (name, scene_caption(scene, rng)) for _ in range(spec.captions_per_identity)
            )
        for root, pattern, pose, count in sides:
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                with atomic_path(folder / f"{index:03d}.png") as tmp:
                    _sample(pattern, pose, rng).save(tmp, format="PNG")
    paths.captions.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(paths.captions) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["identity", "text"])
        writer.writerows(rows)
    return paths
