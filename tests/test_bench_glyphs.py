"""The glyph set builder on whatever fonts are installed.

Here DejaVu, not the Noto packages the suite uses: an ImageFolder per character, a manifest that
rebuilds it exactly, clear errors without fonts.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _harness import benchmarks_dir
from PIL import Image

from siamese.data.image_folder import scan_image_folder


@pytest.fixture
def glyph_module(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(benchmarks_dir()))
    import _glyphs

    return _glyphs


@pytest.fixture
def fonts(glyph_module) -> list[Path]:
    pytest.importorskip("fontTools")
    found = glyph_module.find_fonts("DejaVu*")
    if len(found) < 2:
        pytest.skip(
            "no DejaVu fonts installed (fc-list | grep DejaVu); the glyph builder is untested"
        )
    return found


def _settings(glyph_module, **overrides):
    base = {
        "size": 32,
        "images_per_character": 3,
        "min_fonts": 2,
        "max_characters_per_script": 4,
        "oversample": 2,
        "seed": 7,
        "font_pattern": "DejaVu*",
    }
    return glyph_module.GlyphSettings(**{**base, **overrides})


def test_builds_an_image_folder_per_character_with_its_manifest(
    glyph_module, fonts: list[Path], tmp_path: Path
) -> None:
    settings = _settings(glyph_module)
    out = glyph_module.build(tmp_path / "set", ("latin", "greek"), settings, fonts)
    items = scan_image_folder(out)
    identities = sorted({item.identity for item in items})
    assert len(identities) == 8
    assert {glyph_module.script_of(name) for name in identities} == {"latin", "greek"}
    for item in items:
        with Image.open(item.path) as image:
            assert image.mode == "L" and image.size == (32, 32)
            pixels = np.asarray(image)
        assert pixels.min() < 100 and pixels.max() == 255  # dark ink on white
    manifest = glyph_module.manifest(out)
    assert manifest["characters"] == 8 and manifest["images"] == len(items)
    assert manifest["settings"]["seed"] == 7 and set(manifest["scripts"]) == {"latin", "greek"}
    for font in manifest["fonts"]:
        assert hashlib.sha256(Path(font["path"]).read_bytes()).hexdigest() == font["sha256"]
    for row in manifest["identities"]:
        code_point = int(row["identity"].rsplit("-U", 1)[1], 16)
        assert 2 <= len(row["fonts"]) <= 3 and all(
            code_point in glyph_module.font_coverage(Path(f)) for f in _paths(fonts, row["fonts"])
        )


def _paths(fonts: list[Path], names: list[str]) -> list[Path]:
    by_name = {f.name: f for f in fonts}
    return [by_name[n] for n in names]


def test_the_same_settings_rebuild_the_same_pixels(
    glyph_module, fonts: list[Path], tmp_path: Path
) -> None:
    settings = _settings(glyph_module, max_characters_per_script=2)
    first = glyph_module.build(tmp_path / "a", ("cyrillic",), settings, fonts)
    second = glyph_module.build(tmp_path / "b", ("cyrillic",), settings, fonts)
    other = glyph_module.build(
        tmp_path / "c",
        ("cyrillic",),
        _settings(glyph_module, max_characters_per_script=2, seed=8),
        fonts,
    )
    pngs = sorted(p.relative_to(first) for p in first.rglob("*.png"))
    assert pngs == sorted(p.relative_to(second) for p in second.rglob("*.png"))
    assert all((first / p).read_bytes() == (second / p).read_bytes() for p in pngs)
    assert (
        json.loads((first / "manifest.json").read_text())["identities"]
        == json.loads((second / "manifest.json").read_text())["identities"]
    )

    def contents(folder: Path) -> set[bytes]:
        return {p.read_bytes() for p in folder.rglob("*.png")}

    assert contents(other) != contents(first)  # another seed picks or distorts differently


def test_a_complete_folder_is_reused_and_missing_fonts_are_named(
    glyph_module, fonts: list[Path], tmp_path: Path
) -> None:
    settings = _settings(glyph_module, max_characters_per_script=1)
    out = glyph_module.build(tmp_path / "set", ("latin",), settings, fonts)
    stamp = (out / "manifest.json").stat().st_mtime_ns
    assert glyph_module.build(out, ("latin",), settings, fonts) == out
    assert (out / "manifest.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="no font file matches"):
        glyph_module.build(tmp_path / "none", ("latin",), settings, [])
    with pytest.raises(ValueError, match="covered by enough fonts"):
        glyph_module.build(
            tmp_path / "thin", ("latin",), _settings(glyph_module, min_fonts=10_000), fonts
        )
    shutil.rmtree(tmp_path / "thin", ignore_errors=True)


def test_letters_leave_out_accents_marks_and_digits(glyph_module) -> None:
    letters = glyph_module.script_letters(
        [(0x30, 0x39), (0x41, 0x43), (0xC0, 0xC1), (0x300, 0x301)]
    )
    assert letters == [0x41, 0x42, 0x43]
