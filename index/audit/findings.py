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
#: Mislabels: reported from this score up (a share of 0.5-1 times the margin by which its own
#: identity lies farther): an item whose own identity is nearly as near is a hard case, not a
#: mistake (on the planted galleries of benchmarks/gallery_audit.py, 7 of the 8 flags below 0.2
#: were natural items, not planted ones).
MISLABEL_MIN_SCORE = 0.2
#: Overlaps: the share of both identities' items that have an item of the other identity within
#: the identity distance (a split identity scores near the genuine accept rate; one stray item
#: among ten scores about 0.1).
OVERLAP_SHARE = 0.3
#: ...and at least this many times the gallery's 1-NN confusion (the share of items whose nearest
#: neighbour belongs to another identity): where a weak model mixes everyone up, two identities
#: sharing some neighbours is the rule, not a finding.
OVERLAP_CONFUSION = 2.0
#: Overlaps, second way: identities whose mean vectors lie within the identity distance of each
#: other, and within this many standard errors (what two halves of one identity differ by: about 1;
#: two halves photographed apart about 1.5-2; distinct identities 2.5 and more on the datasets of
#: benchmarks/gallery_audit.py).
OVERLAP_SEPARATION = 2.5
#: ...for identities of at least this many items each (fewer give no usable standard error).
OVERLAP_MEANS_MIN_ITEMS = 4
#: Loose identities: spread beyond this many robust standard deviations of the gallery's identity
#: spreads (on a log scale: median + z × 1.4826 × MAD), and at least LOOSE_MIN_RATIO × the median.
LOOSE_Z = 2.5
LOOSE_MIN_RATIO = 1.2
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
@dataclass
class Spreads:
    """Each identity's mean vector, spread and item count (items in ``excluded`` left out)."""

    centres: NDArray[np.float64]
    spread: NDArray[np.float64]
    sizes: NDArray[np.float64]
    weight: NDArray[np.float64]


def identity_spreads(
    data: GalleryVectors, identities: Identities, excluded: NDArray[np.int64]
) -> Spreads:
    """Mean and spread per identity: the root mean squared distance of its items to their mean
    (n − 1 in the denominator, so small identities are not favoured)."""
    count = len(identities.sizes)
    weight = np.ones(len(data.labels))
    weight[excluded] = 0.0
    sizes = np.bincount(data.labels, weight, count)
    sums = np.zeros((count, data.vectors.shape[1]))
    for column in range(data.vectors.shape[1]):  # one pass per dimension: no N×d float64 copy
        sums[:, column] = np.bincount(data.labels, weight * data.vectors[:, column], count)
    centres = sums / np.maximum(sizes, 1)[:, None]
    squared = ((data.vectors - centres[data.labels]) ** 2).sum(axis=1) * weight
    spread = np.sqrt(np.bincount(data.labels, squared, count) / np.maximum(sizes - 1, 1))
    return Spreads(centres, spread, sizes, weight)


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
    """Pairs of identities closer to each other than the identity distance allows, found two ways.

    Items: an item supports the pair (its identity, B) when an item of B lies within the identity
    distance (a query like it would be taken for B), or nearer than its own identity's nearest
    item. A pair is reported when its supporters are at least ``share`` of both identities'
    items, or OVERLAP_CONFUSION × the gallery's 1-NN confusion if that is more: a split identity
    scores about one half or more, two people apart about nothing, one mislabelled item among ten
    about 0.1.

    Means: two identities of OVERLAP_MEANS_MIN_ITEMS items or more whose mean vectors lie within
    the identity distance of each other and within OVERLAP_SEPARATION standard errors (the
    difference of means over sqrt(spread_A²/n_A + spread_B²/n_B)): the same person photographed
    in two sessions and filed under two names, whose items are each nearer their own session.

    Candidate pairs are those linked by a k-NN edge. Items in cross-identity duplicate groups are
    left out (a copied file is not a second person's photo). Score: the larger of the supporters'
    share and 1 − the means' distance / the identity distance.
    """
    labels, count = data.labels, len(data.names)
    keep = np.ones(len(labels), bool)
    keep[excluded] = False
    theirs = labels[np.maximum(rows, 0)]
    linked = (rows >= 0) & (theirs != labels[:, None]) & keep[:, None] & keep[np.maximum(rows, 0)]
    if not linked.any():
        return []
    first_other = (rows[:, 0] >= 0) & (theirs[:, 0] != labels) & keep
    confusion = float(first_other.sum() / max(keep.sum(), 1))
    share = max(share, OVERLAP_CONFUSION * confusion)
    reach = np.where(np.isfinite(same), np.maximum(same, identity_distance), identity_distance)
    close = linked & (distances <= reach[:, None])
    item = np.repeat(np.arange(len(rows)), close.sum(axis=1))
    item_other = np.unique(item * count + theirs[close])  # each item once per other identity
    mine, other = labels[item_other // count], item_other % count
    supported, supporters = np.unique(
        np.minimum(mine, other) * count + np.maximum(mine, other), return_counts=True
    )
    mine = np.repeat(labels, rows.shape[1]).reshape(rows.shape)[linked]
    pairs = np.unique(np.minimum(mine, theirs[linked]) * count + np.maximum(mine, theirs[linked]))
    first, second = pairs // count, pairs % count
    shares = np.zeros(len(pairs))
    shares[np.searchsorted(pairs, supported)] = supporters
    shares /= identities.sizes[first] + identities.sizes[second]
    spreads = identity_spreads(data, identities, excluded)
    apart = np.linalg.norm(spreads.centres[first] - spreads.centres[second], axis=1)
    error = np.sqrt(
        spreads.spread[first] ** 2 / np.maximum(spreads.sizes[first], 1)
        + spreads.spread[second] ** 2 / np.maximum(spreads.sizes[second], 1)
    )
    both_many = np.minimum(spreads.sizes[first], spreads.sizes[second]) >= OVERLAP_MEANS_MIN_ITEMS
    means_close = both_many & (apart <= identity_distance)
    means_close &= apart <= OVERLAP_SEPARATION * np.maximum(error, 1e-12)
    drafts = []
    for n in np.flatnonzero((shares >= share) | means_close):
        score = max(float(shares[n]), 1.0 - float(apart[n]) / identity_distance)
        details = {
            "supporting_share": float(shares[n]),
            "means_distance": float(apart[n]),
            "separation": float(apart[n] / max(error[n], 1e-12)),
        }
        a, b = int(first[n]), int(second[n])
        drafts.append(_overlap_draft(data, identities, a, b, score, details))
    return sorted(drafts, key=lambda d: (-d.score, d.key))


def _overlap_draft(
    data: GalleryVectors,
    identities: Identities,
    first: int,
    second: int,
    score: float,
    details: dict[str, float],
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
        details={"closest_distance": float(gaps[i, j]), **details},
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
    scores 0 and one with none of its own identity nearby scores the whole share; reported from
    MISLABEL_MIN_SCORE.
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
            if share * max(margin, 0.0) < MISLABEL_MIN_SCORE:
                continue
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
    data: GalleryVectors, identities: Identities, excluded: NDArray[np.int64]
) -> tuple[list[Draft], float]:
    """Identities whose items are spread far wider than the gallery's identities usually are.

    Spread as in :func:`identity_spreads`; items already reported elsewhere (``excluded``: copies
    filed under another identity, likely mislabels) are left out, so one stray photo does not make
    its identity loose too. Loose: spread beyond the median by LOOSE_Z robust standard deviations
    on a log scale (so a gallery whose identities vary a lot in spread needs more) and by at least
    LOOSE_MIN_RATIO. Returns the drafts (score: spread / median spread) and the median spread.
    """
    if not len(data.labels):
        return [], float("nan")
    spreads = identity_spreads(data, identities, excluded)
    eligible = spreads.sizes >= LOOSE_MIN_ITEMS
    if not eligible.any():
        return [], float("nan")
    logs = np.log(np.maximum(spreads.spread[eligible], 1e-12))
    middle = float(np.median(logs))
    deviation = 1.4826 * float(np.median(np.abs(logs - middle)))
    typical = float(np.exp(middle))
    cut = typical * max(LOOSE_MIN_RATIO, float(np.exp(LOOSE_Z * deviation)))
    drafts = []
    for label in np.flatnonzero(eligible & (spreads.spread >= cut)):
        members = identities.rows(int(label))
        members = members[spreads.weight[members] > 0]
        to_centre = np.linalg.norm(data.vectors[members] - spreads.centres[label], axis=1)
        key = int(members[np.argmin(to_centre)])
        drafts.append(
            Draft(
                "loose",
                float(spreads.spread[label] / typical),
                key,
                [int(r) for r in members if r != key],
                [int(label)],
                details={
                    "spread": float(spreads.spread[label]),
                    "typical_spread": typical,
                    "loose_from": cut,
                },
            )
        )
    return sorted(drafts, key=lambda d: (-d.score, d.key)), typical
