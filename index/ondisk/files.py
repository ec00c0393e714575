"""The files of an on-disk gallery and their checksums, streamed in chunks.

An on-disk generation is the index header (``index.<M>.faiss``: the trained coarse quantizer and
the list directory, small), the merged inverted lists (``lists.<M>.ivfdata``, where M is the
generation of the last merge: hundreds of GB at 10^9 items), and, since that merge, a small
``part.<G>.faiss`` of added items and ``removed.<G>.npy`` of withdrawn ids. manifest.json lists
each data file ("parts") with its size, sha256 and a sha256 per 64 MiB chunk: verify streams
every chunk (bounded memory, never one read of the whole file); opening checks every size, every
small file in full and the first and last chunk of a large one, so a 2 s open stays possible at
10^7 items while truncation, a swapped file or a damaged header is still refused by name.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from siamese.core.errors import GalleryError

#: The prefix marking an index type as built in parts and merged on disk ("ondisk:IVF…,SQ8").
ONDISK_PREFIX = "ondisk:"
CHUNK_BYTES = 64 * 2**20
#: Files up to this size are checksummed in full whenever the gallery is opened.
OPEN_FULL_CHECK_BYTES = 256 * 2**20
_READ_BYTES = 2**20

ROLE_LISTS = "lists"
ROLE_DELTA = "delta"
ROLE_REMOVED = "removed"


def is_ondisk(index_type: str | None) -> bool:
    """Whether an index type is a merged on-disk one."""
    return bool(index_type) and index_type.replace(" ", "").startswith(ONDISK_PREFIX)


def base_type(index_type: str) -> str:
    """The FAISS factory string under the on-disk marker ("ondisk:IVF64,SQ8" -> "IVF64,SQ8")."""
    kind = index_type.replace(" ", "")
    return kind.removeprefix(ONDISK_PREFIX)


def lists_file_name(generation: int) -> str:
    """The merged inverted-list file written by the merge of ``generation``."""
    return f"lists.{generation:06d}.ivfdata"


def delta_file_name(generation: int) -> str:
    """The part holding the items added since the last merge, as of ``generation``."""
    return f"part.{generation:06d}.faiss"


def removed_file_name(generation: int) -> str:
    """The ids withdrawn since the last merge, as of ``generation`` (a .npy array)."""
    return f"removed.{generation:06d}.npy"


#: Names of the data files an on-disk generation may hold (the rest of a folder is debris).
DATA_FILE_PATTERN = r"(lists\.\d{6,}\.ivfdata|part\.\d{6,}\.faiss|removed\.\d{6,}\.npy)"


@dataclass(frozen=True)
class PartFile:
    """One data file of an on-disk generation, as the manifest records it."""

    role: str
    name: str
    count: int
    bytes: int
    sha256: str
    chunk_bytes: int
    chunks: list[str]
    merged_from: list[dict[str, Any]] = field(default_factory=list)
    #: The merge's phases (stream, train, fill, merge) in seconds, for the record.
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the manifest's form)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: Path) -> PartFile:
        """The record read back from a manifest.

        Raises:
            GalleryError: malformed record.
        """
        try:
            return cls(**data)
        except TypeError as exc:
            raise GalleryError(f"{where}: malformed part record ({exc})") from exc


@dataclass
class OnDiskState:
    """What an opened on-disk index carries beside FAISS's object (in its ``__dict__``).

    The inverted lists it concatenates (merged, added part), the ids removed since the merge and
    the selector that skips them in every search, and the objects that must outlive the index.
    """

    components: list[Any]
    removed: Any
    exclude: Any = None
    keep: tuple[Any, ...] = ()


#: The attribute of an opened on-disk index holding its OnDiskState (FAISS's SWIG objects
#: refuse new attributes through setattr; their __dict__ takes them).
STATE_ATTRIBUTE = "siamese_ondisk"


def ondisk_state(index: Any) -> OnDiskState | None:
    """The OnDiskState of an index opened by ondisk/read.py (None for any other index)."""
    return getattr(index, "__dict__", {}).get(STATE_ATTRIBUTE)


def checksum_file(path: Path, chunk_bytes: int | None = None) -> tuple[str, int, list[str]]:
    """sha256 of the whole file, its size and a sha256 per chunk, in one streamed pass."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    whole, chunks, size = hashlib.sha256(), [], 0
    with open(path, "rb") as handle:
        while True:
            piece = hashlib.sha256()
            taken = 0
            while taken < chunk_bytes:
                block = handle.read(min(_READ_BYTES, chunk_bytes - taken))
                if not block:
                    break
                whole.update(block)
                piece.update(block)
                taken += len(block)
            if not taken:
                break
            chunks.append(piece.hexdigest())
            size += taken
    return whole.hexdigest(), size, chunks


def record(path: Path, role: str, count: int, **extra: Any) -> PartFile:
    """Checksum a written data file into its manifest record."""
    chunk_bytes = CHUNK_BYTES
    digest, size, chunks = checksum_file(path, chunk_bytes)
    return PartFile(role, path.name, int(count), size, digest, chunk_bytes, chunks, **extra)


def check_part(gallery_dir: Path, part: PartFile, *, full: bool) -> None:
    """Refuse a missing, resized or damaged data file, naming it.

    ``full`` checks every chunk (verify); otherwise small files are checked in full and large
    ones by size and their first and last chunk (opening).

    Raises:
        FileNotFoundError: the file is gone (a writer may have just published a newer generation:
            the caller re-reads the manifest).
        GalleryError: the file differs from its manifest record.
    """
    path = gallery_dir / part.name
    size = path.stat().st_size
    if size != part.bytes:
        raise GalleryError(
            f"{path}: {size} bytes, manifest.json says {part.bytes}; the {part.role} file is "
            "truncated or damaged"
        )
    count = len(part.chunks)
    picked = (
        range(count) if full or size <= OPEN_FULL_CHECK_BYTES else sorted({0, max(count - 1, 0)})
    )
    with open(path, "rb") as handle:
        for n in picked:
            handle.seek(n * part.chunk_bytes)
            piece, left = hashlib.sha256(), part.chunk_bytes
            while left:
                block = handle.read(min(_READ_BYTES, left))
                if not block:
                    break
                piece.update(block)
                left -= len(block)
            if piece.hexdigest() != part.chunks[n]:
                raise GalleryError(
                    f"{path}: checksum of bytes {n * part.chunk_bytes}-"
                    f"{min((n + 1) * part.chunk_bytes, size)} does not match manifest.json; the "
                    f"{part.role} file is damaged"
                )


def fsync_file(path: Path) -> None:
    """Flush a file written through a memory map (the merged lists) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
