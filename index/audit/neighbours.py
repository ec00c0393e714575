"""What an audit reads from a gallery: every item's identity, content hash and vector, and the
k nearest neighbours of every item found by the gallery's own index.

No all-pairs matrix: each item is a query of the index (batched), so the cost is that of N
searches of whatever index the gallery has (exhaustive for Flat, probed lists for IVF and on-disk,
the graph for HNSW). The vectors are the ones stored beside the items (the item database keeps
each embedding), so an audit needs neither the model nor the images.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from siamese.core.errors import GalleryError
from siamese.index.published import GalleryReader
from siamese.index.store.item_store import VISIBLE

#: Items read from the database per fetch, and queries per index search.
_ROWS_PER_FETCH = 20_000
SEARCH_BATCH = 8192


@dataclass
class GalleryVectors:
    """The published items of one generation as arrays, in id order (row n is ids[n])."""

    ids: NDArray[np.int64]
    #: Identity of each row as an index into ``names``.
    labels: NDArray[np.int64]
    names: list[str]
    #: Content hash of each row ("" where the writer recorded none, e.g. staged vectors).
    hashes: list[str]
    vectors: NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.ids)

    def rows_of(self, item_ids: NDArray[np.int64]) -> NDArray[np.int64]:
        """Row of each item id; -1 for ids this generation does not hold (and for -1 itself)."""
        if not len(self.ids):
            return np.full(np.shape(item_ids), -1, np.int64)
        rows = np.minimum(np.searchsorted(self.ids, item_ids), len(self.ids) - 1)
        return np.where(self.ids[rows] == item_ids, rows, -1)


def read_gallery(gallery: GalleryReader) -> GalleryVectors:
    """Every visible item's id, identity, hash and stored vector, read in one pass.

    Raises:
        GalleryError: the item database cannot be read, or items have no stored vector and the
            index cannot give them back.
    """
    dim = gallery.manifest.dimension
    count = gallery.items.count()
    ids = np.zeros(count, np.int64)
    vectors = np.zeros((count, dim), np.float32)
    identities: list[str] = []
    hashes: list[str] = []
    missing: list[int] = []
    path = gallery.items.path
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            cursor = db.execute(
                f"SELECT id, identity, sha256, vector FROM items WHERE {VISIBLE} ORDER BY id",
                {"gen": gallery.generation},
            )
            n = 0
            while rows := cursor.fetchmany(_ROWS_PER_FETCH):
                for item_id, identity, sha256, blob in rows:
                    if n >= count:
                        raise GalleryError(f"{path}: more item rows than the gallery counts")
                    ids[n] = item_id
                    identities.append(identity)
                    hashes.append(sha256)
                    if blob is None or len(blob) != 4 * dim:
                        missing.append(n)
                    else:
                        vectors[n] = np.frombuffer(blob, np.float32)
                    n += 1
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise GalleryError(f"{path}: unreadable item database ({exc})") from exc
    if missing:
        vectors[missing] = _reconstruct(gallery, ids[missing])
    names, labels = np.unique(np.asarray(identities, dtype=object), return_inverse=True)
    return GalleryVectors(ids, labels.astype(np.int64), [str(x) for x in names], hashes, vectors)


def _reconstruct(gallery: GalleryReader, ids: NDArray[np.int64]) -> NDArray[np.float32]:
    """Vectors the item database lacks, from the index (IDMap2 keeps them; IVF needs a map)."""
    try:
        return np.stack([gallery.index.reconstruct(int(i)) for i in ids]).astype(np.float32)
    except RuntimeError:
        raise GalleryError(
            f"{gallery.gallery_dir}: {len(ids)} items have no stored vector and the "
            f"{gallery.manifest.index_type} index cannot give them back; rebuild the gallery"
        ) from None


def nearest_neighbours(
    gallery: GalleryReader,
    data: GalleryVectors,
    k: int,
    *,
    threads: int | None = None,
    batch: int = SEARCH_BATCH,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Each item's k nearest other items: (distances, rows), N×k, closest first.

    The item itself is dropped wherever the index returns it (an approximate index may not);
    slots the index left empty hold row -1 and distance inf.
    """
    count = len(data)
    distances = np.full((count, k), np.inf, np.float32)
    rows = np.full((count, k), -1, np.int64)
    for start in range(0, count, batch):
        stop = min(count, start + batch)
        found_d, found_ids = gallery.nearest(data.vectors[start:stop], k + 1, threads=threads)
        found_rows = data.rows_of(found_ids)
        found_d = np.where(found_rows >= 0, found_d, np.inf).astype(np.float32)
        own = np.arange(start, stop)[:, None]
        drop = found_rows == own
        # No self-match among the k+1: drop the farthest instead, so k remain either way.
        drop[~drop.any(axis=1), -1] = True
        order = np.argsort(drop, axis=1, kind="stable")[:, :k]
        width = order.shape[1]
        distances[start:stop, :width] = np.take_along_axis(found_d, order, axis=1)
        rows[start:stop, :width] = np.take_along_axis(found_rows, order, axis=1)
    return distances, rows
