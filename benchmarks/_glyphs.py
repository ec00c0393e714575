"""Glyphs: characters of many scripts rendered from installed fonts, a one-shot yardstick.

Issue 20.

Identity = one character of one script (folder ``{script}-U{code point:04X}``); its images = the
typefaces that cover it (font files: families, weights, widths), each rendered once with a small
random affine distortion and a stroke-width change, as handwriting varies (Koch et al.'s ranges:
rotation ±10°, shear ±0.3 rad, scale 0.8-1.2, shift ±2 px of 105). Scripts split the set: the
tower trains on some and is tested, one-shot, on scripts it never saw (like Omniglot's alphabets).

Images are 64 px grey, dark ink on white: characters need no more (the literature trains Omniglot
at 28-105 px), and at 64 px the default recipe trains at the images' own size. Everything is
seeded; ``manifest.json`` in the folder records fonts (file name and sha256), FreeType and Pillow
versions, scripts, code points and settings, so the set can be rebuilt exactly.

Which characters a font covers comes from its cmap (fontTools); a covered glyph that renders no
ink is skipped too.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIRS = (Path("/usr/share/fonts"),)

#: Letters of each script (one case only, where it has two), as inclusive code point ranges.
SCRIPTS: dict[str, tuple[tuple[int, int], ...]] = {
    "latin": ((0x41, 0x5A),),
    "greek": ((0x391, 0x3A9),),
    "cyrillic": ((0x410, 0x42F),),
    "armenian": ((0x531, 0x556),),
    "hebrew": ((0x5D0, 0x5EA),),
    "arabic": ((0x620, 0x64A),),
    "thaana": ((0x780, 0x7A5),),
    "devanagari": ((0x904, 0x939),),
    "bengali": ((0x985, 0x9B9),),
    "gurmukhi": ((0xA05, 0xA39),),
    "gujarati": ((0xA85, 0xAB9),),
    "oriya": ((0xB05, 0xB39),),
    "tamil": ((0xB85, 0xBB9),),
    "telugu": ((0xC05, 0xC39),),
    "kannada": ((0xC85, 0xCB9),),
    "malayalam": ((0xD05, 0xD3A),),
    "sinhala": ((0xD85, 0xDC6),),
    "thai": ((0xE01, 0xE2E),),
    "lao": ((0xE81, 0xEAE),),
    "myanmar": ((0x1000, 0x102A),),
    "georgian": ((0x10D0, 0x10FA),),
    "ethiopic": ((0x1200, 0x1248),),
    "cherokee": ((0x13A0, 0x13F4),),
    "canadian-syllabics": ((0x1401, 0x1470),),
    "khmer": ((0x1780, 0x17A2),),
    "balinese": ((0x1B05, 0x1B33),),
    "tifinagh": ((0x2D30, 0x2D65),),
    "cham": ((0xAA00, 0xAA28),),
}
#: Scripts held out for testing: never seen in training (nine scripts, about 270 characters).
TEST_SCRIPTS = (
    "armenian",
    "georgian",
    "hebrew",
    "thai",
    "tamil",
    "telugu",
    "gujarati",
    "ethiopic",
    "khmer",
)
TRAIN_SCRIPTS = tuple(name for name in SCRIPTS if name not in TEST_SCRIPTS)


@dataclass(frozen=True)
class GlyphSettings:
    """How a glyph set is drawn; recorded in the manifest."""

    size: int = 64
    images_per_character: int = 8  # distinct font files per character (fewer when fewer cover it)
    min_fonts: int = 4  # characters covered by fewer font files are left out
    max_characters_per_script: int = 30
    oversample: int = 4  # drawn at size × oversample, then reduced (smooth edges, fine strokes)
    seed: int = 0
    font_pattern: str = "Noto*"


def find_fonts(pattern: str = "Noto*", dirs: Iterable[Path] = FONT_DIRS) -> list[Path]:
    """TrueType/OpenType font files matching ``pattern`` under ``dirs``.

    Sorted by name (then path).
    """
    found = {
        path
        for root in dirs
        if root.is_dir()
        for suffix in (".ttf", ".otf")
        for path in root.rglob(f"{pattern}{suffix}")
    }
    return sorted(found, key=lambda p: (p.name, str(p)))


def font_coverage(path: Path) -> frozenset[int]:
    """The code points a font's cmap maps to a glyph."""
    from fontTools.ttLib import TTFont

    with TTFont(path, lazy=True) as font:
        return frozenset(font.getBestCmap() or ())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def script_letters(ranges: Sequence[tuple[int, int]]) -> list[int]:
    """Letters (Unicode category L*) with no decomposition.

    No accented or compatibility duplicates.
    """
    return [
        cp
        for low, high in ranges
        for cp in range(low, high + 1)
        if unicodedata.category(chr(cp)).startswith("L") and not unicodedata.decomposition(chr(cp))
    ]


@dataclass(frozen=True)
class Character:
    """One identity: a character of a script and the font files that will draw it."""

    script: str
    code_point: int
    fonts: tuple[str, ...]  # font file names

    @property
    def identity(self) -> str:
        return f"{self.script}-U{self.code_point:04X}"


def plan(
    scripts: Sequence[str],
    fonts: Sequence[Path],
    settings: GlyphSettings,
    coverage: dict[Path, frozenset[int]] | None = None,
) -> list[Character]:
    """Which characters, and which fonts draw each: seeded, from what the fonts cover."""
    coverage = coverage if coverage is not None else {f: font_coverage(f) for f in fonts}
    rng = np.random.default_rng(settings.seed)
    characters: list[Character] = []
    for script in scripts:
        letters = [
            cp
            for cp in script_letters(SCRIPTS[script])
            if sum(cp in coverage[f] for f in fonts) >= settings.min_fonts
        ]
        if len(letters) > settings.max_characters_per_script:
            picked = rng.choice(len(letters), settings.max_characters_per_script, replace=False)
            letters = [letters[i] for i in sorted(picked)]
        for cp in letters:
            covering = [f.name for f in fonts if cp in coverage[f]]
            count = min(settings.images_per_character, len(covering))
            chosen = rng.choice(len(covering), count, replace=False)
            characters.append(Character(script, cp, tuple(covering[i] for i in sorted(chosen))))
    return characters


@lru_cache(maxsize=64)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def render(font_path: Path, code_point: int, settings: GlyphSettings, rng: np.random.Generator):
    """One distorted rendering (uint8 size × size, dark ink on white); None if it has no ink."""
    canvas = settings.size * settings.oversample
    text = chr(code_point)
    em = int(canvas * 0.6)
    font = _font(str(font_path), em)
    stroke = int(rng.integers(-1, 4)) * settings.oversample // 2  # thinner, as drawn, or bolder
    grow = max(stroke, 0)
    box = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox(
        (0, 0), text, font=font, stroke_width=grow
    )
    extent = max(box[2] - box[0], box[3] - box[1])
    if extent <= 0:
        return None
    if extent > 0.75 * canvas:  # tall stacks and wide syllables: shrink to fit the distortions
        font = _font(str(font_path), max(8, int(em * 0.75 * canvas / extent)))
        box = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox(
            (0, 0), text, font=font, stroke_width=grow
        )
    image = Image.new("L", (canvas, canvas), 0)
    origin = ((canvas - (box[2] - box[0])) / 2 - box[0], (canvas - (box[3] - box[1])) / 2 - box[1])
    ImageDraw.Draw(image).text(
        origin, text, fill=255, font=font, stroke_width=grow, stroke_fill=255
    )
    if stroke < 0:
        thinner = image.filter(ImageFilter.MinFilter(2 * (-stroke) + 1))
        image = thinner if np.asarray(thinner).max() > 0 else image
    # Affine distortion about the centre: rotation, shear, scale, shift (Koch et al., 2015).
    angle = np.deg2rad(rng.uniform(-10, 10))
    shear = rng.uniform(-0.3, 0.3, size=2)
    scale = rng.uniform(0.8, 1.2, size=2)
    shift = rng.uniform(-2, 2, size=2) * canvas / 105
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    forward = rotation @ np.array([[1, shear[0]], [shear[1], 1]]) @ np.diag(scale)
    inverse = np.linalg.inv(forward)
    centre = np.array([canvas / 2, canvas / 2])
    offset = centre - inverse @ (centre + shift)
    coefficients = (*inverse[0], offset[0], *inverse[1], offset[1])
    image = image.transform(image.size, Image.Transform.AFFINE, coefficients, Image.BILINEAR)
    small = np.asarray(image.resize((settings.size, settings.size), Image.Resampling.BOX))
    if small.max() < 64:
        return None
    return 255 - small


def build(
    out: Path,
    scripts: Sequence[str],
    settings: GlyphSettings,
    fonts: Sequence[Path] | None = None,
    coverage: dict[Path, frozenset[int]] | None = None,
) -> Path:
    """Render an ImageFolder of ``scripts`` into ``out`` with its manifest.

    Skipped when already complete.

    Raises:
        ValueError: no font matches, or no character of these scripts is covered by enough fonts.
    """
    if (out / ".complete").exists():
        return out
    fonts = list(fonts) if fonts is not None else find_fonts(settings.font_pattern)
    if not fonts:
        raise ValueError(f"no font file matches {settings.font_pattern!r} under the font folders")
    characters = plan(scripts, fonts, settings, coverage)
    if not characters:
        raise ValueError(f"no character of {', '.join(scripts)} is covered by enough fonts")
    by_name = {f.name: f for f in fonts}
    rng = np.random.default_rng(settings.seed + 1)
    written: list[dict] = []
    for character in characters:
        folder = out / character.identity
        folder.mkdir(parents=True, exist_ok=True)
        drawn = []
        for index, name in enumerate(character.fonts):
            pixels = render(by_name[name], character.code_point, settings, rng)
            if pixels is not None:
                Image.fromarray(pixels, "L").save(folder / f"{index:02d}.png")
                drawn.append(name)
        written.append({"identity": character.identity, "fonts": drawn})
    used = sorted({name for row in written for name in row["fonts"]})
    _write_manifest(out, scripts, settings, written, [by_name[n] for n in used])
    (out / ".complete").write_text("ok")
    return out


def _write_manifest(
    out: Path,
    scripts: Sequence[str],
    settings: GlyphSettings,
    written: list[dict],
    fonts: list[Path],
) -> None:
    import PIL
    from PIL import features

    manifest = {
        "what": (
            "glyph set: identity = one character of one script, images = its typefaces, distorted"
        ),
        "settings": asdict(settings),
        "scripts": {name: [list(r) for r in SCRIPTS[name]] for name in scripts},
        "characters": len(written),
        "images": sum(len(row["fonts"]) for row in written),
        "identities": written,
        "fonts": [{"file": f.name, "path": str(f), "sha256": sha256(f)} for f in fonts],
        "versions": {"pillow": PIL.__version__, "freetype": features.version("freetype2")},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


def script_of(identity: str) -> str:
    """The script an identity folder belongs to (``armenian-U0531`` → ``armenian``)."""
    return identity.rsplit("-U", 1)[0]


def glyphs(root: Path, settings: GlyphSettings | None = None) -> tuple[Path, Path]:
    """The suite's split: train on TRAIN_SCRIPTS, test on the unseen TEST_SCRIPTS."""
    settings = settings or GlyphSettings()
    fonts = find_fonts(settings.font_pattern)
    coverage = {f: font_coverage(f) for f in fonts}
    tag = f"glyphs-{settings.size}px-s{settings.seed}"
    return (
        build(root / f"{tag}-train", TRAIN_SCRIPTS, settings, fonts, coverage),
        build(root / f"{tag}-test", TEST_SCRIPTS, settings, fonts, coverage),
    )


def glyph_fonts_available(settings: GlyphSettings | None = None) -> bool:
    """Whether fonts for the glyph set are installed (Debian: fonts-noto-core, fonts-noto-extra)."""
    return bool(find_fonts((settings or GlyphSettings()).font_pattern))


def manifest(folder: Path) -> dict:
    """The manifest a glyph folder was built with."""
    return json.loads((folder / "manifest.json").read_text())
