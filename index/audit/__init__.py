"""Audit a gallery: near-duplicates, likely mislabels, overlapping and loose identities.

``audit(gallery_dir)`` reads the gallery's own stored vectors and searches its own index for every
item's k nearest neighbours (batched, no all-pairs matrix; the engine and the model are not
needed), calibrates its distances from those neighbours (:mod:`.calibration`), and reports each
kind of finding (:mod:`.findings`) ranked, with item ids, paths and distances:

- ``exact_duplicate``: items with the same content hash;
- ``near_duplicate``: items nearer to each other than the duplicate distance (resized or
  re-encoded copies), grouped;
- ``mislabel``: items whose nearest neighbours mostly belong to another identity, with it;
- ``overlap``: pairs of identities whose items lie within the identity distance of each other;
- ``loose``: identities whose items are spread far wider than the gallery's typical identity.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from siamese.core.errors import GalleryError
from siamese.index.audit import findings as fd
from siamese.index.audit.calibration import (
    STRANGER_ACCEPT_RATE,
    Calibration,
    calibrate,
    neighbour_distances,
)
from siamese.index.audit.calibration import (
    duplicate_distance as calibrated_duplicates,
)
from siamese.index.audit.neighbours import GalleryVectors, nearest_neighbours, read_gallery
from siamese.index.location import is_milvus
from siamese.index.published import GalleryReader
from siamese.index.search.threshold import set_threshold

#: Neighbours searched per item.
DEFAULT_K = 10
#: Findings listed per kind (all are counted).
DEFAULT_LIMIT = 50
#: Items shown with each finding (the key item first).
DEFAULT_ITEMS = 9
KINDS = ("exact_duplicate", "near_duplicate", "mislabel", "overlap", "loose")


@dataclass(frozen=True)
class AuditItem:
    """An item of a finding, at L2 ``distance`` from the finding's key item (0 for the key)."""

    id: int
    identity: str
    path: str
    distance: float


@dataclass(frozen=True)
class Finding:
    """One problem: its kind, how sure or how strong (``score``, ranked within the kind), the
    identities involved, the items to look at (the key item first) and kind-specific figures.

    ``suggested_identity``: for a mislabel, the identity its neighbours say; for an overlap, the
    identity that the first one's items are taken for.
    """

    kind: str
    score: float
    identities: list[str]
    items: list[AuditItem]
    size: int
    suggested_identity: str | None = None
    details: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class AuditReport:
    """What an audit found in one generation of a gallery."""

    gallery: str
    generation: int
    index_type: str
    count: int
    identities: int
    k: int
    calibration: Calibration
    #: Findings per kind, best first, at most ``limit`` each.
    findings: dict[str, list[Finding]]
    #: How many of each kind were found (before the limit).
    totals: dict[str, int]
    typical_spread: float
    seconds: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; distances that are not finite (none found) become null."""
        return _finite(asdict(self))

    def summary_rows(self) -> list[tuple[str, int, str]]:
        """(kind, how many, the top finding in a few words) per kind, for a summary table."""
        rows = []
        for kind in KINDS:
            top = self.findings[kind][0] if self.findings[kind] else None
            rows.append((kind, self.totals[kind], _headline(top) if top else "-"))
        return rows


def _finite(value: Any) -> Any:
    """``value`` with every inf or nan float replaced by None: strict JSON has neither."""
    if isinstance(value, dict):
        return {key: _finite(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _headline(finding: Finding) -> str:
    names = " / ".join(finding.identities)
    if finding.kind == "mislabel":
        key = finding.items[0].id
        return f"item {key} of {finding.identities[0]} looks like {finding.suggested_identity}"
    if finding.kind == "loose":
        return f"{names}: spread {finding.score:.2f}× typical"
    if finding.kind == "overlap":
        return f"{names}: {finding.score:.0%} of items within the identity distance"
    return f"{finding.size} items of {names}"


def audit(
    gallery: str | os.PathLike[str] | GalleryReader,
    *,
    k: int = DEFAULT_K,
    duplicate_distance: float | None = None,
    identity_distance: float | None = None,
    stranger_accept_rate: float = STRANGER_ACCEPT_RATE,
    limit: int = DEFAULT_LIMIT,
    items_shown: int = DEFAULT_ITEMS,
    threads: int | None = None,
) -> AuditReport:
    """Audit a gallery folder (or an opened generation) and return what it found.

    Args:
        gallery: the gallery folder, or a :class:`GalleryReader` (left open).
        k: neighbours searched per item (more finds more, costs proportionally more).
        duplicate_distance: override the calibrated near-duplicate distance.
        identity_distance: override the distance within which items of two identities count as
            overlapping (default: the gallery's stored threshold, else the calibrated one).
        stranger_accept_rate: the rate the calibrated stranger threshold allows.
        limit: findings listed per kind (all are counted in ``totals``).
        items_shown: items listed per finding, the key item first.
        threads: FAISS threads for the searches (default: all).

    Raises:
        GalleryError: not a gallery, damaged files, or a setting out of range.
    """
    if k < 1 or limit < 0 or items_shown < 1:
        raise GalleryError(f"k and items shown must be at least 1 and limit at least 0 (k={k})")
    if is_milvus(gallery):
        raise GalleryError(
            f"{gallery}: the audit reads folder galleries (their stored vectors and index), not "
            "Milvus collections"
        )
    if isinstance(gallery, GalleryReader):
        return _audit(
            gallery,
            k,
            duplicate_distance,
            identity_distance,
            stranger_accept_rate,
            limit,
            items_shown,
            threads,
        )
    with GalleryReader.open(gallery) as opened:
        return _audit(
            opened,
            k,
            duplicate_distance,
            identity_distance,
            stranger_accept_rate,
            limit,
            items_shown,
            threads,
        )


def _audit(
    gallery: GalleryReader,
    k: int,
    given_duplicate: float | None,
    identity_distance: float | None,
    rate: float,
    limit: int,
    items_shown: int,
    threads: int | None,
) -> AuditReport:
    laps: dict[str, float] = {}
    started = time.perf_counter()
    data = read_gallery(gallery)
    laps["read"] = time.perf_counter() - started
    distances, rows = nearest_neighbours(gallery, data, k, threads=threads)
    laps["search"] = time.perf_counter() - started - laps["read"]
    same, other = neighbour_distances(data.labels, data.hashes, distances, rows)
    duplicate = calibrated_duplicates(same, given_duplicate)
    identities = fd.Identities(data.labels, len(data.names))
    exact = fd.exact_duplicates(data)
    near = fd.near_duplicates(data, distances, rows, duplicate[0])
    copied = np.union1d(fd.cross_identity_rows(exact), fd.cross_identity_rows(near))
    other[copied] = np.nan
    calibration = calibrate(
        same,
        other,
        stranger_accept_rate=rate,
        duplicate=duplicate,
        identity_distance=identity_distance,
        gallery_threshold=gallery.threshold,
    )
    overlap = fd.overlaps(
        data, identities, distances, rows, same, calibration.identity_distance, copied
    )
    partners = {(d.identities[0], d.identities[1]) for d in overlap}
    partners |= {(b, a) for a, b in partners}
    wrong = fd.mislabels(data, identities, distances, rows, same, copied, partners)
    strays = np.union1d(copied, np.asarray([d.key for d in wrong], np.int64))
    loose, typical = fd.loose_identities(data, identities, strays)
    drafts = {
        "exact_duplicate": exact,
        "near_duplicate": near,
        "mislabel": wrong,
        "overlap": overlap,
        "loose": loose,
    }
    laps["analyse"] = time.perf_counter() - started - laps["read"] - laps["search"]
    findings = {kind: _resolve(gallery, data, drafts[kind][:limit], items_shown) for kind in KINDS}
    laps["total"] = time.perf_counter() - started
    return AuditReport(
        gallery=str(gallery.gallery_dir),
        generation=gallery.generation,
        index_type=gallery.manifest.index_type,
        count=len(data),
        identities=int((identities.sizes > 0).sum()),
        k=k,
        calibration=calibration,
        findings=findings,
        totals={kind: len(drafts[kind]) for kind in KINDS},
        typical_spread=typical,
        seconds={name: round(value, 3) for name, value in laps.items()},
    )


def _resolve(
    gallery: GalleryReader, data: GalleryVectors, drafts: list[fd.Draft], shown: int
) -> list[Finding]:
    """Drafts as findings: rows become items with paths, at their distance from the key item."""
    picked: list[list[int]] = []
    for draft in drafts:
        others = np.asarray([r for r in draft.rows if r != draft.key], np.int64)
        gaps = (
            np.linalg.norm(data.vectors[others] - data.vectors[draft.key], axis=1)
            if len(others)
            else np.zeros(0)
        )
        order = np.argsort(gaps, kind="stable")
        if draft.kind == "loose" and len(order) > shown - 1:
            # the spread is the point: nearest to farthest, evenly
            order = order[np.unique(np.linspace(0, len(order) - 1, shown - 1).round().astype(int))]
        picked.append([draft.key, *others[order[: shown - 1]].tolist()])
    items = gallery.items.get([int(data.ids[r]) for rows in picked for r in rows])
    findings = []
    for draft, rows in zip(drafts, picked):
        key = data.vectors[draft.key]
        shown_items = []
        for r in rows:
            item = items.get(int(data.ids[r]))
            if item is not None:
                gap = float(np.linalg.norm(data.vectors[r] - key))
                shown_items.append(AuditItem(item.id, item.identity, item.path, gap))
        findings.append(
            Finding(
                kind=draft.kind,
                score=round(float(draft.score), 6),
                identities=[data.names[i] for i in draft.identities],
                items=shown_items,
                size=1 + len(draft.rows),
                suggested_identity=None if draft.suggested is None else data.names[draft.suggested],
                details={name: round(float(v), 6) for name, v in draft.details.items()},
            )
        )
    return findings


def calibrate_threshold(
    gallery_dir: str | os.PathLike[str],
    *,
    stranger_accept_rate: float = STRANGER_ACCEPT_RATE,
    k: int = DEFAULT_K,
) -> dict[str, Any]:
    """Store the gallery's "unknown" threshold, calibrated on its own items; return the record.

    The threshold is the audit's stranger threshold (:mod:`.calibration`): each item plays a
    stranger against the other identities, so about ``stranger_accept_rate`` of people not in the
    gallery would still be taken for someone. No labelled queries are needed (``siamese eval
    --save-threshold`` calibrates on held-out queries instead, when there are some).

    Raises:
        GalleryError: not a gallery, too few identities to calibrate on, or a writer holds it.
    """
    with GalleryReader.open(gallery_dir) as gallery:
        calibration = audit(gallery, k=k, limit=0, stranger_accept_rate=stranger_accept_rate)
    distance = calibration.calibration.stranger_threshold
    if not np.isfinite(distance) or distance <= 0:
        raise GalleryError(
            f"{gallery_dir}: cannot calibrate a threshold on its own items (it needs two "
            "identities whose items differ)"
        )
    source = (
        f"calibrated on the gallery's own items: {stranger_accept_rate:g} of them have an item "
        "of another identity nearer"
    )
    return set_threshold(gallery_dir, distance, source=source)


__all__ = [
    "DEFAULT_K",
    "KINDS",
    "AuditItem",
    "AuditReport",
    "Calibration",
    "Finding",
    "audit",
    "calibrate_threshold",
]
