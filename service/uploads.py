"""Uploaded images: read within limits, decode with the engine's own checks, and store the ones added.

Uploads are decoded by :func:`siamese.images.load_pixels` from bytes, so they meet exactly
the rules gallery files meet (format allow-list, pixel and size limits, no half-decodes). Images
added to the gallery are kept at ``GALLERY/uploads/<identity>/<sha256>.<ext>`` (an identity too
long for a file name gets a hashed folder: :func:`siamese.service.validation.upload_folder_name`):
the gallery records paths and content hashes, so an added image must outlive the request.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from fastapi import UploadFile
from numpy.typing import NDArray
from PIL import Image
from siamese.index.sync import canonical_path
from siamese.service.config import ServiceConfig
from siamese.service.errors import ApiError
from siamese.service.validation import name_max, upload_folder_name

from siamese.files import sha256_bytes, write_bytes_atomic
from siamese.images import load_pixels, to_tensor
from siamese.spec import InputSpec

#: Folder inside the gallery where added uploads are kept.
UPLOADS_DIR = "uploads"
_EXTENSIONS = {
    "JPEG": "jpg",
    "PNG": "png",
    "BMP": "bmp",
    "GIF": "gif",
    "PPM": "ppm",
    "TIFF": "tiff",
    "WEBP": "webp",
    "MPO": "jpg",
}


@dataclass(frozen=True)
class Upload:
    """One uploaded file: a display name for messages and its bytes."""

    name: str
    data: bytes


def _display_name(filename: str | None, position: int) -> str:
    """The client's file name without any folder part, bounded, for messages (never used as a path)."""
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


def store_upload(gallery_dir: Path, identity: str, upload: Upload) -> str:
    """Keep a decoded-and-checked upload durably inside the gallery; return its canonical path (as the gallery records it).

    The same content under the same identity is stored once.
    """
    with Image.open(
        BytesIO(upload.data)
    ) as image:  # already fully decoded once: this reads the header only
        extension = _EXTENSIONS.get(image.format or "", "img")
    folder = upload_folder_name(identity, name_max(gallery_dir))
    if folder is None:  # check_identity refuses such names before anything is stored
        raise ApiError(400, "bad_identity", f"identity {identity[:40]!r} cannot name a folder")
    target = gallery_dir / UPLOADS_DIR / folder / f"{sha256_bytes(upload.data)}.{extension}"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(target, upload.data)
    return canonical_path(target)


def stored_uploads(
    gallery_dir: Path, *, identity: str | None = None, paths: list[str] = ()
) -> list[Path]:
    """Upload files that are ``paths`` or lie in ``identity``'s upload folder (nothing outside uploads/ ever)."""
    root = Path(canonical_path(gallery_dir / UPLOADS_DIR))
    found = [Path(p) for p in paths]
    name = None if identity is None else upload_folder_name(identity, name_max(root))
    if name is not None:  # an identity like "../x" names no upload folder
        folder = root / name
        if folder.parent == root and folder.is_dir():
            found += sorted(folder.iterdir())
    return [p for p in found if p.parent.parent == root and p.is_file()]


def forget_uploads(candidates: list[Path], still_referenced: set[str]) -> int:
    """Delete upload files no published item refers to any more (after a removal); return how many.

    Removing an item must not leave its picture behind. Files are deleted only after the removal
    is published, so the current generation never points at a missing file.
    """
    deleted = 0
    for path in candidates:
        if str(path) not in still_referenced:
            path.unlink(missing_ok=True)
            deleted += 1
    for folder in {p.parent for p in candidates}:
        try:
            folder.rmdir()  # only if now empty
        except OSError:
            pass
    return deleted
