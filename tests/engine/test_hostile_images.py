"""Images from the wild: each is decoded correctly or refused with a reason.

Never a crash or a half-decode.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamese.contracts.spec import InputSpec
from siamese.core.errors import ImageDecodeError
from siamese.data.image_folder import scan_gallery_folder
from siamese.data.images import MAX_FILE_BYTES, decode_image, load_pixels

RGB = InputSpec.create(16, 3)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width×height pixels, with a few bytes of data.

    A decompression bomb.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def save(path: Path, image: Image.Image, **options: object) -> Path:
    image.save(path, **options)
    return path


def random_rgb(size: int = 24, seed: int = 0) -> Image.Image:
    return Image.fromarray(
        np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    )


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("zero.png", b"", "empty file"),
        ("text.jpg", b"this is not a picture at all", "not an image"),
        ("bomb.png", png_header_only(100_000, 100_000), "decompression bomb"),
        ("big.png", png_header_only(9_000, 9_000), "too many pixels"),
    ],
)
def test_refused_with_reason(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match=reason) as info:
        load_pixels(path, RGB)
    assert info.value.path == str(path)


def test_truncated_and_corrupt_files_are_refused(tmp_path: Path) -> None:
    png = save(tmp_path / "ok.png", random_rgb(48)).read_bytes()
    jpeg = save(tmp_path / "ok.jpg", random_rgb(48), quality=90).read_bytes()
    cases = {
        "half.png": png[: len(png) // 2],
        "half.jpg": jpeg[: len(jpeg) // 2],
        "flipped.png": png[:60] + bytes([png[60] ^ 0xFF]) + png[61:],  # chunk CRC catches it
        "header.jpg": jpeg[:20],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageDecodeError, match="corrupt or truncated|not an image"):
            load_pixels(tmp_path / name, RGB)


def test_wrong_extension_decodes_by_content(tmp_path: Path) -> None:
    image = random_rgb()
    save(tmp_path / "real.png", image)
    (tmp_path / "named.jpg").write_bytes((tmp_path / "real.png").read_bytes())
    np.testing.assert_array_equal(
        load_pixels(tmp_path / "named.jpg", RGB), load_pixels(tmp_path / "real.png", RGB)
    )


def test_formats_outside_the_allow_list_are_refused(tmp_path: Path) -> None:
    icon = save(tmp_path / "icon.ico", random_rgb(16))
    disguised = tmp_path / "icon.png"
    disguised.write_bytes(icon.read_bytes())
    with pytest.raises(ImageDecodeError, match="format ICO is not allowed"):
        decode_image(disguised)
    (tmp_path / "layers.psd").write_bytes(b"8BPS whatever")
    scan = scan_gallery_folder(tmp_path)
    assert {Path(p).name: r for p, r in scan.refused}[
        "layers.psd"
    ] == "format PSD (.psd) is not allowed"
    assert "icon.ico" in {Path(p).name for p, _ in scan.refused}


def test_not_regular_files_never_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(ImageDecodeError, match="not a regular file"):
        decode_image(tmp_path / "pipe.png")
    (tmp_path / "folder.jpg").mkdir()
    with pytest.raises(ImageDecodeError, match="is a directory"):
        decode_image(tmp_path / "folder.jpg")
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(ImageDecodeError, match="file too large"):
        decode_image(huge)


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    path = save(tmp_path / "cmyk.jpg", Image.new("CMYK", (16, 16), (0, 255, 255, 0)), quality=95)
    pixels = load_pixels(path, RGB)
    assert pixels.shape == (16, 16, 3)
    red, green, blue = pixels.reshape(-1, 3).mean(axis=0)
    assert red > 200 and green < 60 and blue < 60


def test_sixteen_bit_greys_keep_their_range(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 16).astype(np.uint16), (16, 1))
    path = save(tmp_path / "ramp16.png", Image.fromarray(ramp))
    grey = load_pixels(path, InputSpec.create(16, 1))[:, :, 0]
    assert grey[0, 0] == 0 and grey[0, -1] == 255 and np.all(np.diff(grey[0].astype(int)) >= 0)
    dark = save(tmp_path / "dark16.png", Image.fromarray(np.full((16, 16), 1000, np.uint16)))
    assert (
        load_pixels(dark, InputSpec.create(16, 1)).max() <= 4
    )  # 1000/65535 of white, not stretched to 8 bits


def test_transparency_is_flattened_onto_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (0, 0, 8, 16))
    pixels = load_pixels(save(tmp_path / "alpha.png", rgba), RGB)
    assert tuple(pixels[8, 2]) == (255, 0, 0) and tuple(pixels[8, 13]) == (255, 255, 255)
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.info["transparency"] = 1
    pixels = load_pixels(save(tmp_path / "palette.png", palette, transparency=1), RGB)
    assert pixels.min() == 255  # every pixel was the transparent index


def test_animation_uses_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    red, _green, blue = load_pixels(path, RGB).reshape(-1, 3).mean(axis=0)
    assert red > 200 and blue < 60


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (20, 10), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 10, 10))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display turns it 90° clockwise
    path = save(tmp_path / "rotated.jpg", image, exif=exif.tobytes(), quality=95)
    decoded = decode_image(path)
    assert decoded.size == (10, 20)
    top, bottom = (
        np.asarray(decoded.convert("L"))[:10].mean(),
        np.asarray(decoded.convert("L"))[10:].mean(),
    )
    assert top > 200 and bottom < 50  # the left half went to the top


def test_decoding_is_lossless_for_intact_files(tmp_path: Path) -> None:
    image = random_rgb(16)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    (tmp_path / "x.png").write_bytes(buffer.getvalue())
    np.testing.assert_array_equal(np.asarray(decode_image(tmp_path / "x.png")), np.asarray(image))
