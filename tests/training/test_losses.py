"""Losses and miners against values computed by hand on tiny batches."""

from __future__ import annotations

import math

import pytest
import torch

from siamese.core.errors import ConfigError
from siamese.training.losses import (
    AllPairsMiner,
    BatchAllMiner,
    BatchHardMiner,
    ContrastiveLoss,
    MultiSimilarityLoss,
    Pairs,
    SemiHardMiner,
    TripletLoss,
    Triplets,
    create_criterion,
)
from siamese.training.losses.instance import InstanceLoss

EPS = 1e-6  # pairwise_distance adds eps to the difference, as in the seed


def test_contrastive_by_hand() -> None:
    emb = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0], [3.0, 0.0]])
    pairs = Pairs(torch.tensor([0, 0, 0]), torch.tensor([1, 2, 3]), torch.tensor([0, 1, 1]))
    d0 = math.dist((0, 0), (-3 + EPS, -4 + EPS))
    d1 = 1 - EPS
    expected = (
        d0**2 + (2.0 - d1) ** 2 + 0.0
    ) / 3  # same; different inside margin; different beyond it
    assert ContrastiveLoss(margin=2.0)(emb, pairs).item() == pytest.approx(expected, rel=1e-5)


def test_contrastive_zero_for_far_negatives_and_identical_positives() -> None:
    emb = torch.tensor([[1.0, 1.0], [1.0, 1.0], [11.0, 11.0]])
    assert (
        ContrastiveLoss()(
            emb, Pairs(torch.tensor([0]), torch.tensor([1]), torch.tensor([0]))
        ).item()
        < 1e-10
    )
    assert (
        ContrastiveLoss()(
            emb, Pairs(torch.tensor([0]), torch.tensor([2]), torch.tensor([1]))
        ).item()
        == 0.0
    )


def test_triplet_by_hand() -> None:
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.5, 0.0], [0.5, 0.0], [0.0, 3.0]])
    triplets = Triplets(torch.tensor([0, 0]), torch.tensor([1, 3]), torch.tensor([2, 4]))
    # (1 - 1.5 + 1) = 0.5 ; (0.5 - 3 + 1) < 0 -> 0 ; mean 0.25
    assert TripletLoss(margin=1.0)(emb, triplets).item() == pytest.approx(0.25, rel=1e-4)


# A 1-D batch: identity 0 at {0, 1}, identity 1 at {1.5, 4}. Distances are easy to read.
POINTS = torch.tensor([[0.0], [1.0], [1.5], [4.0]])
LABELS = torch.tensor([0, 0, 1, 1])


def test_batch_hard_miner() -> None:
    a, p, n = BatchHardMiner()(POINTS, LABELS)
    assert a.tolist() == [0, 1, 2, 3]
    assert p.tolist() == [1, 0, 3, 2]  # the only positive each
    assert n.tolist() == [2, 2, 1, 1]  # nearest other-identity point


def test_semi_hard_miner() -> None:
    a, p, n = SemiHardMiner(margin=1.0)(POINTS, LABELS)
    triplets = set(zip(a.tolist(), p.tolist(), n.tolist()))
    # anchor 0: d(0,1)=1, negatives at 1.5 and 4 -> 1.5 is in (1, 2): semi-hard.
    # anchor 1: d(1,0)=1, negatives at .5 and 3 -> none in (1, 2).
    # anchor 2: d(2,3)=2.5, negatives at 1.5 and .5 -> none farther than 2.5.
    # anchor 3: d(3,2)=2.5, negatives at 4 and 3 -> 3 is in (2.5, 3.5): picks point 1.
    assert triplets == {(0, 1, 2), (3, 2, 1)}


def test_batch_all_miner_keeps_only_violating() -> None:
    a, p, n = BatchAllMiner(margin=0.2)(POINTS, LABELS)
    for ai, pi, ni in zip(a.tolist(), p.tolist(), n.tolist()):
        assert LABELS[ai] == LABELS[pi] != LABELS[ni] and ai != pi
        assert abs(POINTS[ai] - POINTS[pi]).item() - abs(POINTS[ai] - POINTS[ni]).item() + 0.2 > 0
    assert set(zip(a.tolist(), p.tolist(), n.tolist())) == {(1, 0, 2), (2, 3, 0), (2, 3, 1)}


def test_pair_miners() -> None:
    first, second, target = AllPairsMiner()(POINTS, LABELS)
    assert sorted(zip(first.tolist(), second.tolist(), target.tolist())) == [
        (0, 1, 0),
        (0, 2, 1),
        (0, 3, 1),
        (1, 2, 1),
        (1, 3, 1),
        (2, 3, 0),
    ]
    first, second, target = AllPairsMiner(margin=1.0)(POINTS, LABELS)
    assert sorted(zip(first.tolist(), second.tolist(), target.tolist())) == [
        (0, 1, 0),
        (1, 2, 1),
        (2, 3, 0),
    ]


def test_multi_similarity_by_hand() -> None:
    emb = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    loss = MultiSimilarityLoss(margin=0.5, alpha=2.0, beta=50.0, epsilon=0.1)
    sim = emb @ emb.T
    total = []
    for i in range(4):
        pos = [j for j in range(4) if j != i and labels[j] == labels[i]]
        neg = [j for j in range(4) if labels[j] != labels[i]]
        hard_neg, hard_pos = max(sim[i, neg]), min(sim[i, pos])
        kept_pos = [j for j in pos if sim[i, j] - 0.1 < hard_neg]
        kept_neg = [j for j in neg if sim[i, j] + 0.1 > hard_pos]
        if not kept_pos and not kept_neg:
            continue
        term = math.log1p(sum(math.exp(-2.0 * (sim[i, j] - 0.5)) for j in kept_pos)) / 2.0
        term += math.log1p(sum(math.exp(50.0 * (sim[i, j] - 0.5)) for j in kept_neg)) / 50.0
        total.append(term)
    assert loss(emb, labels).item() == pytest.approx(sum(total) / len(total), rel=1e-5)


def test_criterion_defaults_and_validation() -> None:
    assert (
        create_criterion("contrastive", margin=None, normalized=False, sampler="random").margin
        == 2.0
    )
    triplet = create_criterion("triplet", margin=None, normalized=True)
    assert triplet.margin == 0.2 and triplet.miner_name == "batch-hard"
    assert (
        create_criterion("triplet", margin=0.3, normalized=False, miner="semi-hard").miner_name
        == "semi-hard"
    )
    with pytest.raises(ConfigError, match="unknown loss"):
        create_criterion("arcface", margin=None, normalized=True)
    with pytest.raises(ConfigError, match="positive"):
        create_criterion("triplet", margin=-1.0, normalized=True)
    with pytest.raises(ConfigError, match="works with miners"):
        create_criterion("contrastive", margin=None, normalized=True, miner="batch-hard")
    with pytest.raises(ConfigError, match="P×K"):
        create_criterion("multi-similarity", margin=None, normalized=True, sampler="random")


def test_random_pairs_criterion_matches_seed_formula() -> None:
    criterion = create_criterion("contrastive", margin=2.0, normalized=False, sampler="random")
    emb = torch.tensor(
        [[0.0, 0.0], [0.0, 0.0], [3.0, 4.0], [1.0, 0.0]]
    )  # pairs (0,2) same, (1,3) different
    labels = torch.tensor([5, 5, 5, 6])
    d0, d1 = math.dist((0, 0), (-3 + EPS, -4 + EPS)), 1 - EPS
    assert criterion(emb, labels).item() == pytest.approx((d0**2 + (2 - d1) ** 2) / 2, rel=1e-5)


def test_instance_loss_by_hand() -> None:
    # Two images, two views each, on the unit circle: each view's other view is at cosine c, the
    # other image's at 0.
    c = math.cos(0.3)
    emb = torch.tensor([[1.0, 0.0], [c, math.sin(0.3)], [0.0, 1.0], [-math.sin(0.3), c]])
    instances = torch.tensor([0, 0, 1, 1])
    sims = emb.double() @ emb.double().T / 0.1
    expected = (
        sum(
            -sims[i, j] + torch.logsumexp(torch.cat([sims[i, :i], sims[i, i + 1 :]]), 0)
            for i, j in ((0, 1), (1, 0), (2, 3), (3, 2))
        )
        / 4
    )
    assert InstanceLoss()(emb, instances).item() == pytest.approx(expected.item(), rel=1e-3)
    swapped = torch.tensor([0, 1, 0, 1])  # views paired with the wrong image cost more
    assert InstanceLoss()(emb, swapped).item() > InstanceLoss()(emb, instances).item()


def test_instance_loss_with_its_own_projector_trains_the_features() -> None:
    torch.manual_seed(0)
    loss = InstanceLoss(in_features=6)
    features = torch.randn(8, 6, requires_grad=True)
    value = loss(features, torch.arange(4).repeat_interleave(2))
    value.backward()
    assert value.ndim == 0  # its value: test_reference_losses.py (NT-Xent of PML)
    assert features.grad is not None and features.grad.abs().sum() > 0  # reaches the backbone
    assert (
        all(p.grad is not None for p in loss.parameters()) and len(list(loss.parameters())) == 4
    )  # two linear layers


# ------------------------------------------------------ Hoffer and Ailon's triplet-network loss
def test_softmax_triplet_by_hand() -> None:
    """d+ = e^{d_ap} / (e^{d_ap} + e^{d_an}).

    loss = ((d+)^2 + (d- - 1)^2) / 2 = (d+)^2, averaged.
    """
    from siamese.training.losses import SoftmaxTripletLoss

    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [2.0, 0.0]])
    triplets = Triplets(torch.tensor([0, 0]), torch.tensor([1, 3]), torch.tensor([2, 1]))
    d_ap1, d_an1 = math.dist((0, 0), (-1 + EPS, EPS)), math.dist((0, 0), (EPS, -3 + EPS))
    d_ap2, d_an2 = math.dist((0, 0), (-2 + EPS, EPS)), d_ap1
    plus1 = math.exp(d_ap1) / (math.exp(d_ap1) + math.exp(d_an1))  # 1/(1+e^2) = 0.1192
    plus2 = math.exp(d_ap2) / (
        math.exp(d_ap2) + math.exp(d_an2)
    )  # e/(e+1) = 0.7311: wrong way round
    expected = (plus1**2 + plus2**2) / 2
    assert expected == pytest.approx((0.11920**2 + 0.73106**2) / 2, rel=1e-3)
    assert SoftmaxTripletLoss()(emb, triplets).item() == pytest.approx(expected, rel=1e-5)


def test_softmax_triplet_gradient_pulls_positive_in_and_pushes_negative_out() -> None:
    from siamese.training.losses import SoftmaxTripletLoss

    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.5]], requires_grad=True)
    SoftmaxTripletLoss()(
        emb, Triplets(torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    ).backward()
    grad = emb.grad
    assert grad[1, 0] > 0  # descending moves the positive (at +x) towards the anchor
    assert grad[2, 1] < 0  # and the negative (at +y) away from it
    # Equal distances give d+ = 1/2 and the loss 1/4, whatever the scale.
    equal = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    loss = SoftmaxTripletLoss()(
        equal, Triplets(torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    )
    assert loss.item() == pytest.approx(0.25, abs=1e-6)


def test_softmax_triplet_criterion_choices() -> None:
    sampled = create_criterion("triplet-softmax", margin=None, normalized=True, sampler="random")
    assert sampled.tuple_kind == "class-pair-triplets" and sampled.margin is None
    mined = create_criterion("triplet-softmax", margin=None, normalized=True)
    assert mined.miner_name == "batch-hard" and mined.describe()["margin"] is None
    emb = torch.tensor([[0.0, 0.0], [0.1, 0.0], [3.0, 0.0], [3.1, 0.0]])
    assert 0.0 < mined(emb, torch.tensor([0, 0, 1, 1])).item() < 0.01
    for bad in (
        {"margin": 0.5},
        {"margin": None, "miner": "semi-hard"},
        {"margin": None, "sampler": "random", "miner": "batch-hard"},
    ):
        with pytest.raises(ConfigError):
            create_criterion("triplet-softmax", normalized=True, **{"sampler": "pk", **bad})
