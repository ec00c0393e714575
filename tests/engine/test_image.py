"""Decoding and preprocessing: modes, resize rules, normalisation, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamese.contracts.spec import InputSpec, normalize_pixels
from siamese.core.errors import ImageDecodeError
from siamese.data.images import convert_mode, decode_image, load_pixels, to_tensor


def test_normalize_matches_torchvision_to_tensor_and_normalize() -> None:
    import torch
    from torchvision.transforms import functional as TF

    spec = InputSpec.create(8, 3, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    expected = TF.normalize(TF.to_tensor(pixels), list(spec.mean), list(spec.std)).numpy()
    np.testing.assert_allclose(normalize_pixels(to_tensor(pixels), spec), expected, atol=1e-5)
    batch = to_tensor(pixels[None])
    assert batch.shape == (1, 3, 8, 8) and batch.dtype == np.uint8
    assert isinstance(torch.from_numpy(normalize_pixels(batch, spec)), torch.Tensor)


def test_resize_rules(tmp_path: Path) -> None:
    wide = np.zeros((20, 60), dtype=np.uint8)
    wide[:, 20:40] = 255  # bright centre third
    Image.fromarray(wide).save(tmp_path / "wide.png")
    stretched = load_pixels(tmp_path / "wide.png", InputSpec.create(12, 1))
    cropped = load_pixels(tmp_path / "wide.png", InputSpec.create(12, 1, resize="fit-crop"))
    assert stretched.shape == cropped.shape == (12, 12, 1)
    assert cropped.mean() > 200 and stretched.mean() < 120  # crop keeps only the bright centre


def test_modes_are_converted(tmp_path: Path) -> None:
    grey16 = Image.fromarray(np.full((10, 10), 65535, dtype=np.uint16))
    assert np.asarray(convert_mode(grey16, "L")).min() == 255
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.asarray(convert_mode(rgba, "RGB")).min() == 255  # transparent becomes white
    cmyk = Image.new("CMYK", (4, 4), (0, 0, 0, 0))
    assert convert_mode(cmyk, "RGB").mode == "RGB"
    assert load_pixels(
        _save(tmp_path / "p.png", Image.new("P", (5, 5))), InputSpec.create(8, 3)
    ).shape == (8, 8, 3)


def _save(path: Path, image: Image.Image) -> Path:
    image.save(path)
    return path


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty file"), (b"hello world", "not an image"), (None, "file not found")],
)
def test_decode_errors_name_the_file(tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "x.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match=reason) as info:
        decode_image(path)
    assert info.value.path == str(path)


def test_truncated_jpeg_is_rejected(tmp_path: Path) -> None:
    full = tmp_path / "full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        full
    )
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[:600])
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        decode_image(cut)
