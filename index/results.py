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
    """Per query: the k nearest items, and the identities ranked by their nearest item."""

    matches: list[Match] = field(default_factory=list)
    identities: list[IdentityMatch] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"matches": [asdict(m) for m in self.matches], "identities": [asdict(i) for i in self.identities]}
