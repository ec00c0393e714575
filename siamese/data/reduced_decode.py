"""Reduced-scale decoding: images much larger than the tower's input are decoded small.

A 640×480 JPEG feeding a 96×96 tower need not be decoded at full size: libjpeg can scale the
DCT by 1/2, 1/4 or 1/8 while decoding ("draft" mode) and, for a grey tower, decode the luma
channel alone. Other formats are shrunk by an integer box filter before the final resize
(Pillow's ``reducing_gap``). Both keep at least ``gap`` times the target size, so the final
antialiased resize still does the real filtering and embeddings barely move (a test reports
the cosine against a full decode).

The hook composes with :func:`siamese.data.images.decode_image`: it runs on the opened image
before its pixels are loaded, and changes nothing else about decoding.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from PIL import Image

from siamese.contracts.spec import InputSpec

#: Keep at least this many times the target size before the final resize (Pillow's thumbnail
#: default).
REDUCING_GAP = 2.0
#: EXIF orientations that swap width and height (transpose, rotate 90/270, transverse).
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112


def _target_size(image: Image.Image, spec: InputSpec, gap: float) -> tuple[int, int]:
    """The smallest (width, height) to decode, in the file's own orientation."""
    width, height = math.ceil(spec.width * gap), math.ceil(spec.height * gap)
    if spec.resize == "fit-crop":
        # The shorter side is scaled to fit, so it alone bounds the reduction.
        side = max(width, height)
        width = height = side
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    # Unreadable EXIF (any Pillow error): decode_image reports real damage, here just do not swap.
    except Exception:  # noqa: BLE001
        orientation = 1
    return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)


def draft_hook(spec: InputSpec, gap: float = REDUCING_GAP) -> Callable[[Image.Image], None]:
    """A ``before_load`` hook for decode_image.

    JPEG DCT-scaled (and luma-only for grey) decoding.
    """

    def before_load(image: Image.Image) -> None:
        if image.format != "JPEG":
            return  # draft() is a no-op elsewhere; skip the EXIF read
        image.draft(spec.mode, _target_size(image, spec, gap))

    return before_load


def pre_reduce(image: Image.Image, spec: InputSpec, gap: float = REDUCING_GAP) -> Image.Image:
    """Shrink by an integer box filter while staying at least ``gap`` × the target (any format)."""
    factor = int(min(image.width / spec.width, image.height / spec.height) / gap)
    if spec.resize == "stretch":
        # Stretch resizes each axis independently; reduce each as far as its own ratio allows.
        fx, fy = int(image.width / (spec.width * gap)), int(image.height / (spec.height * gap))
        return image.reduce((fx, fy)) if max(fx, fy) >= 2 and min(fx, fy) >= 1 else image
    return image.reduce(factor) if factor >= 2 else image
