"""A gallery folder's files: generation-numbered index files, checksummed before FAISS reads them.

Layout: ``manifest.json`` (the commit point), ``items.sqlite`` (+ its WAL files),
``index.<G>.faiss`` for the published generation G, ``.lock`` (the writer lock) and
``rejected.json`` (the last update's refused files); an on-disk gallery adds the data files
its manifest lists (see :mod:`~siamese.index.ondisk.files`). Anything else a writer finds (an
index or data file of an unpublished or superseded generation, a temporary file) is debris of an
interrupted writer and is removed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import BinaryIO

import faiss

from siamese.core.errors import GalleryError
from siamese.core.files import sha256_handle
from siamese.index.ondisk.files import DATA_FILE_PATTERN
from siamese.index.ondisk.read import open_index
from siamese.index.search.faiss_index import read_index
from siamese.index.store.manifest import Manifest

REJECTED_FILE = "rejected.json"
_INDEX_FILE = re.compile(r"index\.\d{6,}\.faiss")
_DATA_FILE = re.compile(DATA_FILE_PATTERN)


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
    if manifest.parts is not None:  # built in parts and merged on disk: its own checks
        with open(gallery_dir / manifest.index_file, "rb") as handle:
            _check_checksum(gallery_dir / manifest.index_file, handle, manifest)
        index = open_index(gallery_dir, manifest)
        _check_shape(gallery_dir / manifest.index_file, index, manifest)
        return index
    path = gallery_dir / manifest.index_file
    with open(
        path, "rb"
    ) as handle:  # one open file for checking and reading: a writer may unlink the name meanwhile
        _check_checksum(path, handle, manifest)
        same_file = Path(f"/proc/self/fd/{handle.fileno()}")
        index = read_index(same_file if same_file.exists() else path, mmap=mmap, name=path)
    _check_shape(path, index, manifest)
    return index


def _check_checksum(path: Path, handle: BinaryIO, manifest: Manifest) -> None:
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


def _check_shape(path: Path, index: faiss.Index, manifest: Manifest) -> None:
    if index.d != manifest.dimension or index.ntotal != manifest.count:
        raise GalleryError(
            f"{path}: holds {index.ntotal} vectors of dimension {index.d}, manifest.json says "
            f"{manifest.count} of {manifest.dimension}"
        )


def remove_debris(gallery_dir: Path, manifest: Manifest) -> list[str]:
    """Delete index files but the published one, and temporary leftovers; return their names."""
    removed = []
    kept = {part["name"] for part in manifest.parts or []}
    for path in gallery_dir.iterdir():
        stale_index = _INDEX_FILE.fullmatch(path.name) and path.name != manifest.index_file
        stale_index = stale_index or (_DATA_FILE.fullmatch(path.name) and path.name not in kept)
        temporary = path.name.startswith(".") and path.name.endswith(".tmp")
        if (stale_index or temporary) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed
