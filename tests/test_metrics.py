"""Retrieval and verification metrics against answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from siamese.core.metrics import (
    retrieval_metrics,
    roc_curve,
    sample_pair_distances,
    threshold_at_far,
    verification_metrics,
)


def test_recall_and_map_at_r_by_hand() -> None:
    # 1-D gallery: identity a at 0 and 1, identity b at 10 and 11.
    gallery = np.array([[0.0], [1.0], [10.0], [11.0]], dtype=np.float32)
    gallery_labels = np.array(["a", "a", "b", "b"])
    # query a at 4.0: neighbours 1(a) 0(a) 10(b) 11(b) -> AP@R(R=2) = (1/1 + 2/2)/2 = 1
    # query b at 5.2: neighbours 1(a) 10(b) 0(a) 11(b) -> recall@1 miss; AP@2 = (0 + 1/2)/2 = 0.25
    queries = np.array([[4.0], [5.2]], dtype=np.float32)
    result = retrieval_metrics(queries, np.array(["a", "b"]), gallery, gallery_labels, ks=(1, 2))
    assert result["recall_at_1"] == 0.5
    assert result["recall_at_2"] == 1.0
    assert result["map_at_r"] == pytest.approx((1.0 + 0.25) / 2)
    assert result["queries"] == 2


def test_leave_one_out_excludes_self_and_singletons() -> None:
    points = np.array([[0.0], [0.1], [5.0], [5.2], [9.0]], dtype=np.float32)
    labels = np.array(
        [0, 0, 1, 1, 2]
    )  # identity 2 has one image: no answer exists, so it is skipped
    result = retrieval_metrics(points, labels, ks=(1,))
    assert result["recall_at_1"] == 1.0 and result["map_at_r"] == 1.0 and result["queries"] == 4


def test_queries_without_gallery_identity_are_ignored() -> None:
    gallery = np.array([[0.0], [1.0]], dtype=np.float32)
    result = retrieval_metrics(
        np.array([[0.2], [0.9]], dtype=np.float32),
        np.array([0, 7]),
        gallery,
        np.array([0, 1]),
        ks=(1,),
    )
    assert result["queries"] == 1 and result["recall_at_1"] == 1.0


def test_verification_by_hand() -> None:
    same = np.array([0.1, 0.2, 0.3, 0.9], dtype=np.float32)
    different = np.array([0.5, 0.6, 0.7, 0.8, 0.85, 0.95, 1.0, 1.1, 1.2, 1.3], dtype=np.float32)
    result = verification_metrics(same, different, fars=(0.1,))
    # Pairs (same, different) where same < different: 3 same × 10 + 0.9 beats 5 of 10 -> 35/40.
    assert result["roc_auc"] == pytest.approx(35 / 40)
    # FAR 0.1 allows one different pair: accept distances below 0.6 -> 3 of 4 same pairs.
    assert (
        result["threshold_at_far_0.1"] == pytest.approx(0.6, abs=1e-6)
        and result["threshold_at_far_0.1"] < 0.6
    )
    assert result["tar_at_far_0.1"] == 0.75
    assert 0.0 < result["eer"] <= 0.25


def test_perfect_and_random_separation() -> None:
    rng = np.random.default_rng(0)
    assert verification_metrics(rng.uniform(0, 1, 500), rng.uniform(2, 3, 500))["roc_auc"] == 1.0
    assert verification_metrics(rng.uniform(0, 1, 500), rng.uniform(2, 3, 500))["eer"] == 0.0
    noise = verification_metrics(rng.uniform(0, 1, 5000), rng.uniform(0, 1, 5000))
    assert abs(noise["roc_auc"] - 0.5) < 0.03 and abs(noise["eer"] - 0.5) < 0.03


def test_threshold_and_roc_curve() -> None:
    different = np.arange(1, 101, dtype=np.float32)
    assert threshold_at_far(different, 0.05) < 6 and threshold_at_far(different, 0.05) > 5
    assert threshold_at_far(different, 0.0) < 1
    curve = roc_curve(np.array([0.5, 1.5], dtype=np.float32), different)
    assert np.all(np.diff(curve.far) >= 0) and np.all(np.diff(curve.tar) >= 0)
    assert curve.tar[-1] == 1.0 and curve.far[-1] == 1.0


def test_pair_sampling() -> None:
    points = np.array([[0.0], [1.0], [3.0]], dtype=np.float32)
    same, different = sample_pair_distances(points, np.array([0, 0, 1]))
    assert sorted(same.tolist()) == [1.0] and sorted(different.tolist()) == [2.0, 3.0]
    same, different = sample_pair_distances(points, np.array([0, 0, 1]), points[:1], np.array([0]))
    assert sorted(same.tolist()) == [0.0, 1.0] and different.tolist() == [3.0]
    many = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)
    same, different = sample_pair_distances(many, np.arange(300) % 3, max_pairs=100)
    assert len(same) == 100 and len(different) == 100
