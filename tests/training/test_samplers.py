"""Pair and triplet samplers.

Correct targets, no self-pairs, roughly balanced, seed-reproducible.
"""

from __future__ import annotations

import numpy as np
import pytest

from siamese.training.samplers import sample_pairs, sample_triplets

LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3], dtype=np.int64)  # identity 3 has one image


def test_pairs_targets_match_identities() -> None:
    first, second, target = sample_pairs(LABELS, 5000, np.random.default_rng(0))
    same = LABELS[first] == LABELS[second]
    assert np.array_equal(target, (~same).astype(np.int64))
    assert not np.any(first[same] == second[same]), "a same pair must use two different images"


def test_pairs_are_about_half_same() -> None:
    _, _, target = sample_pairs(LABELS, 20000, np.random.default_rng(1))
    # Identity 3's single image can only form different pairs, so slightly fewer than half are same.
    assert 0.40 < float(np.mean(target == 0)) < 0.50


def test_different_pairs_uniform_over_other_images() -> None:
    first, second, target = sample_pairs(LABELS, 60000, np.random.default_rng(2))
    from_zero = second[(target == 1) & (LABELS[first] == 0)]
    counts = np.bincount(from_zero, minlength=len(LABELS))
    assert counts[:3].sum() == 0
    others = counts[3:]
    assert others.min() > 0.8 * others.mean() and others.max() < 1.2 * others.mean()


def test_triplets_valid_and_reproducible() -> None:
    a, p, n = sample_triplets(LABELS, 3000, np.random.default_rng(3))
    assert np.all(LABELS[a] == LABELS[p]) and np.all(a != p)
    assert np.all(LABELS[a] != LABELS[n])
    assert not np.any(LABELS[a] == 3), "a single-image identity cannot anchor a triplet"
    again = sample_triplets(LABELS, 3000, np.random.default_rng(3))
    assert all(np.array_equal(x, y) for x, y in zip((a, p, n), again))


def test_triplets_need_a_repeated_identity() -> None:
    with pytest.raises(ValueError, match="two or more images"):
        sample_triplets(np.array([0, 1, 2]), 4, np.random.default_rng(0))


def test_class_pair_triplets_are_two_identities_balanced_by_identity() -> None:
    """Hoffer and Ailon's triplets.

    Anchor and positive share an identity (other images), the negative has another; the doubled
    identity is uniform over identities, not over images.
    """
    from siamese.training.samplers import sample_class_pair_triplets

    labels = np.array([0] * 90 + [1] * 5 + [2] * 5 + [3])  # a big identity and a single-image one
    a, p, n = sample_class_pair_triplets(labels, 30000, np.random.default_rng(5))
    assert (labels[a] == labels[p]).all() and (a != p).all() and (labels[n] != labels[a]).all()
    doubled = np.bincount(labels[a], minlength=4) / len(a)
    assert doubled[3] == 0 and np.allclose(doubled[:3], 1 / 3, atol=0.02)
    negatives = np.bincount(labels[n], minlength=4) / len(n)
    assert np.allclose(negatives, [2 / 9, 2 / 9, 2 / 9, 1 / 3], atol=0.02)
    again = sample_class_pair_triplets(labels, 30000, np.random.default_rng(5))
    assert all((x == y).all() for x, y in zip((a, p, n), again))
    with pytest.raises(ValueError):
        sample_class_pair_triplets(np.array([0, 1, 2]), 4, np.random.default_rng(0))
