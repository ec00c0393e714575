"""The project's losses and miners against pytorch-metric-learning (PML) on random P×K batches.

PML shares no code with training/losses/. Batches are drawn by Hypothesis (P identities × K images,
dimension, scale, margin) in float64, and compared within rel 1e-5 / abs 1e-5: our Euclidean
distance adds torch's pairwise_distance eps (1e-6) to each coordinate of the difference, the only
intended numerical difference. Where the definitions differ on purpose, the comparable part is
compared:

- contrastive: ours is Hadsell et al.'s squared form, (1 − Y)·d² + Y·max(m − d, 0)², averaged over
  every pair; PML's ContrastiveLoss is unsquared, d and max(m − d, 0). Per-pair losses are compared
  (ours = PML's squared) through PML's DoNothingReducer, and their mean against our loss. We count
  each unordered pair once, PML each ordered pair (twice): the mean is the same.
- triplet: batch-hard and batch-all mine exactly PML's BatchHardMiner and TripletMarginMiner("all")
  triplets; semi-hard keeps, per (anchor, positive), only the nearest of PML's "semihard" triplets
  (FaceNet's choice, PML keeps all of them), so the sets are compared that way and the loss on our
  triplets is compared with PML's TripletMarginLoss on the same triplets.
- multi-similarity: the same loss and miner; ours averages over anchors that keep any pair, which
  is PML's AvgNonZeroReducer (an anchor that keeps a pair has a positive loss). PML answers 0
  when mining leaves at most one pair of each kind; ours scores them: those batches are skipped.
- instance term: NT-Xent with two views per image, PML's NTXentLoss on the term's projector output.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning import reducers as pml_reducers
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance

from siamese.training.losses import (
    AllPairsMiner,
    BatchAllMiner,
    BatchHardMiner,
    ContrastiveLoss,
    MultiSimilarityLoss,
    SemiHardMiner,
    TripletLoss,
    create_criterion,
)
from siamese.training.losses.instance import TEMPERATURE, InstanceLoss
from siamese.training.losses.reducers import NonZeroMeanReducer

SETTINGS = settings(max_examples=40, deadline=None)
#: Our pair distance is ‖a − b + eps‖ (eps = 1e-6 per coordinate, torch's pairwise_distance), so a
#: distance may move by up to √dim·1e-6 ≈ 3e-6 at dim 8, a triplet's term by twice that.
RTOL, ATOL = 1e-5, 1e-5


@st.composite
def batches(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """A P×K batch (float64) of random embeddings, shuffled so identities are not in blocks."""
    p, k = draw(st.integers(2, 5)), draw(st.integers(2, 4))
    dim = draw(st.integers(2, 8))
    scale = draw(st.sampled_from([0.1, 0.5, 1.0, 3.0]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    labels = torch.arange(p).repeat_interleave(k)
    order = torch.randperm(p * k, generator=generator)
    embeddings = scale * torch.randn(p * k, dim, generator=generator, dtype=torch.float64)
    return embeddings, labels[order]


def _euclidean() -> LpDistance:
    return LpDistance(normalize_embeddings=False, p=2, power=1)


def _triplet_set(*parts: torch.Tensor) -> set[tuple[int, int, int]]:
    return set(zip(*(part.tolist() for part in parts), strict=True))


@SETTINGS
@given(batch=batches(), margin=st.floats(0.05, 3.0))
def test_contrastive_on_all_pairs(batch: tuple[torch.Tensor, torch.Tensor], margin: float) -> None:
    embeddings, labels = batch
    ours = ContrastiveLoss(margin=margin)(embeddings, AllPairsMiner()(embeddings, labels))
    pml = pml_losses.ContrastiveLoss(
        pos_margin=0,
        neg_margin=margin,
        distance=_euclidean(),
        reducer=pml_reducers.DoNothingReducer(),
    )(embeddings, labels)
    per_pair = torch.cat([pml["pos_loss"]["losses"], pml["neg_loss"]["losses"]]) ** 2
    assert len(per_pair) == len(labels) * (len(labels) - 1)  # ordered pairs
    torch.testing.assert_close(ours, per_pair.mean(), rtol=RTOL, atol=ATOL)


@SETTINGS
@given(batch=batches(), margin=st.floats(0.05, 3.0))
def test_contrastive_with_hard_pairs(
    batch: tuple[torch.Tensor, torch.Tensor], margin: float
) -> None:
    """Hard pairs: every positive, negatives nearer than the margin (PML's PairMarginMiner)."""
    embeddings, labels = batch
    criterion = create_criterion("contrastive", margin=margin, normalized=False, miner="hard-pairs")
    mined = criterion.miner(embeddings, labels)
    a1, p, a2, n = pml_miners.PairMarginMiner(
        pos_margin=0, neg_margin=margin, distance=_euclidean()
    )(embeddings, labels)
    ours_negatives = {
        tuple(sorted(pair))
        for pair, t in zip(zip(mined.first.tolist(), mined.second.tolist()), mined.target.tolist())
        if t == 1
    }
    assert ours_negatives == {tuple(sorted(pair)) for pair in zip(a2.tolist(), n.tolist())}
    assert int((mined.target == 0).sum()) * 2 == len(a1)
    pml = pml_losses.ContrastiveLoss(
        pos_margin=0,
        neg_margin=margin,
        distance=_euclidean(),
        reducer=pml_reducers.DoNothingReducer(),
    )(embeddings, labels, (a1, p, a2, n))
    parts = [pml[name]["losses"] for name in ("pos_loss", "neg_loss")]
    per_pair = torch.cat([part for part in parts if torch.is_tensor(part) and part.ndim]) ** 2
    torch.testing.assert_close(criterion(embeddings, labels), per_pair.mean(), rtol=RTOL, atol=ATOL)


@SETTINGS
@given(batch=batches(), margin=st.floats(0.05, 2.0))
def test_triplet_batch_hard(batch: tuple[torch.Tensor, torch.Tensor], margin: float) -> None:
    embeddings, labels = batch
    ours = BatchHardMiner()(embeddings, labels)
    theirs = pml_miners.BatchHardMiner(distance=_euclidean())(embeddings, labels)
    assert _triplet_set(*ours) == _triplet_set(*theirs)
    assert len(ours.anchor) == len(labels)  # every anchor of a P×K batch has both
    criterion = create_criterion("triplet", margin=margin, normalized=False, miner="batch-hard")
    pml = pml_losses.TripletMarginLoss(
        margin=margin, distance=_euclidean(), reducer=pml_reducers.MeanReducer()
    )
    torch.testing.assert_close(
        criterion(embeddings, labels), pml(embeddings, labels, theirs), rtol=RTOL, atol=ATOL
    )


@SETTINGS
@given(batch=batches(), margin=st.floats(0.05, 2.0))
def test_triplet_batch_all(batch: tuple[torch.Tensor, torch.Tensor], margin: float) -> None:
    embeddings, labels = batch
    ours = BatchAllMiner(margin)(embeddings, labels)
    theirs = pml_miners.TripletMarginMiner(
        margin=margin, type_of_triplets="all", distance=_euclidean()
    )(embeddings, labels)
    assert _triplet_set(*ours) == _triplet_set(*theirs)
    criterion = create_criterion("triplet", margin=margin, normalized=False, miner="batch-all")
    assert isinstance(criterion.loss.reducer, NonZeroMeanReducer)
    pml = pml_losses.TripletMarginLoss(
        margin=margin, distance=_euclidean(), reducer=pml_reducers.AvgNonZeroReducer()
    )
    torch.testing.assert_close(
        criterion(embeddings, labels), pml(embeddings, labels, theirs), rtol=RTOL, atol=ATOL
    )


@SETTINGS
@given(batch=batches(), margin=st.floats(0.05, 2.0))
def test_triplet_semi_hard(batch: tuple[torch.Tensor, torch.Tensor], margin: float) -> None:
    embeddings, labels = batch
    ours = SemiHardMiner(margin)(embeddings, labels)
    theirs = pml_miners.TripletMarginMiner(
        margin=margin, type_of_triplets="semihard", distance=_euclidean()
    )(embeddings, labels)
    distances = torch.cdist(embeddings, embeddings)
    nearest: dict[tuple[int, int], int] = {}
    for a, p, n in _triplet_set(*theirs):
        best = nearest.get((a, p))
        if best is None or distances[a, n] < distances[a, best]:
            nearest[(a, p)] = n
    assert _triplet_set(*ours) == {(a, p, n) for (a, p), n in nearest.items()}
    pml = pml_losses.TripletMarginLoss(
        margin=margin, distance=_euclidean(), reducer=pml_reducers.MeanReducer()
    )
    expected = pml(embeddings, labels, tuple(ours)) if len(ours.anchor) else torch.tensor(0.0)
    got = TripletLoss(margin=margin)(embeddings, ours)
    torch.testing.assert_close(got, expected.to(got.dtype), rtol=RTOL, atol=ATOL)


@SETTINGS
@given(
    batch=batches(),
    margin=st.sampled_from([0.3, 0.5, 0.7]),
    alpha=st.sampled_from([1.0, 2.0]),
    beta=st.sampled_from([10.0, 50.0]),
    epsilon=st.sampled_from([0.05, 0.1, 0.5]),
)
def test_multi_similarity(
    batch: tuple[torch.Tensor, torch.Tensor],
    margin: float,
    alpha: float,
    beta: float,
    epsilon: float,
) -> None:
    embeddings, labels = batch
    ours = MultiSimilarityLoss(margin=margin, alpha=alpha, beta=beta, epsilon=epsilon)
    mined = pml_miners.MultiSimilarityMiner(epsilon=epsilon, distance=CosineSimilarity())(
        embeddings, labels
    )
    # PML's pair losses answer 0 when at most one positive and one negative pair are left (a
    # guard in its GenericPairLoss); ours scores that pair. Only the rest is comparable.
    assume(any(len(indices) > 1 for indices in mined))
    pml = pml_losses.MultiSimilarityLoss(
        alpha=alpha,
        beta=beta,
        base=margin,
        distance=CosineSimilarity(),
        reducer=pml_reducers.AvgNonZeroReducer(),
    )
    torch.testing.assert_close(
        ours(embeddings, labels), pml(embeddings, labels, mined), rtol=RTOL, atol=ATOL
    )


def test_multi_similarity_default_criterion_uses_the_paper_settings() -> None:
    """The criterion the trainer builds is the one compared above, with the paper's α, β, ε."""
    criterion = create_criterion("multi-similarity", margin=None, normalized=True)
    loss = criterion.loss
    assert isinstance(loss, MultiSimilarityLoss) and criterion.miner is None
    assert (loss.margin, loss.alpha, loss.beta, loss.epsilon) == (0.5, 2.0, 50.0, 0.1)
    embeddings = torch.randn(12, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    labels = torch.arange(4).repeat_interleave(3)
    pml = pml_losses.MultiSimilarityLoss(reducer=pml_reducers.AvgNonZeroReducer())
    mined = pml_miners.MultiSimilarityMiner()(embeddings, labels)
    assert criterion(embeddings, labels).item() == pytest.approx(
        pml(embeddings, labels, mined).item(), rel=RTOL
    )


@SETTINGS
@given(
    batch=batches(),
    weight=st.sampled_from([0.5, 1.0]),
    with_projector=st.booleans(),
)
def test_instance_term_is_nt_xent(
    batch: tuple[torch.Tensor, torch.Tensor], weight: float, with_projector: bool
) -> None:
    """Two views per image: each must pick its other view (PML's NTXentLoss, SimCLR's τ = 0.1).

    Views of one image are the positives, everything else in the batch the negatives, averaged
    over ordered positive pairs: the same cross-entropy, times the term's weight.
    """
    embeddings, _ = batch
    embeddings = embeddings[: len(embeddings) // 2 * 2]
    instances = torch.arange(len(embeddings) // 2).repeat_interleave(2)
    instances = instances[
        torch.randperm(len(instances), generator=torch.Generator().manual_seed(1))
    ]
    with torch.random.fork_rng():  # the projector's initial weights, without touching others' RNG
        torch.manual_seed(0)
        ours = InstanceLoss(weight, in_features=embeddings.shape[1] if with_projector else None)
    ours = ours.to(torch.float64)
    with torch.no_grad():
        projected = ours.projector(embeddings)
        expected = weight * pml_losses.NTXentLoss(
            temperature=TEMPERATURE, reducer=pml_reducers.MeanReducer()
        )(projected, instances)
        torch.testing.assert_close(ours(embeddings, instances), expected, rtol=RTOL, atol=ATOL)
