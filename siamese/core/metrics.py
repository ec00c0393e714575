"""Retrieval and verification metrics on embeddings (NumPy + FAISS, no torch).

Shared by training-time validation and `siamese eval`, so both report the same numbers:
recall@k and mAP@R (Musgrave et al., "A Metric Learning Reality Check", 2020) for
identification; ROC-AUC, EER and TAR at fixed FAR for verification.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float32]
#: mAP@R looks at most this many neighbours per query (classes larger than this are truncated).
MAX_R = 1024
#: Verification uses at most this many same and different pairs (sampled uniformly beyond it).
MAX_PAIRS = 200_000


def _knn(gallery: FloatArray, queries: FloatArray, k: int) -> tuple[FloatArray, NDArray[np.int64]]:
    index = faiss.IndexFlatL2(gallery.shape[1])
    index.add(np.ascontiguousarray(gallery, dtype=np.float32))
    squared, ids = index.search(
        np.ascontiguousarray(queries, dtype=np.float32), min(k, len(gallery))
    )
    return np.sqrt(np.maximum(squared, 0)), ids


def retrieval_metrics(
    queries: FloatArray,
    query_labels: NDArray,
    gallery: FloatArray | None = None,
    gallery_labels: NDArray | None = None,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Identification quality of queries against a gallery (or leave-one-out when no gallery).

    recall@k: share of queries with an item of their identity among the k nearest.
    map_at_r: mean over queries of average precision over the R nearest, R = items of its identity.
    Queries whose identity has no gallery item are ignored.
    """
    leave_one_out = gallery is None
    if leave_one_out:
        gallery, gallery_labels = queries, query_labels
    query_labels, gallery_labels = np.asarray(query_labels), np.asarray(gallery_labels)
    classes, counts = np.unique(gallery_labels, return_counts=True)
    per_class = dict(zip(classes.tolist(), counts.tolist()))
    relevant = np.array([per_class.get(label, 0) for label in query_labels.tolist()]) - (
        1 if leave_one_out else 0
    )
    keep = relevant > 0
    if not keep.any():
        return {**{f"recall_at_{k}": 0.0 for k in ks}, "map_at_r": 0.0, "queries": 0}
    queries, query_labels, relevant = queries[keep], query_labels[keep], relevant[keep]
    depth = int(min(max(max(ks), relevant.max()), MAX_R)) + (1 if leave_one_out else 0)
    _, ids = _knn(gallery, queries, depth)
    if leave_one_out:  # drop each query itself (normally the first hit; ties may reorder)
        own = np.flatnonzero(keep)[:, None]
        ids = np.array([row[row != me][: depth - 1] for row, me in zip(ids, own[:, 0])])
    hits = gallery_labels[ids] == query_labels[:, None]
    result = {f"recall_at_{k}": float(hits[:, :k].any(axis=1).mean()) for k in ks}
    r = np.minimum(relevant, hits.shape[1])
    ranks = np.arange(1, hits.shape[1] + 1)
    within_r = ranks[None, :] <= r[:, None]
    precision = np.cumsum(hits, axis=1) / ranks[None, :]
    result["map_at_r"] = float(np.mean(np.sum(precision * hits * within_r, axis=1) / r))
    result["queries"] = len(queries)
    return result


def sample_pair_distances(
    a: FloatArray,
    a_labels: NDArray,
    b: FloatArray | None = None,
    b_labels: NDArray | None = None,
    *,
    max_pairs: int = MAX_PAIRS,
    seed: int = 0,
) -> tuple[FloatArray, FloatArray]:
    """L2 distances of same- and different-identity pairs (a×b, or distinct pairs within a)."""
    within = b is None
    if within:
        b, b_labels = a, a_labels
    a_labels, b_labels = np.asarray(a_labels), np.asarray(b_labels)
    rng = np.random.default_rng(seed)
    same_i, same_j, diff_i, diff_j = [], [], [], []
    chunk = max(1, 4_000_000 // max(1, len(b)))
    for start in range(0, len(a), chunk):
        rows = np.arange(start, min(start + chunk, len(a)))
        equal = a_labels[rows, None] == b_labels[None, :]
        valid = np.ones_like(equal)
        if within:
            valid = rows[:, None] < np.arange(len(b))[None, :]
        si, sj = np.nonzero(equal & valid)
        di, dj = np.nonzero(~equal & valid)
        same_i.append(rows[si]), same_j.append(sj), diff_i.append(rows[di]), diff_j.append(dj)

    def distances(i_parts: list, j_parts: list) -> FloatArray:
        i, j = np.concatenate(i_parts), np.concatenate(j_parts)
        if len(i) > max_pairs:
            pick = rng.choice(len(i), size=max_pairs, replace=False)
            i, j = i[pick], j[pick]
        return np.linalg.norm(a[i] - b[j], axis=1).astype(np.float32)

    return distances(same_i, same_j), distances(diff_i, diff_j)


@dataclass(frozen=True)
class RocCurve:
    """False-accept and true-accept rates as the distance threshold grows."""

    thresholds: FloatArray
    far: FloatArray
    tar: FloatArray


def roc_curve(same: FloatArray, different: FloatArray) -> RocCurve:
    """TAR/FAR at every distinct distance threshold (accept a pair when distance ≤ threshold)."""
    thresholds = np.unique(np.concatenate([same, different]))
    tar = np.searchsorted(np.sort(same), thresholds, side="right") / max(1, len(same))
    far = np.searchsorted(np.sort(different), thresholds, side="right") / max(1, len(different))
    return RocCurve(thresholds.astype(np.float32), far, tar)


def threshold_at_far(different: FloatArray, far: float) -> float:
    """The largest distance threshold whose false-accept rate does not exceed ``far``."""
    ordered = np.sort(different)
    allowed = int(np.floor(far * len(ordered)))  # this many different pairs may be accepted
    if allowed <= 0:
        return float(np.nextafter(ordered[0], -np.inf)) if len(ordered) else float("inf")
    return (
        float(np.nextafter(ordered[allowed], -np.inf))
        if allowed < len(ordered)
        else float(ordered[-1])
    )


def verification_metrics(
    same: FloatArray, different: FloatArray, fars: Sequence[float] = (1e-2, 1e-3)
) -> dict[str, float]:
    """ROC-AUC, EER, and TAR with its distance threshold at each target FAR."""
    if len(same) == 0 or len(different) == 0:
        return {"roc_auc": float("nan"), "eer": float("nan")}
    ordered = np.sort(different)
    below = np.searchsorted(ordered, same, side="left")
    at_or_below = np.searchsorted(ordered, same, side="right")
    # AUC = P(d_same < d_different) + ½ P(tie): the Mann–Whitney statistic.
    auc = float(np.mean((len(ordered) - at_or_below + 0.5 * (at_or_below - below)) / len(ordered)))
    curve = roc_curve(same, different)
    gap = np.abs(curve.far - (1 - curve.tar))
    best = int(np.argmin(gap))
    result = {"roc_auc": auc, "eer": float((curve.far[best] + 1 - curve.tar[best]) / 2)}
    for far in fars:
        threshold = threshold_at_far(different, far)
        result[f"tar_at_far_{far:g}"] = float(np.mean(same <= threshold))
        result[f"threshold_at_far_{far:g}"] = threshold
    result["same_pairs"], result["different_pairs"] = len(same), len(different)
    return result
