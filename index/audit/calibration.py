"""Distances an audit compares against, calibrated from the gallery's own neighbours.

Two leave-one-out distributions come out of the k-NN lists, one value per item:

- ``same``: the distance to the nearest other item of its own identity (exact copies, items with
  the same content hash, left out): how far a genuine photo of someone lies from their nearest
  enrolled photo.
- ``other``: the distance to the nearest item of any other identity: how far the gallery's
  nearest wrong answer lies, which is what a stranger (someone not enrolled) meets. Where all k
  neighbours share the item's identity, the k-th distance stands in (a lower bound): the
  calibrated threshold then errs towards answering "unknown".

From them: the stranger threshold (the ``stranger_accept_rate`` quantile of ``other``: beyond it a
query answers "unknown", and about that fraction of strangers would still be taken for someone;
the demo stores it as the gallery's threshold), and the duplicate distance (a fixed fraction of
the median ``same``: an item nearer than that to another is the same picture, resized or
re-encoded, not another photo). Both are scale-free: they follow the model's distances.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from siamese.core.errors import GalleryError

#: A stranger is taken for someone at this rate at the calibrated threshold (1 in 100).
STRANGER_ACCEPT_RATE = 0.01
#: Near-duplicates lie closer than this fraction of the median nearest same-identity distance.
#: Resized or re-encoded copies of a photo land at 1-10% of it with the towers measured
#: (benchmarks/gallery_audit.py); another photo of the same person rarely below 30%.
DUPLICATE_FRACTION = 0.2


@dataclass(frozen=True)
class Calibration:
    """The distances an audit used, where each came from, and the distributions behind them."""

    duplicate_distance: float
    duplicate_source: str
    identity_distance: float
    identity_source: str
    stranger_threshold: float
    stranger_accept_rate: float
    #: Items whose nearest own-identity item lies within the stranger threshold.
    genuine_accept_rate: float
    same_identity_median: float
    other_identity_median: float
    #: Items with another item of their identity among their neighbours.
    samples: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def neighbour_distances(
    labels: NDArray[np.int64],
    hashes: list[str],
    distances: NDArray[np.float32],
    rows: NDArray[np.int64],
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Per item: the distance to its nearest same-identity item and to its nearest other one.

    ``same`` is inf where no item of its identity is among the neighbours; ``other`` is the
    farthest neighbour's distance where every neighbour shares its identity.
    """
    valid = rows >= 0
    theirs = np.where(valid, labels[np.maximum(rows, 0)], -1)
    own = labels[:, None]
    hash_array = np.asarray(hashes, dtype=object)
    copy = (
        valid
        & (hash_array[np.maximum(rows, 0)] == hash_array[:, None])
        & (hash_array != "")[:, None]
    )
    same_mask = valid & (theirs == own) & ~copy
    other_mask = valid & (theirs != own) & ~copy
    same = _first(distances, same_mask)
    other = _first(distances, other_mask)
    censored = ~other_mask.any(axis=1)
    if censored.any():
        finite = np.where(valid, distances, -np.inf).max(axis=1)
        other[censored] = finite[censored]
    return same, other


def _first(distances: NDArray[np.float32], mask: NDArray[np.bool_]) -> NDArray[np.float32]:
    """Distance of the first (nearest) neighbour where ``mask`` holds; inf where it never does."""
    column = np.argmax(mask, axis=1)
    first = distances[np.arange(len(distances)), column].astype(np.float32)
    return np.where(mask.any(axis=1), first, np.inf).astype(np.float32)


def _check_distance(name: str, value: float | None) -> None:
    if value is not None and not (np.isfinite(value) and value > 0):
        raise GalleryError(f"the {name} must be a positive finite L2 distance, got {value}")


def duplicate_distance(same: NDArray[np.float32], given: float | None = None) -> tuple[float, str]:
    """The near-duplicate distance and where it came from: ``given``, else calibrated on ``same``.

    Raises:
        GalleryError: ``given`` is not a positive finite distance.
    """
    _check_distance("duplicate distance", given)
    if given is not None:
        return float(given), "given"
    finite = same[np.isfinite(same)]
    if not len(finite):
        return 0.0, "no identity has two items: near-duplicates not sought"
    source = f"{DUPLICATE_FRACTION:g} × median nearest same-identity distance"
    return DUPLICATE_FRACTION * float(np.median(finite)), source


def calibrate(
    same: NDArray[np.float32],
    other: NDArray[np.float32],
    *,
    stranger_accept_rate: float = STRANGER_ACCEPT_RATE,
    duplicate: tuple[float, str] | None = None,
    identity_distance: float | None = None,
    gallery_threshold: float | None = None,
) -> Calibration:
    """The audit's distances: given ones win, then the gallery's stored threshold, then calibrated.

    ``other`` should be nan for items whose nearest other identity is a copy of themselves (found
    by the duplicate search): a file filed twice says nothing about strangers.

    Raises:
        GalleryError: a given distance or rate that cannot be one.
    """
    _check_distance("identity distance", identity_distance)
    if not 0 < stranger_accept_rate < 1:
        raise GalleryError(
            f"the stranger accept rate must lie between 0 and 1, got {stranger_accept_rate}"
        )
    same_finite = same[np.isfinite(same)]
    other_finite = other[np.isfinite(other)]
    same_median = float(np.median(same_finite)) if len(same_finite) else float("nan")
    stranger = (
        float(np.quantile(other_finite, stranger_accept_rate))
        if len(other_finite)
        else float("nan")
    )
    duplicate, duplicate_source = duplicate or duplicate_distance(same)
    if identity_distance is not None:
        identity, identity_source = float(identity_distance), "given"
    elif gallery_threshold is not None:
        identity, identity_source = float(gallery_threshold), "the gallery's stored threshold"
    else:
        identity = stranger
        identity_source = f"calibrated: stranger accept rate {stranger_accept_rate:g}"
    return Calibration(
        duplicate_distance=duplicate,
        duplicate_source=duplicate_source,
        identity_distance=identity,
        identity_source=identity_source,
        stranger_threshold=stranger,
        stranger_accept_rate=stranger_accept_rate,
        genuine_accept_rate=float(np.mean(same_finite <= stranger)) if len(same_finite) else 0.0,
        same_identity_median=same_median,
        other_identity_median=float(np.median(other_finite)) if len(other_finite) else float("nan"),
        samples=len(same_finite),
    )
