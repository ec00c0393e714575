"""siamese.core.metrics against independent implementations, on random embeddings from Hypothesis.

The references share no code with the project: scikit-learn's roc_auc_score and roc_curve for
verification, pytorch-metric-learning's AccuracyCalculator (with its own torch k-NN, not FAISS)
for precision@1 and mAP@R, and scikit-learn's NearestNeighbors for recall@k. Embeddings come from
a seeded generator (continuous values, so no distance ties reorder neighbours); identities have
uneven sizes, and leave-one-out sets include single-image identities, which both sides skip.
"""

from __future__ import annotations

import sys
import types

import faiss
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_metric_learning.distances import LpDistance
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sklearn_roc_curve
from sklearn.neighbors import NearestNeighbors

from siamese.core.metrics import (
    retrieval_metrics,
    roc_curve,
    sample_pair_distances,
    verification_metrics,
)

SETTINGS = settings(max_examples=40, deadline=None)


def _import_accuracy_calculator() -> tuple[type, type]:
    """PML's AccuracyCalculator and CustomKNN, without letting PML rewrite FAISS for the process.

    Importing them imports faiss.contrib.torch_utils, which replaces the search methods of every
    FAISS index class with torch-aware wrappers that refuse the ``params=`` keyword the index
    stage passes: every later gallery test in the session would fail. The reference here uses
    its own torch k-NN (CustomKNN), so a placeholder stands in for that module while PML loads.
    """
    name = "faiss.contrib.torch_utils"
    real = sys.modules.get(name)
    sys.modules[name] = real or types.ModuleType(name)
    try:
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
        from pytorch_metric_learning.utils.inference import CustomKNN
    finally:
        if real is None:
            del sys.modules[name]
    return AccuracyCalculator, CustomKNN


AccuracyCalculator, CustomKNN = _import_accuracy_calculator()

#: Identity sizes (images per identity), at least two identities.
_SIZES = st.lists(st.integers(1, 7), min_size=2, max_size=8)


def _embeddings(
    seed: int, sizes: list[int], dim: int, spread: float
) -> tuple[np.ndarray, np.ndarray]:
    """Images of identity i around a random centre; ``spread`` sets how much identities overlap."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    centres = rng.normal(size=(len(sizes), dim))
    points = centres[labels] + spread * rng.normal(size=(len(labels), dim))
    return points.astype(np.float32), labels


def _pml(include: tuple[str, ...]) -> object:
    knn = CustomKNN(LpDistance(normalize_embeddings=False, p=2, power=1))
    return AccuracyCalculator(include=include, knn_func=knn, device=torch.device("cpu"))


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    sizes=_SIZES,
    dim=st.integers(1, 6),
    spread=st.sampled_from([0.1, 1.0, 3.0]),
)
def test_leave_one_out_matches_pytorch_metric_learning(
    seed: int, sizes: list[int], dim: int, spread: float
) -> None:
    points, labels = _embeddings(seed, sizes, dim, spread)
    ours = retrieval_metrics(points, labels, ks=(1,))
    answerable = sum(size for size in sizes if size > 1)
    assert ours["queries"] == answerable
    if not answerable:
        return
    tensor, tensor_labels = torch.from_numpy(points), torch.from_numpy(labels)
    theirs = _pml(("precision_at_1", "mean_average_precision_at_r")).get_accuracy(
        tensor, tensor_labels, tensor, tensor_labels, ref_includes_query=True
    )
    assert ours["recall_at_1"] == pytest.approx(theirs["precision_at_1"], abs=1e-6)
    assert ours["map_at_r"] == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-6)


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    gallery_sizes=st.lists(st.integers(1, 6), min_size=2, max_size=8),
    queries=st.integers(1, 20),
    dim=st.integers(1, 6),
    spread=st.sampled_from([0.3, 1.0, 3.0]),
    ks=st.lists(st.integers(1, 12), min_size=1, max_size=3, unique=True),
)
def test_gallery_and_queries_match_the_references(
    seed: int,
    gallery_sizes: list[int],
    queries: int,
    dim: int,
    spread: float,
    ks: list[int],
) -> None:
    gallery, gallery_labels = _embeddings(seed, gallery_sizes, dim, spread)
    rng = np.random.default_rng(seed + 1)
    query_labels = rng.integers(0, len(gallery_sizes), queries)
    centres = np.stack([gallery[gallery_labels == i].mean(0) for i in range(len(gallery_sizes))])
    query_points = (centres[query_labels] + spread * rng.normal(size=(queries, dim))).astype(
        np.float32
    )
    ours = retrieval_metrics(query_points, query_labels, gallery, gallery_labels, ks=tuple(ks))
    assert ours["queries"] == queries

    theirs = _pml(("precision_at_1", "mean_average_precision_at_r")).get_accuracy(
        torch.from_numpy(query_points),
        torch.from_numpy(query_labels),
        torch.from_numpy(gallery),
        torch.from_numpy(gallery_labels),
        ref_includes_query=False,
    )
    assert ours["map_at_r"] == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-6)
    if 1 in ks:
        assert ours["recall_at_1"] == pytest.approx(theirs["precision_at_1"], abs=1e-6)

    # recall@k: a hit of the query's identity among its k nearest gallery items (scikit-learn's
    # exact k-NN); beyond the gallery's size every item is among the "k nearest".
    neighbours = NearestNeighbors(n_neighbors=min(max(ks), len(gallery)), algorithm="brute")
    _, nearest = neighbours.fit(gallery.astype(np.float64)).kneighbors(query_points)
    for k in ks:
        expected = np.mean(
            [(gallery_labels[row[:k]] == q).any() for row, q in zip(nearest, query_labels)]
        )
        assert ours[f"recall_at_{k}"] == pytest.approx(expected, abs=1e-9), k


_DISTANCES = st.lists(
    st.floats(0, 4, allow_nan=False).map(lambda x: round(x, 1)),  # rounded: ties are common
    min_size=1,
    max_size=40,
)


@SETTINGS
@given(same=_DISTANCES, different=_DISTANCES)
def test_roc_auc_and_curve_match_scikit_learn(same: list[float], different: list[float]) -> None:
    same_d = np.array(same, dtype=np.float32)
    different_d = np.array(different, dtype=np.float32)
    fars = (0.0625, 0.125, 0.25, 0.5)  # exact binary fractions: no rounding in FAR × pairs
    ours = verification_metrics(same_d, different_d, fars=fars)
    truth = np.r_[np.ones(len(same_d)), np.zeros(len(different_d))]
    scores = -np.r_[same_d, different_d].astype(np.float64)  # nearer = more alike
    assert ours["roc_auc"] == pytest.approx(roc_auc_score(truth, scores), abs=1e-9)
    assert (ours["same_pairs"], ours["different_pairs"]) == (len(same_d), len(different_d))

    # The curve: one point per distinct distance, as scikit-learn's without its (0, 0) start.
    fpr, tpr, thresholds = sklearn_roc_curve(truth, scores, drop_intermediate=False)
    curve = roc_curve(same_d, different_d)
    np.testing.assert_allclose(curve.thresholds, -thresholds[1:], rtol=0, atol=0)
    np.testing.assert_allclose(curve.far, fpr[1:], atol=1e-12)
    np.testing.assert_allclose(curve.tar, tpr[1:], atol=1e-12)

    # EER: where false rejects and false accepts cross on scikit-learn's points.
    gap = np.abs(fpr[1:] - (1 - tpr[1:]))
    best = int(np.argmin(gap))
    assert ours["eer"] == pytest.approx((fpr[1 + best] + 1 - tpr[1 + best]) / 2, abs=1e-9)

    # TAR at FAR: the best true-accept rate of any threshold whose false-accept rate is allowed.
    for far in fars:
        assert ours[f"tar_at_far_{far:g}"] == pytest.approx(tpr[fpr <= far].max(), abs=1e-9), far


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), sizes=_SIZES, dim=st.integers(1, 5))
def test_pair_distances_match_scikit_learn(seed: int, sizes: list[int], dim: int) -> None:
    from sklearn.metrics import pairwise_distances

    points, labels = _embeddings(seed, sizes, dim, 1.0)
    same, different = sample_pair_distances(points, labels, max_pairs=10**6)
    full = pairwise_distances(points.astype(np.float64))
    upper = np.triu(np.ones_like(full, dtype=bool), 1)
    equal = labels[:, None] == labels[None, :]
    np.testing.assert_allclose(np.sort(same), np.sort(full[upper & equal]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        np.sort(different), np.sort(full[upper & ~equal]), rtol=1e-5, atol=1e-5
    )


def test_faiss_is_left_as_the_index_stage_uses_it() -> None:
    """The reference's import did not swap FAISS's search for PML's torch wrapper."""
    assert "torch_replacement" not in faiss.IndexIDMap2.search.__qualname__
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(2))
    index.add_with_ids(np.eye(2, dtype=np.float32), np.array([7, 9]))
    _, ids = index.search(np.ones((1, 2), np.float32), 1, params=faiss.SearchParameters())
    assert ids.shape == (1, 1) and ids[0, 0] in (7, 9)
