"""The cross-domain losses against values computed by hand, and their behaviour at the edges.

The contrastive and triplet ones are the single tower's losses and miners given the gallery side as
reference embeddings (losses.Criterion); the distance keeps pairwise_distance's eps of 1e-6.
"""

from __future__ import annotations

import math

import pytest
import torch

from siamese.training.losses import Criterion, create_criterion
from siamese.training.losses.cross_domain import SymmetricCrossEntropy, create_cross_loss

# Two queries (identities 0 and 1) against four gallery items (0, 0, 1, 1). Distances:
#   q0: g0 1, g1 2, g2 5, g3 2.5        q1: g0 3, g1 √20 ≈ 4.4721, g2 3, g3 1.5
Q = torch.tensor([[0.0, 0.0], [4.0, 0.0]])
QL = torch.tensor([0, 1])
G = torch.tensor([[1.0, 0.0], [0.0, 2.0], [4.0, 3.0], [2.5, 0.0]])
GL = torch.tensor([0, 0, 1, 1])


def test_contrastive_is_the_classic_loss_on_every_cross_pair() -> None:
    # same (Y = 0): d²; different (Y = 1): max(2 − d, 0)², margin 2. q0: 1 + 4 + 0 + 0;
    # q1: 0 + 0 + 9 + 2.25. Mean over the 8 pairs.
    expected = (1 + 4 + 0 + 0 + 0 + 0 + 9 + 2.25) / 8
    loss = create_cross_loss("contrastive", margin=2.0)(Q, QL, ref=G, ref_labels=GL)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_triplet_batch_hard_takes_each_query_anchors_hardest_gallery_items() -> None:
    # q0: farthest positive 2, nearest negative 2.5 → 2 − 2.5 + 1 = 0.5
    # q1: farthest positive 3, nearest negative 3   → 1
    loss = create_cross_loss("triplet", margin=1.0, miner="batch-hard")(Q, QL, G, GL)
    assert loss.item() == pytest.approx((0.5 + 1.0) / 2, rel=1e-5)


def test_triplet_batch_all_averages_the_violating_triplets() -> None:
    # q0: (1, 5) −3, (1, 2.5) −0.5, (2, 5) −2, (2, 2.5) 0.5
    # q1: (3, 3) 1, (3, √20) < 0, (1.5, ·) < 0
    loss = create_cross_loss("triplet", margin=1.0, miner="batch-all")(Q, QL, G, GL)
    assert loss.item() == pytest.approx((0.5 + 1.0) / 2, rel=1e-5)


def test_triplet_without_a_negative_is_zero_not_nan() -> None:
    loss = create_cross_loss("triplet")(Q[:1], QL[:1], G[:2], GL[:2])
    assert loss.item() == 0.0 and not torch.isnan(loss)


def test_symmetric_cross_entropy_by_hand() -> None:
    # Unit vectors, τ = 1: logits q0 → (1, 0.6, 0), q1 → (0, 0.8, 1); gallery labels (0, 0, 1).
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    g = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    e = math.exp
    lse_q0, lse_q1 = math.log(e(1) + e(0.6) + e(0)), math.log(e(0) + e(0.8) + e(1))
    to_gallery = (0.5 * (lse_q0 - 1) + 0.5 * (lse_q0 - 0.6) + (lse_q1 - 1)) / 2
    col = [math.log(e(1) + e(0)) - 1, math.log(e(0.6) + e(0.8)) - 0.6, math.log(e(0) + e(1)) - 1]
    expected = 0.5 * (to_gallery + sum(col) / 3)
    loss = SymmetricCrossEntropy(temperature=1.0)(
        q, torch.tensor([0, 1]), g, torch.tensor([0, 0, 1])
    )
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_one_item_per_identity_is_clip_exactly() -> None:
    torch.manual_seed(0)
    q, g = torch.randn(5, 4), torch.randn(5, 4)
    labels = torch.arange(5)
    logits = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(g, dim=1).T
    logits = logits / 0.1
    clip = 0.5 * (
        torch.nn.functional.cross_entropy(logits, labels)
        + torch.nn.functional.cross_entropy(logits.T, labels)
    )
    assert SymmetricCrossEntropy(0.1)(q, labels, g, labels).item() == pytest.approx(clip.item())


def test_learnt_temperature_trains_and_fixed_does_not() -> None:
    learnt, fixed = SymmetricCrossEntropy(), SymmetricCrossEntropy(0.5)
    assert [p.shape for p in learnt.parameters()] == [torch.Size([])]
    assert list(fixed.parameters()) == []
    assert learnt.temperature == pytest.approx(0.07) and fixed.temperature == pytest.approx(0.5)
    loss = learnt(Q + 0.1, QL, G, GL)
    loss.backward()
    assert learnt.log_scale.grad is not None and learnt.log_scale.grad.item() != 0


@pytest.mark.parametrize("name", ["contrastive", "triplet", "symmetric-ce"])
def test_gradients_flow_to_both_sides_and_stay_finite(name: str) -> None:
    q = Q.clone().requires_grad_(True)
    g = torch.cat([Q[:1], G[1:]]).requires_grad_(True)  # one gallery item equals a query
    loss = create_cross_loss(name, margin=1.0)(q, QL, g, GL)
    loss.backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(g.grad).all()
    assert q.grad.abs().sum() > 0 and g.grad.abs().sum() > 0


def test_unknown_loss_is_refused() -> None:
    with pytest.raises(ValueError, match="symmetric-ce"):
        create_cross_loss("hinge")


def test_cross_losses_are_the_single_tower_losses_with_reference_embeddings() -> None:
    """One interface: the criterion a single tower trains with takes the other side as ``ref``,
    and then compares only across the sides (never two queries or two gallery items)."""
    single = create_criterion("triplet", margin=1.0, normalized=False, miner="batch-hard")
    cross = create_cross_loss("triplet", margin=1.0, miner="batch-hard")
    assert isinstance(single, Criterion) and isinstance(cross, Criterion)
    assert type(single.loss) is type(cross.loss) and type(single.miner) is type(cross.miner)
    assert single(Q, QL, ref=G, ref_labels=GL).item() == pytest.approx(cross(Q, QL, G, GL).item())
    # the same embeddings as one batch mix in query-query and gallery-gallery tuples
    together = single(torch.cat([Q, G]), torch.cat([QL, GL])).item()
    assert together != pytest.approx(cross(Q, QL, G, GL).item())


def test_multi_similarity_takes_reference_embeddings() -> None:
    criterion = create_criterion("multi-similarity", margin=None, normalized=True)
    q, g = torch.nn.functional.normalize(Q + 0.5, dim=1), torch.nn.functional.normalize(G, dim=1)
    loss = criterion(q.requires_grad_(True), QL, ref=g.requires_grad_(True), ref_labels=GL)
    loss.backward()
    assert torch.isfinite(loss) and q.grad.abs().sum() > 0 and g.grad.abs().sum() > 0
