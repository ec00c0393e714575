"""Recall of a Milvus index against exact search, measured and tuned as folder galleries do.

The probe is the folder galleries' :class:`~siamese.index.search.recall.RecallProbe` (query-like
vectors near a gallery sample, exact neighbours by brute force over every stored vector); only
the searching differs: Milvus answers, with the index's search parameter stepped up the same
ladder until recall@10 reaches the target or stops improving.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from siamese.core.errors import RecallTooLowError, named
from siamese.index.milvus.collection import KNOBS, MilvusIndex, milvus_search_params
from siamese.index.milvus.store import MilvusStore
from siamese.index.search.faiss_index import TUNING_LADDERS
from siamese.index.search.recall import Recall, RecallProbe

#: DiskANN's candidate list (at least k); the ladder folder galleries lack.
_LADDERS = {**TUNING_LADDERS, "search_list": (16, 24, 32, 48, 64, 96, 128, 192, 256, 512)}
#: Doubling the effort for less recall@10 than this is not worth it (as in index/search/recall).
_PLATEAU = 0.003
#: Above this many stored floats the exact ground truth is not computed in memory.
MAX_RECALL_FLOATS = 500_000_000


def score(
    store: MilvusStore, index: MilvusIndex, probe: RecallProbe, params: dict[str, int]
) -> Recall:
    """recall@1 and recall@10 of the collection searched with ``params``."""
    if probe.k < 1:
        return Recall(1.0, 1.0, 0, dict(params))
    hits = store.search(probe.queries, probe.k, milvus_search_params(index.kind, params), fields=())
    found = [np.asarray([h["id"] for h in row], np.int64) for row in hits]
    at1 = float(np.mean([len(f) > 0 and f[0] == t[0] for f, t in zip(found, probe.truth)]))
    at10 = float(np.mean([len(np.intersect1d(f, t)) for f, t in zip(found, probe.truth)]))
    return Recall(round(at1, 4), round(at10 / probe.k, 4), len(probe.queries), dict(params))


def _tune(store: MilvusStore, index: MilvusIndex, probe: RecallProbe, target: float) -> Recall:
    knob = KNOBS[index.kind]
    ladder = list(_LADDERS[knob])
    if knob == "nprobe":
        nlist = index.params["nlist"]
        ladder = [v for v in ladder if v < nlist] + [nlist]
    best: Recall | None = None
    for value in ladder:
        scored = score(store, index, probe, {knob: value})
        if best is not None and scored.at10 - best.at10 < _PLATEAU:
            return best
        best = scored
        if best.at10 >= target:
            break
    assert best is not None
    return best


def check_recall(
    store: MilvusStore,
    index: MilvusIndex,
    *,
    fixed: dict[str, int] | None,
    target: float,
    minimum: float | None,
    queries: int,
    count: int,
    dimension: int,
) -> tuple[dict[str, int], dict[str, Any] | None]:
    """The search parameters to store and the recall record, as folder galleries store them.

    Raises:
        RecallTooLowError: recall@10 below ``minimum`` (the record is then left as it was).
    """
    knob = KNOBS.get(index.kind)
    params = {k: v for k, v in (fixed or {}).items() if k == knob}
    if index.exact or count < 2:
        exact = {"at1": 1.0, "at10": 1.0, "queries": 0, "params": {}, "count": count}
        return params, {**exact, "exact": index.exact}
    if count * dimension > MAX_RECALL_FLOATS:
        return params, None  # the exact neighbours of every vector would not fit in memory
    ids, vectors = store.all_vectors()
    probe = RecallProbe(vectors, ids, queries=queries)
    measured = (
        score(store, index, probe, params)
        if fixed
        else _tune(store, index, probe, max(target, minimum or 0.0))
    )
    if minimum is not None and measured.at10 < minimum:
        knob_text = f" even with {measured.params}" if measured.params else ""
        raise RecallTooLowError(
            f"{store.location}: {index.name}: recall@10 {measured.at10:.3f} against exact "
            f"search{knob_text} is below the minimum asked for ({named('min_recall')} {minimum}); "
            f"the gallery record was left as it was (the items are written: try another index "
            f"type, {named('index')})"
        )
    return measured.params, {**measured.to_dict(), "count": count, "exact": False}
