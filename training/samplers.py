"""Pair and triplet sampling over labelled images, vectorised with no rejection loops.

Pairs follow the seed: the first image is drawn uniformly; with probability one half the second
is another image of the same identity (target 0), otherwise an image of any other identity
(target 1), uniform over images as the seed's redraw-until-different loop is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class _Groups:
    """Images grouped by label: ``order`` lists image indices sorted by label."""

    order: IntArray
    start: IntArray  # per label, first position in ``order``
    size: IntArray  # per label, number of images
    position: IntArray  # per image, its position in ``order``

    @classmethod
    def of(cls, labels: IntArray) -> _Groups:
        order = np.argsort(labels, kind="stable")
        n_labels = int(labels.max()) + 1
        size = np.bincount(labels, minlength=n_labels)
        start = np.concatenate([[0], np.cumsum(size)[:-1]])
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        return cls(order, start, size, position)

    def other_same(self, images: IntArray, rng: np.random.Generator, labels: IntArray) -> IntArray:
        """For each image, a different image of the same label (its label must have ≥ 2)."""
        lab = labels[images]
        offset = rng.integers(0, self.size[lab] - 1)
        own = self.position[images] - self.start[lab]
        offset = offset + (offset >= own)
        return self.order[self.start[lab] + offset]

    def any_other_label(
        self, images: IntArray, rng: np.random.Generator, labels: IntArray
    ) -> IntArray:
        """For each image, an image drawn uniformly from all images of other labels."""
        lab = labels[images]
        pick = rng.integers(0, len(self.order) - self.size[lab])
        pick = pick + np.where(pick >= self.start[lab], self.size[lab], 0)
        return self.order[pick]


def sample_pairs(
    labels: IntArray, count: int, rng: np.random.Generator
) -> tuple[IntArray, IntArray, IntArray]:
    """Draw ``count`` pairs; returns (first, second, target) with target 0 = same, 1 = different."""
    groups = _Groups.of(labels)
    first = rng.integers(0, len(labels), size=count)
    want_same = rng.random(count) < 0.5
    # Identities with a single image cannot form a same pair; they fall back to a different pair.
    want_same &= groups.size[labels[first]] >= 2
    second = np.empty(count, dtype=np.int64)
    second[want_same] = groups.other_same(first[want_same], rng, labels)
    second[~want_same] = groups.any_other_label(first[~want_same], rng, labels)
    return first, second, (~want_same).astype(np.int64)


def sample_triplets(
    labels: IntArray, count: int, rng: np.random.Generator
) -> tuple[IntArray, IntArray, IntArray]:
    """Draw ``count`` (anchor, positive, negative) triplets.

    Anchors come from identities with ≥ 2 images.
    """
    groups = _Groups.of(labels)
    eligible = np.flatnonzero(groups.size[labels] >= 2)
    if len(eligible) == 0:
        raise ValueError("triplets need at least one identity with two or more images")
    anchor = eligible[rng.integers(0, len(eligible), size=count)]
    return (
        anchor,
        groups.other_same(anchor, rng, labels),
        groups.any_other_label(anchor, rng, labels),
    )


def sample_class_pair_triplets(
    labels: IntArray, count: int, rng: np.random.Generator
) -> tuple[IntArray, IntArray, IntArray]:
    """Hoffer and Ailon's triplets.

    Each from a pair of identities, two images of one and one of the other.

    The doubled identity (anchor and positive) is uniform over identities with two or more images,
    the other (the negative) uniform over the remaining identities, so within the pair either
    identity is equally often the one with two images ("one negative with two positives, or one
    positive with two negatives"); images are uniform within their identity. Unlike
    :func:`sample_triplets`, whose anchors are uniform over images, large identities are not drawn
    more often than small ones.
    """
    groups = _Groups.of(labels)
    eligible = np.flatnonzero(groups.size >= 2)
    present = np.flatnonzero(groups.size >= 1)
    if len(eligible) == 0 or len(present) < 2:
        raise ValueError("triplets need two identities, one of them with two or more images")
    doubled = eligible[rng.integers(0, len(eligible), size=count)]
    other = rng.integers(0, len(present) - 1, size=count)
    other = present[other + (other >= np.searchsorted(present, doubled))]
    anchor = groups.order[groups.start[doubled] + rng.integers(0, groups.size[doubled])]
    negative = groups.order[groups.start[other] + rng.integers(0, groups.size[other])]
    return anchor, groups.other_same(anchor, rng, labels), negative


class PKSampler:
    """Batches of P identities × K images each: what online miners need to find hard tuples.

    Identities with fewer than two images are never drawn (they have no positives); identities
    with fewer than K images repeat some. With fewer than P identities (ten clothing classes, not
    thousands of faces) K grows so the batch keeps its P×K images, up to the largest identity's
    size: a batch of 4 images × 10 classes would waste most of the negatives a miner could use.
    Usable as a DataLoader ``batch_sampler``.

    Distributed (``world`` > 1): P is per process, so a step's global batch is (world × P) × K.
    Every rank holds the same seeded generator and draws the whole global batch (one permutation
    of identities per step, then each identity's K images); rank ``r`` keeps identities
    ``r·P … (r+1)·P − 1`` of it. The ranks' identities are disjoint, together they are exactly the
    batch one process with P' = world × P would draw, and the generator state (checkpointed for
    resume) is the same on every rank.
    """

    def __init__(
        self,
        labels: IntArray,
        p: int,
        k: int,
        steps: int,
        seed: int = 0,
        *,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if p < 2 or k < 2:
            raise ValueError(
                f"P×K batches need P ≥ 2 identities and K ≥ 2 images each, got P={p}, K={k}"
            )
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is outside a world of {world} processes")
        groups = _Groups.of(labels)
        self.members = [
            groups.order[s : s + n] for s, n in zip(groups.start, groups.size) if n >= 2
        ]
        if len(self.members) < max(2, world):
            raise ValueError(
                "P×K batches need at least two identities with two or more images"
                + (f", and at least one per process ({world})" if world > 1 else "")
            )
        self.rank, self.world = rank, world
        self.p = min(p, len(self.members) // world)  # per rank
        self.k = max(k, min((p * k) // self.p, max(len(m) for m in self.members)))
        self.steps = steps
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            chosen = self.rng.choice(len(self.members), size=self.world * self.p, replace=False)
            batch = [
                self.rng.choice(self.members[i], size=self.k, replace=len(self.members[i]) < self.k)
                for i in chosen
            ]
            mine = batch[self.rank * self.p : (self.rank + 1) * self.p]
            yield np.concatenate(mine).tolist()


class RandomTupleSampler:
    """Seed-style batches: ``batch_size`` random pairs ([firsts, seconds]) or triplets ([a, p, n]).

    ``kind`` is "pairs", "triplets" or "class-pair-triplets" (Hoffer and Ailon's, for
    triplet-softmax). Distributed (``world`` > 1): every rank draws the same world × ``batch_size``
    tuples from the shared seeded generator and keeps tuples ``rank·batch_size …``, so
    ``batch_size`` is per process.
    """

    def __init__(
        self,
        labels: np.ndarray,
        kind: str,
        batch_size: int,
        steps: int,
        seed: int = 0,
        *,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.labels, self.kind, self.batch_size, self.steps = labels, kind, batch_size, steps
        self.rank, self.world = rank, world
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        draw = {
            "pairs": sample_pairs,
            "triplets": sample_triplets,
            "class-pair-triplets": sample_class_pair_triplets,
        }[self.kind]
        mine = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        for _ in range(self.steps):
            parts = draw(self.labels, self.world * self.batch_size, self.rng)
            members = parts[:2] if self.kind == "pairs" else parts
            yield np.concatenate([part[mine] for part in members]).tolist()
