"""Reduced-scale decoding: large images decode small, and the embedding barely moves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamese.contracts.spec import InputSpec
from siamese.data.images import decode_image, load_pixels
from siamese.data.reduced_decode import draft_hook, pre_reduce
from siamese.engine import Embedder


def _photo(path: Path, size: tuple[int, int] = (640, 480), seed: int = 0, **save: object) -> Path:
    """A smooth, grainy RGB picture (like a photo, unlike flat synthetic shapes)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray((rng.random((6, 8, 3)) * 255).astype(np.uint8)).resize(
        size, Image.Resampling.BICUBIC
    )
    pixels = np.asarray(coarse, np.float32) + rng.normal(0, 6, (size[1], size[0], 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, **save)
    return path


def test_jpeg_draft_decodes_at_reduced_scale_in_the_tower_mode(tmp_path: Path) -> None:
    path = _photo(tmp_path / "big.jpg", quality=90)
    spec = InputSpec.create(32, 1)
    image = decode_image(path, before_load=draft_hook(spec))
    assert image.mode == "L"  # luma decoded directly, no RGB conversion
    assert (
        64 <= image.width < 640 and 64 <= image.height < 480
    )  # at least 2× the target, far below full size
    assert decode_image(path).size == (640, 480)


def test_rotated_jpeg_keeps_enough_resolution(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90°: the stored width becomes the displayed height
    path = _photo(tmp_path / "rotated.jpg", size=(960, 240), quality=90, exif=exif)
    spec = InputSpec.create((96, 24), 1)  # (height, width) of the displayed image's shape
    image = decode_image(path, before_load=draft_hook(spec))
    assert image.size[0] >= 24 * 2 and image.size[1] >= 96 * 2


@pytest.mark.parametrize("resize", ["stretch", "fit-crop"])
def test_reduced_pixels_are_close_to_full_decode(tmp_path: Path, resize: str) -> None:
    spec = InputSpec.create(32, 3, resize=resize)
    for name, save in (("big.jpg", {"quality": 90}), ("big.png", {})):
        path = _photo(tmp_path / name, **save)
        reduced = load_pixels(path, spec).astype(np.float32)
        full = load_pixels(path, spec, reduce=False).astype(np.float32)
        assert reduced.shape == full.shape == (32, 32, 3)
        assert (
            np.abs(reduced - full).mean() < 3.0
        )  # grey levels out of 255: filter and sub-pixel crop differences


def test_pre_reduce_leaves_small_images_alone() -> None:
    spec = InputSpec.create(32, 1)
    small = Image.new("L", (60, 60))
    assert pre_reduce(small, spec) is small
    width, height = pre_reduce(
        Image.new("L", (640, 480)), spec
    ).size  # stretch: each axis on its own
    assert 64 <= width < 96 and 64 <= height < 96


def test_embedding_barely_moves_with_draft_decode(
    tiny_model_path: Path, tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    """Cosine between embeddings of reduced-scale and full decodes of 640×480 JPEGs (reported)."""
    paths = [_photo(tmp_path / f"{i}.jpg", seed=i, quality=90) for i in range(6)]
    reduced = Embedder(tiny_model_path).embed_paths(paths).embeddings
    full = Embedder(tiny_model_path, reduce=False).embed_paths(paths).embeddings
    cosines = (reduced * full).sum(1) / (
        np.linalg.norm(reduced, axis=1) * np.linalg.norm(full, axis=1)
    )
    record_property("min_cosine_draft_vs_full", float(cosines.min()))
    print(f"draft vs full decode: min cosine {cosines.min():.6f}, mean {cosines.mean():.6f}")
    assert cosines.min() > 0.999
