"""Losses against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from siamese.errors import ConfigError
from siamese.training.losses import ContrastiveLoss, TripletLoss, create_loss


def test_contrastive_by_hand() -> None:
    first = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    second = torch.tensor([[3.0, 4.0], [1.0, 0.0], [3.0, 0.0]])
    target = torch.tensor([0.0, 1.0, 1.0])  # same, different (inside margin), different (beyond margin)
    eps = 1e-6  # pairwise_distance adds eps to the difference, as in the seed
    d0 = math.dist((0, 0), (3 - eps, 4 - eps))
    d1 = 1 - eps
    expected = (d0**2 + (2.0 - d1) ** 2 + 0.0) / 3
    assert ContrastiveLoss(margin=2.0)(first, second, target).item() == pytest.approx(expected, rel=1e-5)


def test_contrastive_zero_for_far_negatives_and_identical_positives() -> None:
    a = torch.tensor([[1.0, 1.0]])
    assert ContrastiveLoss()(a, a, torch.tensor([0.0])).item() == pytest.approx(0.0, abs=1e-10)
    assert ContrastiveLoss()(a, a + 10, torch.tensor([1.0])).item() == 0.0


def test_triplet_by_hand() -> None:
    anchor = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    positive = torch.tensor([[1.0, 0.0], [0.5, 0.0]])
    negative = torch.tensor([[1.5, 0.0], [0.0, 3.0]])
    # (1 - 1.5 + 1) = 0.5 ; (0.5 - 3 + 1) < 0 -> 0
    assert TripletLoss(margin=1.0)(anchor, positive, negative).item() == pytest.approx(0.25, rel=1e-4)


def test_default_margins_depend_on_normalisation() -> None:
    assert create_loss("contrastive", None, normalized=False).margin == 2.0
    assert create_loss("triplet", None, normalized=True).margin < 1.0
    assert create_loss("triplet", 0.3, normalized=False).margin == 0.3
    with pytest.raises(ConfigError, match="unknown loss"):
        create_loss("arcface", None, normalized=True)
    with pytest.raises(ConfigError, match="positive"):
        create_loss("triplet", -1.0, normalized=True)
