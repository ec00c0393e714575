"""FAISS index helpers: exact L2 search inside an id map, persisted atomically."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
from numpy.typing import NDArray

from siamese.errors import GalleryError
from siamese.io import write_bytes_atomic

#: Exact L2 search over vectors with our own stable 64-bit ids.
DEFAULT_FACTORY = "IDMap2,Flat"
METRIC = "l2"
#: Fewer queries than this search on one OpenMP thread: FAISS splits a single query's scan into
#: threads whose start and barrier cost more than they save, and on busy cores far more (one
#: query over 100k vectors: 1.3 ms on one thread, 6-23 ms on two shared cores; benchmarks/speed.py).
SINGLE_THREAD_BELOW = 20


def new_index(dim: int, factory: str = DEFAULT_FACTORY) -> faiss.Index:
    """An empty index of ``dim``-dimensional vectors built from a FAISS factory string."""
    try:
        return faiss.index_factory(dim, factory, faiss.METRIC_L2)
    except RuntimeError as exc:
        raise GalleryError(f"invalid FAISS factory string {factory!r} ({exc})") from exc


def add_vectors(index: faiss.Index, vectors: NDArray[np.float32], ids: NDArray[np.int64]) -> None:
    """Add vectors with explicit ids."""
    if len(vectors):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))


def write_index(index: faiss.Index, path: Path) -> None:
    """Serialise the index and publish it atomically at ``path``."""
    write_bytes_atomic(path, faiss.serialize_index(index).tobytes())


def read_index(path: Path) -> faiss.Index:
    """Load an index file, naming the file when FAISS cannot read it."""
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise GalleryError(f"{path}: unreadable FAISS index ({str(exc).strip().splitlines()[-1]})") from exc


def search(index: faiss.Index, queries: NDArray[np.float32], k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """k nearest neighbours by L2 distance (not squared); k is capped at the index size.

    Returns:
        (distances, ids), each Q×min(k, ntotal); FAISS's -1 placeholders never appear.
    """
    k = min(k, index.ntotal)
    if k <= 0 or len(queries) == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    previous = faiss.omp_get_max_threads()
    if len(queries) < SINGLE_THREAD_BELOW:
        faiss.omp_set_num_threads(1)  # OpenMP's setting is per calling thread: other searches are unaffected
    try:
        squared, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    finally:
        faiss.omp_set_num_threads(previous)
    return np.sqrt(np.maximum(squared, 0.0)), ids
