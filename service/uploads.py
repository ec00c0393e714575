"""Uploaded images: read within limits and decoded with the engine's own checks.

Uploads are decoded by :func:`siamese.data.images.load_pixels` from bytes, so they meet exactly
the rules gallery files meet (format allow-list, pixel and size limits, no half-decodes). Images
added to the gallery are kept by the gallery itself (:meth:`siamese.index.Gallery.store_upload`),
which owns the folder they live in.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass
from io import BytesIO

import numpy as np
from fastapi import UploadFile
from numpy.typing import NDArray
from PIL import Image

from siamese.contracts.spec import InputSpec
from siamese.data.images import load_pixels, to_tensor
from siamese.service.config import ServiceConfig
from siamese.service.errors import ApiError


@dataclass(frozen=True)
class Upload:
    """One uploaded file: a display name for messages and its bytes."""

    name: str
    data: bytes


def _display_name(filename: str | None, position: int) -> str:
    """The client's file name without any folder, bounded, for messages (never used as a path)."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = "".join(ch for ch in name if ch.isprintable())[:120]
    return name or f"upload {position + 1}"


async def read_uploads(files: list[UploadFile], config: ServiceConfig) -> list[Upload]:
    """Read the uploaded files (the body limit already bounds their total size).

    Raises:
        ApiError: no files (422) or more than ``config.max_files`` (413).
    """
    if not files:
        raise ApiError(
            422,
            "invalid_request",
            "no image uploaded; send the image in the multipart field 'file' (or 'files')",
        )
    if len(files) > config.max_files:
        raise ApiError(
            413,
            "too_many_files",
            f"{len(files)} images in one request; the limit is {config.max_files}",
        )
    uploads = []
    for position, upload in enumerate(files):
        uploads.append(Upload(_display_name(upload.filename, position), await upload.read()))
        await upload.close()
    return uploads


def preprocess(upload: Upload, spec: InputSpec, config: ServiceConfig) -> NDArray[np.uint8]:
    """Decode and resize one upload into a 1×C×H×W uint8 row (ImageDecodeError names the upload)."""
    pixels = load_pixels(
        upload.data,
        spec,
        name=upload.name,
        max_pixels=config.max_pixels,
        max_bytes=config.max_upload_bytes,
    )
    return to_tensor(pixels[None])


async def preprocess_all(
    uploads: list[Upload], spec: InputSpec, config: ServiceConfig, pool: Executor
) -> NDArray[np.uint8]:
    """Preprocess uploads in parallel on the decode pool (Pillow releases the GIL); N×C×H×W."""
    loop = asyncio.get_running_loop()
    rows = await asyncio.gather(
        *[loop.run_in_executor(pool, preprocess, upload, spec, config) for upload in uploads]
    )
    return rows[0] if len(rows) == 1 else np.concatenate(rows)


def image_format(upload: Upload) -> str | None:
    """Pillow's name for the upload's format ("JPEG", "PNG"…), read from the header only.

    Called on uploads already decoded in full once, so the header is known to be good.
    """
    with Image.open(BytesIO(upload.data)) as image:
        return image.format
