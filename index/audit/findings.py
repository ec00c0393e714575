"""The audit's four kinds of finding, each computed from the k-NN lists with array operations.

Every finding is first a :class:`Draft`: rows of the gallery's arrays, a score to rank by, and the
identities involved; the audit then resolves rows into items (ids, paths, distances). Each problem
is reported once, under its most specific kind: items in a cross-identity duplicate group are not
also mislabels, and an item whose likely identity is its own identity's overlap partner is part of
that overlap, not a mislabel.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from siamese.index.audit.neighbours import GalleryVectors

#: Mislabels: at least this many neighbours vote, even in galleries of one or two items per person.
MIN_VOTERS = 3
#: Overlaps: the share of both identities' items that have an item of the other identity within
#: the identity distance (a split identity scores near the genuine accept rate; one stray item
#: among ten scores about 0.1).
OVERLAP_SHARE = 0.3
#: Loose identities: spread at least this many times the gallery's median identity spread.
LOOSE_RATIO = 1.5
#: Identities with fewer items have no spread worth comparing.
LOOSE_MIN_ITEMS = 3
_CHUNK = 65_536


@dataclass
class Draft:
    """A finding as rows of the gallery's arrays: ``key`` first, then ``rows`` (shown with it)."""

    kind: str
    score: float
    key: int
    rows: list[int]
    identities: list[int]
    suggested: int | None = None
    details: dict[str, float] = field(default_factory=dict)


class Identities:
    """Each identity's rows, from one sort of the labels."""

    def __init__(self, labels: NDArray[np.int64], count: int) -> None:
        self.order = np.argsort(labels, kind="stable")
        self.sizes = np.bincount(labels, minlength=count)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)])

    def rows(self, label: int) -> NDArray[np.int64]:
        """The rows of one identity."""
        return self.order[self.starts[label] : self.starts[label + 1]]


# ---------------------------------------------------------------------------------- duplicates
def exact_duplicates(data: GalleryVectors) -> list[Draft]:
    """Items with the same content hash: one group per hash held by two or more items."""
    groups: dict[str, list[int]] = defaultdict(list)
    for row, digest in enumerate(data.hashes):
        if digest:  # vectors staged without a file have no hash: never one group
            groups[digest].append(row)
    drafts = []
    for rows in groups.values():
        if len(rows) > 1:
            identities = sorted({int(data.labels[r]) for r in rows})
            drafts.append(
                Draft("exact_duplicate", float(len(identities)), rows[0], rows[1:], identities)
            )
    return _ranked(drafts)


def near_duplicates(
    data: GalleryVectors,
    distances: NDArray[np.float32],
    rows: NDArray[np.int64],
    limit_distance: float,
) -> list[Draft]:
    """Groups of items linked by neighbours nearer than ``limit_distance`` (not all one file).

    A group whose items all share one content hash is an exact duplicate, reported as such.
    """
    near = (rows >= 0) & (distances <= limit_distance)
    if limit_distance <= 0 or not near.any():
        return []
    a = np.repeat(np.arange(len(rows)), near.sum(axis=1))
    b = rows[near]
    drafts = []
    for members in _components(a, b):
        hashes = {data.hashes[r] for r in members}
        if len(hashes) == 1 and "" not in hashes:
            continue
        identities = sorted({int(data.labels[r]) for r in members})
        gaps = np.linalg.norm(data.vectors[members[1:]] - data.vectors[members[0]], axis=1)
        drafts.append(
            Draft(
                "near_duplicate",
                float(len(identities)),
                members[0],
                members[1:],
                identities,
                details={"largest_distance": float(gaps.max(initial=0.0))},
            )
        )
    return _ranked(drafts)


def _components(a: NDArray[np.int64], b: NDArray[np.int64]) -> list[list[int]]:
    """Connected components of the graph with edges a[i]–b[i] (min-label propagation)."""
    nodes, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    left, right = inverse[: len(a)], inverse[len(a) :]
    label = np.arange(len(nodes))
    while True:
        low = np.minimum(label[left], label[right])
        updated = label.copy()
        np.minimum.at(updated, left, low)
        np.minimum.at(updated, right, low)
        updated = updated[updated]
        if np.array_equal(updated, label):
            break
        label = updated
    order = np.argsort(label, kind="stable")
    cuts = np.flatnonzero(np.diff(label[order])) + 1
    return [sorted(nodes[group].tolist()) for group in np.split(order, cuts)]


def _ranked(drafts: list[Draft]) -> list[Draft]:
    """Most identities first (a file under two names), then the largest groups."""
    return sorted(drafts, key=lambda d: (-d.score, -len(d.rows), d.key))


def cross_identity_rows(groups: list[Draft]) -> NDArray[np.int64]:
    """Rows in duplicate groups that span two or more identities."""
    rows = [r for g in groups if len(g.identities) > 1 for r in (g.key, *g.rows)]
    return np.asarray(sorted(set(rows)), np.int64)


# ---------------------------------------------------------------------------------- overlaps
def overlaps(
    data: GalleryVectors,
    identities: Identities,
    distances: NDArray[np.float32],
    rows: NDArray[np.int64],
    same: NDArray[np.float32],
    identity_distance: float,
    excluded: NDArray[np.int64],
    share: float = OVERLAP_SHARE,
) -> list[Draft]:
    """Pairs of identities whose items lie closer to each other than they should.

    An item supports the pair (its identity, B) when an item of B lies within the identity
    distance (a query like it would be taken for B), or nearer than its own identity's nearest
    item (B is where it belongs as much as its own). A pair is reported when its supporters are
    at least ``share`` of both identities' items: a split identity scores about one half or more,
    two people apart about nothing, one mislabelled item among ten about 0.1. Items in
    cross-identity duplicate groups are left out (a copied file is not a second person's photo).
    """
    labels, count = data.labels, len(data.names)
    keep = np.ones(len(labels), bool)
    keep[excluded] = False
    reach = np.where(np.isfinite(same), np.maximum(same, identity_distance), identity_distance)
    close = (rows >= 0) & (distances <= reach[:, None]) & keep[:, None]
    close &= keep[np.maximum(rows, 0)]
    theirs = labels[np.maximum(rows, 0)]
    close &= theirs != labels[:, None]
    if not close.any():
        return []
    item = np.repeat(np.arange(len(rows)), close.sum(axis=1))
    other = theirs[close]
    item_other = np.unique(item * count + other)  # each item counted once per other identity
    mine, theirs_once = labels[item_other // count], item_other % count
    low, high = np.minimum(mine, theirs_once), np.maximum(mine, theirs_once)
    pairs, counts = np.unique(low * count + high, return_counts=True)
    scores = counts / (identities.sizes[pairs // count] + identities.sizes[pairs % count])
    drafts = []
    for pair, score, within in zip(pairs, scores, counts):
        if score < share:
            continue
        first, second = int(pair // count), int(pair % count)
        drafts.append(_overlap_draft(data, identities, first, second, float(score), int(within)))
    return sorted(drafts, key=lambda d: (-d.score, d.key))


def _overlap_draft(
    data: GalleryVectors, identities: Identities, first: int, second: int, score: float, within: int
) -> Draft:
    """The closest pair of items across the two identities, shown with the nearest of both."""
    a, b = identities.rows(first), identities.rows(second)
    gaps = _pairwise(data.vectors[a], data.vectors[b])
    i, j = np.unravel_index(np.argmin(gaps), gaps.shape)
    key = int(a[i])
    both = np.concatenate([a, b])
    by_distance = both[np.argsort(np.linalg.norm(data.vectors[both] - data.vectors[key], axis=1))]
    return Draft(
        "overlap",
        score,
        key,
        [int(r) for r in by_distance if r != key],
        [first, second],
        suggested=second,
        details={"closest_distance": float(gaps[i, j]), "items_within": float(within)},
    )


def _pairwise(x: NDArray[np.float32], y: NDArray[np.float32]) -> NDArray[np.float32]:
    """L2 distances between two (small) sets of vectors, capped at 2,000 × 2,000 by sampling."""
    x, y = x[:2000].astype(np.float64), y[:2000].astype(np.float64)
    squared = (x**2).sum(1)[:, None] + (y**2).sum(1)[None, :] - 2 * x @ y.T
    return np.sqrt(np.maximum(squared, 0)).astype(np.float32)


# --------------------------------------------------------------------------------- mislabels
def mislabels(
    data: GalleryVectors,
    identities: Identities,
    distances: NDArray[np.float32],
    rows: NDArray[np.int64],
    same: NDArray[np.float32],
    excluded: NDArray[np.int64],
    partners: set[tuple[int, int]],
) -> list[Draft]:
    """Items whose nearest neighbours mostly belong to one other identity.

    Voters: the nearest min(k, typical identity size − 1) neighbours, at least MIN_VOTERS. An item
    is a likely mislabel when more than half of them belong to one other identity and its nearest
    neighbour does too. Score (how sure): that identity's share of the votes × (1 − its nearest
    distance / the nearest own-identity distance), so an item with its own identity just as near
    scores 0 and one with none of its own identity nearby scores the whole share.
    """
    labels = data.labels
    typical = int(np.median(identities.sizes[identities.sizes > 0])) if len(labels) else 1
    voters = int(min(rows.shape[1], max(MIN_VOTERS, typical - 1)))
    keep = np.ones(len(labels), bool)
    keep[excluded] = False
    drafts = []
    for start in range(0, len(labels), _CHUNK):
        block = slice(start, min(len(labels), start + _CHUNK))
        near = rows[block, :voters]
        theirs = np.where(near >= 0, labels[np.maximum(near, 0)], -1)
        own = labels[block, None]
        votes = (theirs[:, :, None] == theirs[:, None, :]).sum(axis=2)
        votes = np.where((theirs != own) & (theirs >= 0), votes, 0)
        column = np.argmax(votes, axis=1)
        picked = np.arange(len(near))
        best, likely = votes[picked, column], theirs[picked, column]
        flagged = np.flatnonzero((2 * best > voters) & (theirs[:, 0] == likely) & keep[block])
        for n in flagged:
            row = start + int(n)
            if (int(labels[row]), int(likely[n])) in partners:
                continue
            nearest = float(distances[row, 0])
            own_nearest = float(same[row])
            margin = (
                1.0 - nearest / own_nearest if np.isfinite(own_nearest) and own_nearest > 0 else 1.0
            )
            share = float(best[n]) / voters
            drafts.append(
                Draft(
                    "mislabel",
                    share * max(margin, 0.0),
                    row,
                    [int(r) for r in rows[row] if r >= 0],
                    [int(labels[row]), int(likely[n])],
                    suggested=int(likely[n]),
                    details={
                        "vote_share": share,
                        "nearest_distance": nearest,
                        "own_identity_distance": own_nearest,
                    },
                )
            )
    return sorted(drafts, key=lambda d: (-d.score, d.key))


# ------------------------------------------------------------------------------------- loose
def loose_identities(
    data: GalleryVectors,
    identities: Identities,
    excluded: NDArray[np.int64],
    ratio: float = LOOSE_RATIO,
) -> tuple[list[Draft], float]:
    """Identities whose items are spread wider than ``ratio`` × the gallery's median spread.

    Spread: the root mean squared distance of an identity's items to their mean (n − 1 in the
    denominator, so small identities are not favoured). Items already reported elsewhere
    (``excluded``: copies filed under another identity, likely mislabels) are left out, so one
    stray photo does not make its identity loose too. Returns the drafts and the median spread.
    """
    if not len(data.labels):
        return [], float("nan")
    weight = np.ones(len(data.labels))
    weight[excluded] = 0.0
    sizes = np.bincount(data.labels, weight, len(identities.sizes))
    sums = np.zeros((len(sizes), data.vectors.shape[1]))
    for column in range(data.vectors.shape[1]):  # one pass per dimension: no N×d float64 copy
        sums[:, column] = np.bincount(data.labels, weight * data.vectors[:, column], len(sizes))
    centres = sums / np.maximum(sizes, 1)[:, None]
    squared = ((data.vectors - centres[data.labels]) ** 2).sum(axis=1) * weight
    spread = np.sqrt(np.bincount(data.labels, squared, len(sizes)) / np.maximum(sizes - 1, 1))
    eligible = sizes >= LOOSE_MIN_ITEMS
    if not eligible.any():
        return [], float("nan")
    typical = float(np.median(spread[eligible]))
    drafts = []
    for label in np.flatnonzero(eligible & (spread >= ratio * typical)):
        members = identities.rows(int(label))
        members = members[weight[members] > 0]
        to_centre = np.linalg.norm(data.vectors[members] - centres[label], axis=1)
        key = int(members[np.argmin(to_centre)])
        drafts.append(
            Draft(
                "loose",
                float(spread[label] / typical),
                key,
                [int(r) for r in members if r != key],
                [int(label)],
                details={"spread": float(spread[label]), "typical_spread": typical},
            )
        )
    return sorted(drafts, key=lambda d: (-d.score, d.key)), typical
