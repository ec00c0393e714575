"""`--index auto`: pick a FAISS index type from gallery size and memory budget, as autofaiss does.

Small galleries get exact search; larger ones the most accurate approximate index whose vectors
fit the budget: HNSW32 (graph, fast, memory-hungry), then IVF with flat, 8-bit or PQ codes.
The expected recall@10 is what benchmarks/gallery.py measured for that family with its search
parameter tuned for 0.95; the build then measures the real figure on the gallery itself.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from siamese.core.errors import GalleryError, named
from siamese.index.ondisk.files import ONDISK_PREFIX, base_type

#: Up to this many vectors, exhaustive search is fast enough and exact.
EXACT_UP_TO = 50_000
#: HNSW graphs take long to build beyond this size; IVF scales further.
HNSW_UP_TO = 5_000_000
#: Beyond this many vectors an index is built in parts and merged on disk, memory-mapped when
#: searched. benchmarks/results/gallery_scale-*.json: 10^6 vectors of dimension 256 opened in
#: 0.28 s with 12 MiB resident, the build's anonymous memory peaked at 475 MiB; an in-memory index
#: is read and hashed whole before its first query (at 2·10^6 × 256-d even IVF,SQ8 is 0.5 GB, a
#: second or more) and its build holds every vector in RAM (2 GB at 2·10^6).
ONDISK_FROM = 2_000_000
#: Points per IVF list the on-disk build trains on (FAISS warns below 39).
_ONDISK_TRAINING_POINTS = 40
_HNSW_LINK_BYTES = 2 * 32 * 4 * 1.1  # level-0 links of HNSW32, plus upper levels
_IDMAP_BYTES = 48  # IDMap2: the id array and its reverse hash map
_IVF_ID_BYTES = 8
_PQ_SUBQUANTIZERS = (64, 48, 32, 24, 16, 12, 8, 4)
#: recall@10 of held-out queries by family with the search parameter tuned for 0.95, as
#: benchmarks/results/gallery-*.json measured (10k–1M vectors of dimension 128): HNSW32 0.93–0.99,
#: IVF,Flat 0.95–0.96, IVF,SQ8 0.95–0.96, IVF,PQ32 0.87–0.89 (4 dimensions per code byte).
_EXPECTED_RECALL = {"Flat": 1.0, "HNSW": 0.95, "IVF,Flat": 0.95, "IVF,SQ8": 0.95}
_PQ_RECALL_AT_4_DIMS_PER_BYTE = 0.88
_PQ_RECALL_LOSS_PER_HALVING = 0.12  # extrapolated: fewer code bytes per dimension, coarser codes


@dataclass(frozen=True)
class IndexChoice:
    """The index type picked for a gallery and why."""

    index_type: str
    expected_recall_at10: float
    estimated_bytes: int
    reason: str


def ivf_lists(count: int) -> int:
    """IVF lists: the power of two nearest 4·√count, with at least 39 training points per list."""
    target = 4 * math.sqrt(max(count, 1))
    lists = 2 ** round(math.log2(max(target, 16)))
    while lists > 16 and count < 39 * lists:
        lists //= 2
    return min(lists, 65536)


def ondisk_type(count: int) -> str:
    """The on-disk index type for ``count`` vectors: IVF with an HNSW coarse quantizer, 8-bit codes.

    About 2·√count lists (a power of two): fewer than an in-memory IVF, so k-means training stays
    affordable at 10^7 vectors on few cores (queries scan a little more), and the HNSW quantizer
    assigns each vector to its list without comparing it with every centroid. SQ8 codes take a
    quarter of the float vectors' space at recall@10 above 0.9.
    """
    lists = 2 ** round(math.log2(max(2 * math.sqrt(max(count, 1)), 16)))
    while lists > 16 and count < _ONDISK_TRAINING_POINTS * lists:
        lists //= 2
    return f"{ONDISK_PREFIX}IVF{min(lists, 262_144)}_HNSW32,SQ8"


def resolve_index(
    index: str | None, count: int, dim: int, memory_budget: int
) -> IndexChoice | None:
    """The choice behind ``--index auto`` or ``--index ondisk``; None for an explicit type."""
    if index == "auto":
        return choose_index(count, dim, memory_budget)
    if index == "ondisk":
        kind = ondisk_type(count)
        return IndexChoice(
            kind,
            expected_recall(kind, dim),
            int(bytes_per_vector(kind, dim) * count),
            f"{count} vectors: built in parts, merged on disk and memory-mapped",
        )
    return None


def bytes_per_vector(index_type: str, dim: int) -> float:
    """Approximate memory per vector of an index type (codes, links and ids)."""
    kind = base_type(index_type)
    ids = _IVF_ID_BYTES if kind.startswith("IVF") else _IDMAP_BYTES
    codes = 4.0 * dim
    if match := re.search(r"PQ(\d+)", kind):
        codes = float(match.group(1))
    elif "SQ8" in kind:
        codes = float(dim)
    elif "SQfp16" in kind or "SQ16" in kind:
        codes = 2.0 * dim
    elif "SQ4" in kind:
        codes = dim / 2
    links = _HNSW_LINK_BYTES if kind.startswith("HNSW") else 0.0
    return codes + ids + links


def expected_recall(index_type: str, dim: int) -> float:
    """Rule-of-thumb recall@10 of an index type with tuned search parameters."""
    kind = base_type(index_type)
    if kind == "Flat":
        return _EXPECTED_RECALL["Flat"]
    if kind.startswith("HNSW"):
        return _EXPECTED_RECALL["HNSW"]
    if match := re.search(r"PQ(\d+)", kind):
        dims_per_byte = dim / int(match.group(1))
        estimate = _PQ_RECALL_AT_4_DIMS_PER_BYTE - _PQ_RECALL_LOSS_PER_HALVING * math.log2(
            dims_per_byte / 4
        )
        return round(min(0.95, max(0.2, estimate)), 2)
    return _EXPECTED_RECALL["IVF,SQ8"] if "SQ" in kind else _EXPECTED_RECALL["IVF,Flat"]


def choose_index(count: int, dim: int, memory_budget: int) -> IndexChoice:
    """The most accurate index type for ``count`` vectors of ``dim`` within ``memory_budget`` bytes.

    Raises:
        GalleryError: not even the smallest product-quantised index fits the budget.
    """

    def choice(index_type: str, why: str) -> IndexChoice:
        size = int(bytes_per_vector(index_type, dim) * count)
        return IndexChoice(index_type, expected_recall(index_type, dim), size, why)

    budget = _format_bytes(memory_budget)
    if count <= EXACT_UP_TO and bytes_per_vector("Flat", dim) * count <= memory_budget:
        return choice("Flat", f"{count} vectors: exhaustive search is fast at this size and exact")
    if count > ONDISK_FROM:
        kind = ondisk_type(count)
        return choice(
            kind, f"{count} vectors: built in parts, merged on disk and memory-mapped (little RAM)"
        )
    if count <= HNSW_UP_TO and bytes_per_vector("HNSW32", dim) * count <= memory_budget:
        return choice(
            "HNSW32", f"{count} vectors: an HNSW graph fits {budget} and searches fastest"
        )
    lists = ivf_lists(count)
    candidates = [f"IVF{lists},Flat", f"IVF{lists},SQ8"]
    candidates += [f"IVF{lists},PQ{m}" for m in _PQ_SUBQUANTIZERS if m < dim and dim % m == 0]
    for index_type in candidates:
        if bytes_per_vector(index_type, dim) * count <= memory_budget:
            return choice(
                index_type,
                f"{count} vectors: the most accurate inverted-file index that fits {budget}",
            )
    smallest = candidates[-1]
    need = _format_bytes(int(bytes_per_vector(smallest, dim) * count))
    raise GalleryError(
        f"no index type fits the memory budget {budget}: even {smallest} needs about {need}; raise "
        f"the budget ({named('max_memory')})"
    )


def parse_memory(text: str) -> int:
    """Bytes from a size such as "512M", "4G" or "1.5GB".

    Raises:
        GalleryError: not a size.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, flags=re.IGNORECASE)
    if not match:
        raise GalleryError(f"memory size {text!r}: expected a number with K, M, G or T (e.g. 4G)")
    scale = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[match.group(2).upper()]
    return int(float(match.group(1)) * scale)


def default_memory_budget() -> int:
    """Half of this machine's physical memory (4 GiB where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def _format_bytes(size: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"
