"""A gallery folder's files: generation-numbered index files, checksummed before FAISS reads them.

Layout: ``manifest.json`` (the commit point), ``items.sqlite`` (+ its WAL files),
``index.<G>.faiss`` for the published generation G, ``.lock`` (the writer lock) and
``rejected.json`` (the last update's refused files). Anything else a writer finds (an index file of
an unpublished or superseded generation, a temporary file) is debris of an interrupted writer and is
removed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import faiss

from siamese.errors import GalleryError
from siamese.files import sha256_handle
from siamese.index.faiss_index import read_index
from siamese.index.manifest import Manifest

REJECTED_FILE = "rejected.json"
_INDEX_FILE = re.compile(r"index\.\d{6,}\.faiss")


def index_file_name(generation: int) -> str:
    """The index file of a generation."""
    return f"index.{generation:06d}.faiss"


def load_published_index(
    gallery_dir: Path, manifest: Manifest, *, mmap: bool = False
) -> faiss.Index:
    """The manifest's index, size and checksum checked first so FAISS never reads a damaged file.

    Raises:
        FileNotFoundError: the file is gone (a writer may have just replaced it: re-read the
            manifest).
        GalleryError: damaged (size or checksum differs from the manifest) or of the wrong shape.
    """
    path = gallery_dir / manifest.index_file
    with open(
        path, "rb"
    ) as handle:  # one open file for checking and reading: a writer may unlink the name meanwhile
        size = os.fstat(handle.fileno()).st_size
        if size != manifest.index_bytes:
            raise GalleryError(
                f"{path}: {size} bytes, manifest.json says {manifest.index_bytes}; the index file "
                "is truncated or damaged"
            )
        if sha256_handle(handle) != manifest.index_sha256:
            raise GalleryError(
                f"{path}: checksum does not match manifest.json; the index file is damaged"
            )
        same_file = Path(f"/proc/self/fd/{handle.fileno()}")
        index = read_index(same_file if same_file.exists() else path, mmap=mmap, name=path)
    if index.d != manifest.dimension or index.ntotal != manifest.count:
        raise GalleryError(
            f"{path}: holds {index.ntotal} vectors of dimension {index.d}, manifest.json says "
            f"{manifest.count} of {manifest.dimension}"
        )
    return index


def remove_debris(gallery_dir: Path, manifest: Manifest) -> list[str]:
    """Delete index files but the published one, and temporary leftovers; return their names."""
    removed = []
    for path in gallery_dir.iterdir():
        stale_index = _INDEX_FILE.fullmatch(path.name) and path.name != manifest.index_file
        temporary = path.name.startswith(".") and path.name.endswith(".tmp")
        if (stale_index or temporary) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed
