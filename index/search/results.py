"""Search results: the nearest gallery items of a query and the identities they rank."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Item:
    """One gallery entry."""

    id: int
    path: str
    identity: str
    sha256: str


@dataclass(frozen=True)
class Match:
    """A gallery item near the query, at L2 ``distance`` (not squared)."""

    id: int
    identity: str
    path: str
    distance: float


@dataclass(frozen=True)
class IdentityMatch:
    """An identity, ranked by its closest item to the query."""

    identity: str
    distance: float
    id: int
    path: str


@dataclass
class QueryResult:
    """Per query: the k nearest items, and the identities ranked by their nearest item.

    ``unknown`` is True when the gallery has a threshold and even the nearest identity lies
    beyond it: the query is probably nobody in the gallery (the neighbours are still listed).
    """

    matches: list[Match] = field(default_factory=list)
    identities: list[IdentityMatch] = field(default_factory=list)
    threshold: float | None = None
    unknown: bool = False

    @classmethod
    def ranked(cls, neighbours: list[Match], k: int, threshold: float | None) -> QueryResult:
        """A query's result from its nearest items (closest first): identities by closest item."""
        ranked: dict[str, IdentityMatch] = {}
        for match in neighbours:
            if match.identity not in ranked:
                ranked[match.identity] = IdentityMatch(
                    match.identity, match.distance, match.id, match.path
                )
        identities = list(ranked.values())[:k]
        unknown = threshold is not None and (not identities or identities[0].distance > threshold)
        return cls(neighbours[:k], identities, threshold, unknown)

    @property
    def answer(self) -> str | None:
        """The identity this query is, or None when it is unknown (or the gallery is empty)."""
        return None if self.unknown or not self.identities else self.identities[0].identity

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "answer": self.answer,
            "unknown": self.unknown,
            "threshold": self.threshold,
            "matches": [asdict(m) for m in self.matches],
            "identities": [asdict(i) for i in self.identities],
        }
