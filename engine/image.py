"""Image decoding and preprocessing: the single implementation used by training and by the engine.

Pixels go file → Pillow image → mode conversion → resize (uint8 H×W×C) → normalised float32 C×H×W.
Training caches the uint8 stage and normalises with :func:`normalize`, so both sides share every step.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from siamese.engine.reduced_decode import draft_hook, pre_reduce
from siamese.errors import ImageDecodeError
from siamese.spec import InputSpec

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}

#: Pillow formats we decode; anything else (EPS, PSD, PDF, ICO, …) is refused even under an image name.
ALLOWED_FORMATS = ("BMP", "GIF", "JPEG", "PNG", "PPM", "TIFF", "WEBP")  # JPEG includes multi-picture (MPO)
#: Larger images are refused before their pixels are decoded (an 8000×8000 photo is 64 megapixels).
MAX_PIXELS = 64_000_000
#: Larger files are refused before they are opened.
MAX_FILE_BYTES = 256 * 2**20


def _check_file(name: str) -> None:
    """Refuse what is not worth opening: missing, not a regular file, empty or huge."""
    try:
        info = os.stat(name)
    except FileNotFoundError:
        raise ImageDecodeError(name, "file not found") from None
    except OSError as exc:
        raise ImageDecodeError(name, f"cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageDecodeError(name, "is a directory, not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise ImageDecodeError(name, "not a regular file (device, pipe or socket)")
    if info.st_size == 0:
        raise ImageDecodeError(name, "empty file (0 bytes)")
    if info.st_size > MAX_FILE_BYTES:
        raise ImageDecodeError(name, f"file too large ({info.st_size / 2**20:.0f} MiB; the limit is {MAX_FILE_BYTES // 2**20} MiB)")


def _unreadable_reason(name: str) -> str:
    """Why the allowed formats did not open a file: another format Pillow knows, or not an image."""
    try:
        with Image.open(name) as image:  # header only: names the format, decodes nothing
            return f"format {image.format} is not allowed (allowed: {', '.join(ALLOWED_FORMATS)})"
    except Exception:  # any failure here just means "not an image we know"
        return "not an image format Pillow can read"


def decode_image(path: str | os.PathLike[str], *, before_load: Callable[[Image.Image], None] | None = None) -> Image.Image:
    """Fully decode an image file (an animation's first frame) and apply its EXIF orientation.

    ``before_load`` runs on the opened image before its pixels are decoded (e.g. the JPEG
    draft request of :func:`siamese.engine.reduced_decode.draft_hook`).

    Raises:
        ImageDecodeError: naming the path and the reason (missing, empty, not an image, format
            not allowed, corrupt, truncated, too many pixels). Callers processing many files
            report it and go on. A truncated file is refused, never half-decoded.
    """
    name = os.fspath(path)
    _check_file(name)
    Image.init()  # registers every plugin once (cached), so the allow-list can name WEBP, TIFF…
    try:
        with Image.open(name, formats=ALLOWED_FORMATS) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageDecodeError(name, f"too many pixels ({width}×{height}; the limit is {MAX_PIXELS // 1_000_000} megapixels)")
            if before_load is not None:
                before_load(image)
            image.load()  # decode now so a truncated file fails here, not later mid-batch
            try:
                return ImageOps.exif_transpose(image)
            except Exception as exc:
                raise ImageDecodeError(name, f"unreadable EXIF orientation ({exc})") from None
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(name, _unreadable_reason(name)) from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(name, f"refused as a decompression bomb ({exc})") from None
    except MemoryError:
        raise ImageDecodeError(name, "not enough memory to decode") from None
    except Exception as exc:  # OSError, SyntaxError, ValueError, struct.error…: all mean a damaged file
        raise ImageDecodeError(name, f"corrupt or truncated image ({type(exc).__name__}: {exc})") from None


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
    if image.mode in ("RGBA", "LA", "PA", "RGBa") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert(mode)


def resize_to_spec(image: Image.Image, spec: InputSpec, *, reduce: bool = True) -> NDArray[np.uint8]:
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


def load_pixels(path: str | os.PathLike[str], spec: InputSpec, *, reduce: bool = True) -> NDArray[np.uint8]:
    """Decode a file and resize it for the tower: uint8 H×W×C.

    ``reduce`` (default) decodes images much larger than the tower's input at reduced scale;
    training and serving both call this, so they see the same pixels either way.

    Raises:
        ImageDecodeError: the file cannot be decoded, or its colour mode cannot be converted.
    """
    image = decode_image(path, before_load=draft_hook(spec) if reduce else None)
    try:
        return resize_to_spec(image, spec, reduce=reduce)
    except Exception as exc:  # an exotic mode or a resize failure is this file's problem, not the batch's
        raise ImageDecodeError(os.fspath(path), f"cannot convert {image.mode} image ({type(exc).__name__}: {exc})") from None


def normalize(pixels: NDArray[np.uint8], spec: InputSpec) -> NDArray[np.float32]:
    """Turn uint8 pixels (H×W×C or N×H×W×C) into the tower's float32 input (C×H×W or N×C×H×W)."""
    batched = pixels if pixels.ndim == 4 else pixels[None]
    mean = np.asarray(spec.mean, dtype=np.float32) * 255.0
    scale = 1.0 / (np.asarray(spec.std, dtype=np.float32) * 255.0)
    out = (batched.astype(np.float32) - mean) * scale
    out = np.ascontiguousarray(out.transpose(0, 3, 1, 2))
    return out if pixels.ndim == 4 else out[0]


def preprocess_images(images: Sequence[Image.Image], spec: InputSpec) -> NDArray[np.float32]:
    """Preprocess already-decoded Pillow images into one N×C×H×W float32 batch."""
    if not images:
        return np.zeros((0, *spec.shape), dtype=np.float32)
    return normalize(np.stack([resize_to_spec(image, spec) for image in images]), spec)
