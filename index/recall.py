"""Recall of an approximate index against exact search, and tuning its search parameter to a target.

Queries are a sample of the gallery's own vectors, scored leave-one-out (the query's own item is
dropped from both result lists): a stand-in for real queries, which are new photos of gallery
identities, that does not flatter an index by counting the trivial self-match.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from siamese.index.faiss_index import TUNING_LADDERS, search_parameters, tunable_parameter

DEFAULT_QUERIES = 1000
DEFAULT_TARGET = 0.95


@dataclass(frozen=True)
class Recall:
    """recall@1 (the exact nearest neighbour found first) and recall@10 (share of the exact 10 found)."""

    at1: float
    at10: float
    queries: int
    params: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _drop_self(rows: NDArray[np.int64], own: NDArray[np.int64], k: int) -> NDArray[np.int64]:
    """Each row without the query's own id, cut to k columns."""
    kept = np.full((len(rows), k), -1, dtype=np.int64)
    for i, (row, me) in enumerate(zip(rows, own)):
        others = row[row != me][:k]
        kept[i, : len(others)] = others
    return kept


class RecallProbe:
    """Exact neighbours of a sample of gallery vectors, computed once, to score any index over them.

    Args:
        vectors: every vector the index holds, N×D float32.
        ids: their ids, aligned with ``vectors``.
        queries: how many of them to use as queries.
        seed: which sample (fixed, so figures are reproducible).
    """

    def __init__(self, vectors: NDArray[np.float32], ids: NDArray[np.int64], *, queries: int = DEFAULT_QUERIES, seed: int = 0) -> None:
        count = len(ids)
        self.k = min(10, count - 1)
        picked = np.sort(np.random.default_rng(seed).choice(count, size=min(queries, count), replace=False))
        self.queries = np.ascontiguousarray(vectors[picked], dtype=np.float32)
        self.own_ids = np.asarray(ids, dtype=np.int64)[picked]
        if self.k < 1:
            self.truth = np.zeros((len(picked), 0), np.int64)
            return
        _, positions = faiss.knn(self.queries, np.ascontiguousarray(vectors, dtype=np.float32), self.k + 1)
        self.truth = _drop_self(np.asarray(ids, dtype=np.int64)[positions], self.own_ids, self.k)

    def score(self, index: faiss.Index, params: dict[str, int] | None = None) -> Recall:
        """recall@1 and recall@10 of ``index`` searched with ``params``."""
        if self.k < 1:
            return Recall(1.0, 1.0, 0, dict(params or {}))
        _, found = index.search(self.queries, self.k + 1, params=search_parameters(index, params))
        found = _drop_self(found, self.own_ids, self.k)
        at1 = float(np.mean(found[:, 0] == self.truth[:, 0]))
        hits = [len(np.intersect1d(a[a >= 0], b)) for a, b in zip(found, self.truth)]
        return Recall(round(at1, 4), round(float(np.mean(hits)) / self.k, 4), len(self.queries), dict(params or {}))


#: Tuning stops where doubling the search effort gains less recall@10 than this (PQ codes plateau).
_PLATEAU = 0.003


def tune(index: faiss.Index, probe: RecallProbe, target: float = DEFAULT_TARGET) -> Recall:
    """The cheapest search parameter value reaching ``target`` recall@10, or where recall stops improving."""
    knob = tunable_parameter(index)
    if knob is None:
        return probe.score(index)
    ladder = list(TUNING_LADDERS[knob])
    if knob == "nprobe":
        nlist = faiss.extract_index_ivf(index).nlist
        ladder = [v for v in ladder if v < nlist] + [nlist]
    best: Recall | None = None
    for value in ladder:
        scored = probe.score(index, {knob: value})
        if best is not None and scored.at10 - best.at10 < _PLATEAU:
            return best  # as good, for half the effort
        best = scored
        if best.at10 >= target:
            break
    assert best is not None
    return best
