"""Reading an on-disk gallery's index: merged lists memory-mapped, the added part, removed ids.

Kept apart from the build (:mod:`siamese.index.ondisk.build`) so that opening a gallery
(:mod:`~siamese.index.store.gallery_files`) needs nothing of the writing side: imports in index/ go
one way.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import faiss
import numpy as np
from numpy.typing import NDArray

from siamese.core.errors import GalleryError
from siamese.index.ondisk.files import (
    ROLE_DELTA,
    ROLE_REMOVED,
    STATE_ATTRIBUTE,
    OnDiskState,
    PartFile,
    check_part,
)
from siamese.index.search import faiss_index as fx
from siamese.index.store.manifest import Manifest

_stdout_lock = threading.Lock()


def parts_of(manifest: Manifest) -> list[PartFile]:
    """The manifest's data-file records (empty for in-memory indexes)."""
    return [PartFile.from_dict(part, Path(manifest.index_file)) for part in manifest.parts or []]


def role(parts: Sequence[PartFile], role: str) -> PartFile | None:
    return next((part for part in parts if part.role == role), None)


# ----------------------------------------------------------------------------------- reading
@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Silence C stdout: FAISS prints a line on reading with IO_FLAG_ONDISK_SAME_DIR (--json!)."""
    libc = ctypes.CDLL(None)
    with _stdout_lock:
        sys.stdout.flush()
        libc.fflush(None)
        saved = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            yield
        finally:
            libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
            os.close(devnull)


def _read_header(path: Path) -> faiss.Index:
    """The header with its lists memory-mapped read-only from the file beside it."""
    try:
        with quiet_stdout():
            return faiss.read_index(
                str(path), faiss.IO_FLAG_ONDISK_SAME_DIR | faiss.IO_FLAG_READ_ONLY
            )
    except RuntimeError as exc:
        raise GalleryError(f"{path}: unreadable FAISS index ({fx.faiss_reason(exc)})") from exc


def trained_empty(header: Path) -> faiss.Index:
    """The trained index of a header with empty in-memory lists: a part to fill."""
    index = faiss.read_index(str(header), faiss.IO_FLAG_SKIP_IVF_DATA)
    ivf = faiss.extract_index_ivf(index)
    lists = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    ivf.replace_invlists(lists, True)
    lists.this.disown()  # the index frees it now
    index.ntotal = ivf.ntotal = 0
    return index


def load_removed(path: Path) -> NDArray[np.int64]:
    try:
        removed = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise GalleryError(f"{path}: unreadable list of removed ids ({exc})") from exc
    if removed.dtype != np.int64 or removed.ndim != 1:
        raise GalleryError(f"{path}: expected a 1-D int64 array of removed ids")
    return removed


#: FAISS starts ``prefetch_nthread`` threads (32 by default) on every search to touch the probed
#: lists' pages before scanning them: 3 ms per single query, four times the scan itself (2·10^5
#: vectors, nprobe 64: 4.1 against 0.9 ms; 13 ms at 10^6). Served lists sit in the page cache.
NO_PREFETCH_THREADS = 0


def open_index(gallery_dir: Path, manifest: Manifest, *, full_check: bool = False) -> faiss.Index:
    """The generation's index: merged lists (memory-mapped), the added part, removed ids skipped.

    Every data file is checked against its manifest record first (``full_check``: every chunk).

    Raises:
        GalleryError: a data file is missing or differs from its record (named), or unreadable.
    """
    parts = parts_of(manifest)
    for part in parts:
        check_part(gallery_dir, part, full=full_check)
    index = _read_header(gallery_dir / manifest.index_file)
    ivf = faiss.extract_index_ivf(index)
    base = faiss.downcast_InvertedLists(ivf.invlists)
    if isinstance(base, faiss.OnDiskInvertedLists):
        base.prefetch_nthread = NO_PREFETCH_THREADS
    components, keep = [base], []
    delta = role(parts, ROLE_DELTA)
    if delta is not None:
        added = fx.read_index(gallery_dir / delta.name, name=gallery_dir / delta.name)
        if added.d != index.d or faiss.extract_index_ivf(added).nlist != ivf.nlist:
            raise GalleryError(f"{gallery_dir / delta.name}: does not fit {manifest.index_file}")
        components.append(faiss.extract_index_ivf(added).invlists)
        keep.append(added)
    gone = role(parts, ROLE_REMOVED)
    removed = load_removed(gallery_dir / gone.name) if gone else np.zeros(0, np.int64)
    if len(components) > 1:
        ivf.own_invlists = False
        base.this.own(True)  # the Python object frees the mapped lists with the index
        pointers = faiss.InvertedListsPtrVector()
        for lists in components:
            pointers.push_back(lists)
        stacked = faiss.HStackInvertedLists(pointers.size(), pointers.data())
        ivf.replace_invlists(stacked, True)
        stacked.this.disown()
    stored = sum(lists.compute_ntotal() for lists in components)
    index.ntotal = ivf.ntotal = stored - len(removed)
    state = OnDiskState(components, removed, keep=(base, keep))
    if len(removed):
        batch = faiss.IDSelectorBatch(removed)
        state.exclude, state.keep = faiss.IDSelectorNot(batch), (base, keep, batch)
    index.__dict__[STATE_ATTRIBUTE] = state
    return index
