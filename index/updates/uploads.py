"""Images added to a gallery from bytes (the HTTP service's uploads), kept inside the gallery.

The gallery records paths and content hashes, so an image added from memory must outlive the
request: it is kept at ``GALLERY/uploads/<identity>/<sha256>.<ext>``, written atomically and
content-addressed (the same content under the same identity is stored once). An identity is
stored losslessly in the item table; only its folder name is derived from it. Names the file
system can hold are used as they are (``uploads/alice/``); a longer one becomes a readable
prefix plus a hash of the whole identity (``uploads/<first 64 bytes>~<32 hex>/``). Nothing
outside ``uploads/`` is ever listed or deleted here.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from siamese.core.errors import DataError
from siamese.core.files import sha256_bytes, write_bytes_atomic
from siamese.index.updates.sync import canonical_path

#: Folder inside the gallery where added uploads are kept.
UPLOADS_DIR = "uploads"
#: File-name length assumed where the file system does not say (ext4, XFS, Btrfs, tmpfs: 255).
DEFAULT_NAME_MAX = 255
#: Bytes of the identity kept readable in a hashed folder name.
_HASHED_PREFIX_BYTES = 64
#: File extension by Pillow's format name (anything else is stored as ``.img``).
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


def unusable_characters(text: str) -> str | None:
    """Why ``text`` cannot name an identity's folder because of the characters in it, or None."""
    for ch in text:
        if ch in "/\\":
            return "'/' or '\\'"
        category = unicodedata.category(ch)
        if category == "Cc":
            return "control characters"
        if category == "Cs":
            return "unpaired surrogates (not valid UTF-8)"
    return None


def name_max(folder: Path) -> int:
    """The longest file name (bytes) allowed where ``folder`` (or its nearest parent) lies."""
    for candidate in (folder, *folder.parents):
        try:
            return int(os.pathconf(candidate, "PC_NAME_MAX"))
        except (OSError, ValueError):
            continue
    return DEFAULT_NAME_MAX


def upload_folder_name(identity: str, limit: int = DEFAULT_NAME_MAX) -> str | None:
    """The folder (one path component) an identity's uploads live in; None if it can name none.

    The identity itself when it is a safe name of at most ``limit`` UTF-8 bytes; otherwise its
    longest prefix of at most 64 bytes, ``~`` and 32 hex digits of its SHA-256. Two identities
    sharing a folder would lose nothing (uploads are content-addressed and deleted only when no
    item refers to them), and a hash collision is not a practical concern.
    """
    if (
        not identity
        or identity in (".", "..")
        or identity.startswith(".")
        or unusable_characters(identity)
    ):
        return None
    encoded = identity.encode("utf-8")
    if len(encoded) <= limit:
        return identity
    prefix = encoded[: min(_HASHED_PREFIX_BYTES, max(limit - 33, 0))].decode("utf-8", "ignore")
    return f"{prefix}~{hashlib.sha256(encoded).hexdigest()[:32]}"


def store_upload(
    gallery_dir: str | os.PathLike[str], identity: str, data: bytes, image_format: str | None
) -> str:
    """Keep an image (already decoded and checked by the caller) durably inside the gallery.

    Returns its canonical path, as the gallery records it; add that path to the gallery next.

    Raises:
        DataError: ``identity`` can name no folder (empty, leading '.', '/' or control characters).
    """
    gallery_dir = Path(gallery_dir)
    folder = upload_folder_name(identity, name_max(gallery_dir))
    if folder is None:
        raise DataError(f"identity {identity[:40]!r} cannot name a folder")
    extension = _EXTENSIONS.get(image_format or "", "img")
    target = gallery_dir / UPLOADS_DIR / folder / f"{sha256_bytes(data)}.{extension}"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(target, data)
    return canonical_path(target)


def stored_uploads(
    gallery_dir: str | os.PathLike[str],
    *,
    identity: str | None = None,
    paths: Sequence[str] = (),
) -> list[Path]:
    """Upload files that are ``paths`` or lie in ``identity``'s upload folder.

    Nothing outside ``uploads/`` is ever listed, whatever the paths or the identity name.
    """
    root = Path(canonical_path(Path(gallery_dir) / UPLOADS_DIR))
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
