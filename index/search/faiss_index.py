"""FAISS index helpers: index types by factory string, training, ids, search parameters, (mmap) I/O.

Every index searches by L2 distance and holds our own stable 64-bit item ids: IVF indexes store
ids natively; Flat, HNSW, SQ and PQ are wrapped in ``IDMap2``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from siamese.core.errors import GalleryError
from siamese.core.files import atomic_path, sha256_handle
from siamese.index.ondisk.files import base_type, is_ondisk, ondisk_state

#: Exact search: the default index type for new galleries.
DEFAULT_INDEX = "Flat"
METRIC = "l2"
#: Fewer queries than this search on one OpenMP thread: FAISS splits a single query's scan into
#: threads whose start and barrier cost more than they save, and on busy cores far more (one
#: query over 100k vectors: 1.3 ms on one thread, 6-23 ms on two shared cores; benchmarks/speed.py).
SINGLE_THREAD_BELOW = 20
#: ...unless each query scans at least this many codes of an IVF index: then its probed lists are
#: split over the cores (FAISS parallel_mode 1, one heap per thread, merged), whose fork and join
#: cost microseconds against the milliseconds of the scan (256-d SQ8 codes: about 5 ms per 20k
#: codes on one core here; a 10^7 gallery at nprobe 128 scans about 156k).
SPLIT_PROBES_FROM_CODES = 20_000
#: FAISS IndexIVF.parallel_mode values: over queries (its default), over one query's probed lists.
_PARALLEL_OVER_QUERIES, _PARALLEL_OVER_PROBES = 0, 1
#: The search parameter each family understands and the values tried in tuning, cheapest first.
TUNING_LADDERS = {
    "nprobe": (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
    "efSearch": (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024),
}
_MMAP_FLAGS = (
    faiss.IO_FLAG_MMAP_IFC
)  # maps flat codes and IVF lists alike (IO_FLAG_MMAP would add nothing)
#: Training sample: this many points per centroid (FAISS warns below 39), at least
#: _MIN_TRAINING_SAMPLE in all.
_TRAINING_POINTS_PER_CENTROID = 64
_MIN_TRAINING_SAMPLE = 20_000
_PQ_TRAINING_ITERATIONS = 10


def faiss_reason(exc: BaseException) -> str:
    """A FAISS error's useful part ("could not parse index string X"), without the C++ location."""
    line = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^Error in .*? at \S+:\d+: ", "", line)


def faiss_factory(index_type: str) -> str:
    """The factory string actually built for a user's index type ("HNSW32" -> "IDMap2,HNSW32")."""
    index_type = base_type(index_type)
    return index_type if index_type.startswith(("IVF", "IDMap")) else f"IDMap2,{index_type}"


def new_index(dim: int, index_type: str = DEFAULT_INDEX) -> faiss.Index:
    """An empty index for ``dim``-dimensional vectors of a type such as "HNSW32" or "IVF1024,PQ16".

    Raises:
        GalleryError: FAISS does not understand the type, or it does not fit the dimension.
    """
    if is_ondisk(index_type) and not base_type(index_type).startswith("IVF"):
        raise GalleryError(
            f"invalid index type {index_type!r}: an on-disk index is an inverted file, e.g. "
            "ondisk:IVF4096_HNSW32,SQ8 or ondisk:IVF1024,Flat"
        )
    try:
        return faiss.index_factory(dim, faiss_factory(index_type), faiss.METRIC_L2)
    except RuntimeError as exc:
        reason = faiss_reason(exc)
        raise GalleryError(
            f"invalid index type {index_type!r} for dimension {dim} ({reason}); try Flat, HNSW32, "
            "IVF1024,Flat, IVF1024,PQ16 or SQ8"
        ) from exc


def is_exact(index_type: str) -> bool:
    """Whether the type searches all uncompressed vectors exhaustively: recall is 1 by design."""
    return index_type.replace(" ", "").removeprefix("IDMap2,").removeprefix("IDMap,") == "Flat"


def _inner(index: faiss.Index) -> faiss.Index:
    """The index inside an IDMap wrapper (or the index itself), as its concrete class."""
    index = faiss.downcast_index(index)
    return faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index


def _is_hnsw(index: faiss.Index) -> bool:
    return isinstance(_inner(index), faiss.IndexHNSW)


def _parts(index: faiss.Index) -> list[faiss.Index]:
    """The index without its IDMap wrapper and its IVF or HNSW storage part, as concrete classes."""
    inner = _inner(index)
    ivf = faiss.try_extract_index_ivf(inner)
    storage = faiss.downcast_index(inner.storage) if isinstance(inner, faiss.IndexHNSW) else None
    return [
        part
        for part in (inner, faiss.downcast_index(ivf) if ivf is not None else None, storage)
        if part is not None
    ]


def _centroids_to_learn(index: faiss.Index) -> int:
    """The most centroids training must fit (IVF lists, PQ codebook size); 1 for none."""
    largest = 1
    for part in _parts(index):
        if isinstance(part, faiss.IndexIVF):
            largest = max(largest, part.nlist)
        pq = getattr(part, "pq", None)
        if pq is not None:
            largest = max(largest, pq.ksub)
    return largest


def min_training_vectors(index: faiss.Index) -> int:
    """How many vectors training needs at the very least (0 when the index needs no training)."""
    return 0 if index.is_trained else max(_centroids_to_learn(index), 1)


def training_sample_size(index: faiss.Index, available: int) -> int:
    """How many vectors to train on: plenty per centroid, bounded so k-means stays quick."""
    return min(
        available,
        max(_MIN_TRAINING_SAMPLE, _centroids_to_learn(index) * _TRAINING_POINTS_PER_CENTROID),
    )


def train(index: faiss.Index, vectors: NDArray[np.float32]) -> None:
    """Train the index on ``vectors`` (a sample of the gallery).

    FAISS prints a warning on stdout (which would corrupt ``--json`` output) when a centroid gets
    fewer than 39 points; small galleries legitimately do, and recall is measured after training.
    Polysemous training (codes ordered for Hamming pre-filtering, which we never search with)
    is skipped: it costs more than the rest of PQ training. PQ codebooks learn from at most
    64 points per centroid in 10 k-means iterations: k-means in a few dimensions is slow in FAISS,
    and more points or iterations gained no recall on our benchmark (0.883 against 0.884).
    """
    for part in _parts(index):
        if hasattr(part, "do_polysemous_training"):
            part.do_polysemous_training = False
        for holder in (part, getattr(part, "pq", None)):
            if holder is not None and hasattr(holder, "cp"):
                holder.cp.min_points_per_centroid = 1
        pq = getattr(part, "pq", None)
        if pq is not None:
            pq.cp.max_points_per_centroid = _TRAINING_POINTS_PER_CENTROID
            pq.cp.niter = _PQ_TRAINING_ITERATIONS
    index.train(np.ascontiguousarray(vectors, dtype=np.float32))


def add_vectors(index: faiss.Index, vectors: NDArray[np.float32], ids: NDArray[np.int64]) -> None:
    """Add vectors with explicit ids."""
    if len(vectors):
        index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32),
            np.ascontiguousarray(ids, dtype=np.int64),
        )


def remove_ids(index: faiss.Index, ids: NDArray[np.int64]) -> bool:
    """Remove ids in place; False if this index type cannot remove (HNSW), so it must be rebuilt."""
    if _is_hnsw(index) or ondisk_state(index) is not None:
        return False
    index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64)))
    return True


def index_ids(index: faiss.Index) -> NDArray[np.int64]:
    """Every id the index holds, in storage order (duplicates included, so they can be detected)."""
    state = ondisk_state(index)  # on-disk: merged lists + added part, less the removed ids
    components = state.components if state else None
    removed = state.removed if state else None
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexIDMap):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return np.arange(index.ntotal, dtype=np.int64)
    chunks = [
        faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
        for lists in components or [ivf.invlists]
        for i in range(ivf.nlist)
        if lists.list_size(i)
    ]
    ids = np.concatenate(chunks).astype(np.int64) if chunks else np.zeros(0, np.int64)
    return ids[~np.isin(ids, removed)] if removed is not None and len(removed) else ids


#: Smallest efSearch of an HNSW coarse quantizer (it searches at least twice nprobe).
QUANTIZER_EF_SEARCH = 64


def tunable_parameter(index: faiss.Index) -> str | None:
    """The search-time knob of this index: "nprobe" (IVF), "efSearch" (HNSW), None (exhaustive)."""
    if faiss.try_extract_index_ivf(index) is not None:
        return "nprobe"
    return "efSearch" if _is_hnsw(index) else None


def id_selector(ids: NDArray[np.int64]) -> faiss.IDSelector:
    """A FAISS selector admitting exactly ``ids`` (a search filter's matching items).

    Item ids are small and dense (SQLite row ids), so a bitmap over 0..max(ids) is compact and
    each test one lookup; ids too sparse for that go in a hash set.
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    top = int(ids.max()) + 1 if len(ids) else 0
    if len(ids) and (ids.min() < 0 or top > 64 * len(ids) + 4096):
        return faiss.IDSelectorBatch(ids)
    mask = np.zeros(top, dtype=bool)
    mask[ids] = True
    return faiss.IDSelectorBitmap(np.packbits(mask, bitorder="little"))


def search_parameters(
    index: faiss.Index,
    params: dict[str, Any] | None,
    *,
    selector: faiss.IDSelector | None = None,
) -> faiss.SearchParameters | None:
    """FAISS search parameters for ``params`` such as {"nprobe": 16}; None when there are none.

    ``selector`` (:func:`id_selector`) restricts the search to those ids: FAISS ranks only them,
    so a filter gets k matching items wherever they lie, not fewer after the fact.

    Raises:
        GalleryError: a parameter this index type does not have.
    """
    state = ondisk_state(index)
    exclude = state.exclude if state else None  # on-disk: ids removed since the last merge
    if selector is not None:
        exclude = selector if exclude is None else faiss.IDSelectorAnd(selector, exclude)
    ivf = faiss.try_extract_index_ivf(index)
    graph_quantizer = ivf is not None and _is_hnsw(faiss.downcast_index(ivf.quantizer))
    if not params and exclude is None and not graph_quantizer:
        return None
    params = params or {}
    knob = tunable_parameter(index)
    unknown = sorted(set(params) - ({knob} if knob else set()))
    if unknown:
        has = f"only {knob}" if knob else "no search parameters"
        raise GalleryError(
            f"search parameter {', '.join(unknown)} does not apply to this index ({has})"
        )
    value = int(params.get(knob, ivf.nprobe if knob == "nprobe" else 1))
    if value < 1:
        raise GalleryError(f"{knob} must be at least 1, got {value}")
    if knob != "nprobe":
        chosen = faiss.SearchParametersHNSW(efSearch=value) if knob else faiss.SearchParameters()
        if exclude is not None:
            chosen.sel = exclude
        return chosen
    chosen = faiss.SearchParametersIVF(nprobe=value)
    if exclude is not None:
        chosen.sel = exclude
    if graph_quantizer:
        # The HNSW coarse quantizer must find the nprobe nearest lists, not roughly them: with
        # its default efSearch (16) recall@10 stopped about 1% short of IVF's own (2·10^5 vectors).
        chosen.quantizer_params = faiss.SearchParametersHNSW(
            efSearch=max(QUANTIZER_EF_SEARCH, 2 * value)
        )
    return chosen


def write_index(index: faiss.Index, path: Path) -> tuple[str, int]:
    """Write the index straight to a file published atomically at ``path``.

    Returns its sha256 and size.
    """
    with atomic_path(path) as temporary:
        faiss.write_index(index, str(temporary))
        with open(temporary, "rb") as handle:
            return sha256_handle(handle), os.fstat(handle.fileno()).st_size


def read_index(path: Path, *, mmap: bool = False, name: Path | None = None) -> faiss.Index:
    """Load an index file, memory-mapped where FAISS supports it.

    An index FAISS cannot read is named (``name``, else ``path``) in the GalleryError.
    """
    try:
        return faiss.read_index(str(path), _MMAP_FLAGS if mmap else 0)
    except RuntimeError as exc:
        raise GalleryError(f"{name or path}: unreadable FAISS index ({faiss_reason(exc)})") from exc


def search(
    index: faiss.Index,
    queries: NDArray[np.float32],
    k: int,
    params: faiss.SearchParameters | None = None,
    *,
    threads: int | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """k nearest neighbours by L2 distance (not squared); k is capped at the index size.

    ``threads`` caps FAISS's OpenMP threads for this call (default: all, but one below
    SINGLE_THREAD_BELOW queries unless each scans enough IVF codes to split its lists over the
    cores, :func:`probe_split`). A server running searches beside other work passes 1: on shared
    cores the OpenMP split can cost far more than it saves (32 queries over 100k vectors: 12 ms on
    one thread, 1.6 s on two busy cores; benchmarks/service.py).

    Returns:
        (distances, ids), each Q×min(k, ntotal). Approximate indexes may find fewer than k:
        those slots hold id -1 and distance inf.
    """
    k = min(k, index.ntotal)
    if k <= 0 or len(queries) == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    previous = faiss.omp_get_max_threads()
    split = False
    if threads is None and len(queries) < SINGLE_THREAD_BELOW:
        split = probe_split(index, params)
        threads = None if split else 1
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        # Set on every call rather than restored: the mode changes how FAISS shares out the work,
        # never the result, so a concurrent search that sees the other mode is only scheduled
        # differently.
        ivf.parallel_mode = _PARALLEL_OVER_PROBES if split else _PARALLEL_OVER_QUERIES
    if threads is not None:
        faiss.omp_set_num_threads(
            max(1, threads)
        )  # OpenMP's setting is per calling thread: other searches are unaffected
    try:
        squared, ids = index.search(
            np.ascontiguousarray(queries, dtype=np.float32), k, params=params
        )
    finally:
        faiss.omp_set_num_threads(previous)
    distances = np.sqrt(np.maximum(squared, 0.0, out=squared), out=squared)
    distances[ids < 0] = np.inf
    return distances, ids


def probe_split(index: faiss.Index, params: faiss.SearchParameters | None = None) -> bool:
    """Whether one query's scan of this IVF index is long enough to split its lists over the cores.

    It is, from SPLIT_PROBES_FROM_CODES codes a query (nprobe × the mean list length), on more than
    one core.
    """
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None or ivf.nlist == 0 or faiss.omp_get_max_threads() < 2:
        return False
    nprobe = getattr(params, "nprobe", 0) or ivf.nprobe
    return min(nprobe, ivf.nlist) * ivf.ntotal / ivf.nlist >= SPLIT_PROBES_FROM_CODES
