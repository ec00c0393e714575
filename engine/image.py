"""Image decoding and preprocessing: the single implementation used by training and by the engine.

Pixels go file → Pillow image → mode conversion → resize (uint8 H×W×C) → normalised float32 C×H×W.
Training caches the uint8 stage and normalises with :func:`normalize`, so both sides share every step.
"""

from __future__ import annotations

import os
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


def decode_image(path: str | os.PathLike[str], *, before_load: Callable[[Image.Image], None] | None = None) -> Image.Image:
    """Fully decode an image file and apply its EXIF orientation.

    ``before_load`` runs on the opened image before its pixels are decoded (e.g. the JPEG
    draft request of :func:`siamese.engine.reduced_decode.draft_hook`).

    Raises:
        ImageDecodeError: naming the path and the reason (missing, not an image, corrupt,
            truncated, too many pixels). Callers processing many files report it and go on.
    """
    name = os.fspath(path)
    try:
        with Image.open(name) as image:
            if before_load is not None:
                before_load(image)
            image.load()  # decode now so a truncated file fails here, not later mid-batch
            return ImageOps.exif_transpose(image)
    except FileNotFoundError:
        raise ImageDecodeError(name, "file not found") from None
    except IsADirectoryError:
        raise ImageDecodeError(name, "is a directory, not an image file") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(name, "not an image format Pillow can read") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(name, f"refused as a decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(name, f"corrupt or truncated image ({exc})") from None


def convert_mode(image: Image.Image, mode: str) -> Image.Image:
    """Convert to "L" or "RGB", scaling 16/32-bit greys and flattening transparency onto white."""
    if image.mode == mode:
        return image
    if image.mode in _SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float32)
        top = 65535.0 if image.mode != "F" and values.max(initial=0) > 255 else 255.0
        if image.mode == "F":
            top = max(float(values.max(initial=1.0)), 1e-6)
        grey = Image.fromarray(np.clip(values * (255.0 / top), 0, 255).astype(np.uint8), "L")
        return grey if mode == "L" else grey.convert(mode)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
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
    """Decode a file and resize it for the tower: uint8 H×W×C. Raises ImageDecodeError.

    ``reduce`` (default) decodes images much larger than the tower's input at reduced scale;
    training and serving both call this, so they see the same pixels either way.
    """
    hook = draft_hook(spec) if reduce else None
    return resize_to_spec(decode_image(path, before_load=hook), spec, reduce=reduce)


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
