"""Image decoding and preprocessing: the single implementation used by training and by the engine.

Pixels go file → Pillow image → mode conversion → resize (uint8 H×W×C) → uint8 C×H×W, the
model's input: the graph normalises itself (see siamese.contracts.spec.normalization_constants).
Training
caches the uint8 stage, so both sides share every step.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from siamese.contracts.spec import InputSpec
from siamese.core.errors import ImageDecodeError
from siamese.data.reduced_decode import draft_hook, pre_reduce

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}

#: Pillow formats we decode; anything else (EPS, PSD, PDF, ICO, …) is refused even under an image
#: name.
ALLOWED_FORMATS = (
    "BMP",
    "GIF",
    "JPEG",
    "PNG",
    "PPM",
    "TIFF",
    "WEBP",
)  # JPEG includes multi-picture (MPO)
#: Larger images are refused before their pixels are decoded (an 8000×8000 photo is 64 megapixels).
MAX_PIXELS = 64_000_000
#: Larger files are refused before they are opened.
MAX_FILE_BYTES = 256 * 2**20

#: What can be decoded: a file path, or the bytes of an upload (named by ``name=`` in errors).
ImageSource = str | os.PathLike[str] | bytes


def _check_size(name: str, size: int, max_bytes: int) -> None:
    """Refuse empty and oversized inputs before any decoding."""
    if size == 0:
        raise ImageDecodeError(name, "empty file (0 bytes)", kind="empty")
    if size > max_bytes:
        raise ImageDecodeError(
            name,
            f"file too large ({size / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:g} MiB)",
            kind="too_large",
        )


def _check_file(name: str, max_bytes: int) -> None:
    """Refuse what is not worth opening: missing, not a regular file, empty or huge."""
    try:
        info = os.stat(name)
    except FileNotFoundError:
        raise ImageDecodeError(name, "file not found", kind="missing") from None
    except OSError as exc:
        raise ImageDecodeError(name, f"cannot read ({exc.strerror})", kind="missing") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageDecodeError(name, "is a directory, not an image file", kind="unsupported")
    if not stat.S_ISREG(info.st_mode):
        raise ImageDecodeError(
            name, "not a regular file (device, pipe or socket)", kind="unsupported"
        )
    _check_size(name, info.st_size, max_bytes)


def _open(source: str | bytes, formats: Sequence[str] | None = None) -> Image.Image:
    """Open a path, or bytes through a fresh in-memory file (header only; nothing decoded yet)."""
    return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source, formats=formats)


def _unreadable_reason(source: str | bytes) -> str:
    """Why the allowed formats did not open a file: another format Pillow knows, or not an image."""
    try:
        with _open(source) as image:  # header only: names the format, decodes nothing
            return f"format {image.format} is not allowed (allowed: {', '.join(ALLOWED_FORMATS)})"
    # Only names a reason for a file already refused: any failure means "not an image we know".
    except Exception:  # noqa: BLE001
        return "not an image format Pillow can read"


def decode_image(
    source: ImageSource,
    *,
    before_load: Callable[[Image.Image], None] | None = None,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_FILE_BYTES,
) -> Image.Image:
    """Fully decode an image file or bytes (an animation's first frame); apply its EXIF orientation.

    ``before_load`` runs on the opened image before its pixels are decoded (e.g. the JPEG
    draft request of :func:`siamese.data.reduced_decode.draft_hook`). Uploaded bytes go
    through exactly the checks a file does, so the service needs no second set of rules.

    Args:
        source: a path, or the image's bytes.
        name: how errors name the image (default: the path; "<bytes>" for bytes).
        max_pixels: refuse images with more pixels than this (before decoding them).
        max_bytes: refuse larger inputs (before opening them).

    Raises:
        ImageDecodeError: naming the image, the reason and its ``kind`` (missing, empty, too
            large, not an image or format not allowed, corrupt or truncated). Callers processing
            many files report it and go on. A truncated file is refused, never half-decoded.
    """
    if isinstance(source, bytes):
        name = name or "<bytes>"
        _check_size(name, len(source), max_bytes)
    else:
        source = os.fspath(source)
        name = name or source
        _check_file(source, max_bytes)
    Image.init()  # registers every plugin once (cached), so the allow-list can name WEBP, TIFF…
    try:
        with _open(source, ALLOWED_FORMATS) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageDecodeError(
                    name,
                    f"too many pixels ({width}×{height}; the limit is {max_pixels / 1_000_000:g} "
                    "megapixels)",
                    kind="too_large",
                )
            if before_load is not None:
                before_load(image)
            image.load()  # decode now so a truncated file fails here, not later mid-batch
            try:
                return ImageOps.exif_transpose(image)
            # Pillow's EXIF parsing of hostile input can raise almost anything: one file's problem.
            except Exception as exc:  # noqa: BLE001
                raise ImageDecodeError(name, f"unreadable EXIF orientation ({exc})") from None
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(name, _unreadable_reason(source), kind="unsupported") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(
            name, f"refused as a decompression bomb ({exc})", kind="too_large"
        ) from None
    except MemoryError:
        raise ImageDecodeError(name, "not enough memory to decode", kind="too_large") from None
    # Pillow's decoders raise OSError, SyntaxError, ValueError, struct.error… on a damaged file:
    # the boundary where any of them becomes this file's one-line error, never a traceback.
    except Exception as exc:  # noqa: BLE001
        raise ImageDecodeError(
            name, f"corrupt or truncated image ({type(exc).__name__}: {exc})"
        ) from None


def convert_mode(image: Image.Image, mode: str) -> Image.Image:
    """Convert to "L" or "RGB", scaling 16/32-bit greys and flattening transparency onto white."""
    if image.mode == mode:
        return image
    if image.mode in _SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float32)
        if image.mode in _SIXTEEN_BIT_MODES:
            top = 65535.0  # the full 16-bit range, even for a dark image
        elif image.mode == "F":
            top = max(float(values.max(initial=1.0)), 1e-6)
        else:  # 32-bit integers carry no range: 8- or 16-bit data stored wide
            top = 65535.0 if values.max(initial=0) > 255 else 255.0
        grey = Image.fromarray(np.clip(values * (255.0 / top), 0, 255).astype(np.uint8), "L")
        return grey if mode == "L" else grey.convert(mode)
    if image.mode in ("RGBA", "LA", "PA", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert(mode)


def thumbnail(source: ImageSource, size: int, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """A copy of an image to show people (RGB or grey), at most ``size`` pixels on its longer side.

    The one thumbnail maker (the service's item pictures, the CLI's match sheets): it decodes
    under the same allow-list and limits as embedding, so a hostile file is refused here too.

    Raises:
        ImageDecodeError: as :func:`decode_image`.
    """
    image = decode_image(source, max_pixels=max_pixels)
    image.thumbnail((size, size))
    if image.mode not in ("RGB", "L"):  # 16-bit greys scaled, transparency flattened
        image = convert_mode(image, "RGB")
    return image


def resize_to_spec(
    image: Image.Image, spec: InputSpec, *, reduce: bool = True
) -> NDArray[np.uint8]:
    """Convert and resize an image by the spec's rule; return uint8 pixels shaped H×W×C.

    ``reduce`` first box-shrinks images much larger than the target (see reduced_decode).
    """
    image = convert_mode(image, spec.mode)
    if reduce:
        image = pre_reduce(image, spec)
    size = (spec.width, spec.height)
    resample = _RESAMPLE[spec.interpolation]
    if spec.resize == "fit-crop":
        image = ImageOps.fit(image, size, method=resample)
    elif image.size != size:
        image = image.resize(size, resample=resample)
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def load_pixels(
    source: ImageSource,
    spec: InputSpec,
    *,
    reduce: bool = True,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_FILE_BYTES,
) -> NDArray[np.uint8]:
    """Decode a file (or an upload's bytes) and resize it for the tower: uint8 H×W×C.

    ``reduce`` (default) decodes images much larger than the tower's input at reduced scale;
    training and serving both call this, so they see the same pixels either way. ``name``,
    ``max_pixels`` and ``max_bytes`` are passed to :func:`decode_image`.

    Raises:
        ImageDecodeError: the input cannot be decoded, or its colour mode cannot be converted.
    """
    image = decode_image(
        source,
        before_load=draft_hook(spec) if reduce else None,
        name=name,
        max_pixels=max_pixels,
        max_bytes=max_bytes,
    )
    try:
        return resize_to_spec(image, spec, reduce=reduce)
    # An exotic mode or a resize failure is this file's problem, not the batch's (boundary).
    except Exception as exc:  # noqa: BLE001
        label = name or ("<bytes>" if isinstance(source, bytes) else os.fspath(source))
        raise ImageDecodeError(
            label, f"cannot convert {image.mode} image ({type(exc).__name__}: {exc})"
        ) from None


def to_tensor(pixels: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """uint8 H×W×C (or N×H×W×C) pixels → the model's uint8 C×H×W (or N×C×H×W) input, contiguous."""
    axes = (2, 0, 1) if pixels.ndim == 3 else (0, 3, 1, 2)
    return np.ascontiguousarray(pixels.transpose(axes), dtype=np.uint8)


def preprocess_images(images: Sequence[Image.Image], spec: InputSpec) -> NDArray[np.uint8]:
    """Preprocess already-decoded Pillow images into one N×C×H×W uint8 batch."""
    if not images:
        return np.zeros((0, *spec.shape), dtype=np.uint8)
    return to_tensor(np.stack([resize_to_spec(image, spec) for image in images]))
