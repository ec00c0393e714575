"""The gallery audit over HTTP: ``GET /v1/audit``, behind the API key whatever ``protect`` says.

Its page is ``/static/audit.html`` (a static file, like the main page's scripts, so it loads even
where reads are protected; it asks for the key and sends it with the request).

The audit (:func:`siamese.index.audit.audit`) runs on a worker thread on the leased generation;
its report is kept per generation and settings, so the page can be reloaded without searching the
whole gallery again, and a write (a new generation) makes the next request audit afresh. Items
carry thumbnail URLs; their paths only go to a client that may see paths (the key holder).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request

from siamese.core.errors import GalleryError
from siamese.index.audit import DEFAULT_K, audit
from siamese.service.access import require_key
from siamese.service.errors import ApiError
from siamese.service.state import ServiceState
from siamese.service.visibility import may_see_paths, present_item

router = APIRouter()

#: Reports kept (one per generation and settings): the latest few.
_KEPT = 4

KeyHeader = Annotated[
    str | None, Header(description="API key (required when the service has one).")
]
AuthHeader = Annotated[str | None, Header(description="Alternatively: Bearer API key.")]


class _Reports:
    """The last few audit reports by (generation, settings); one audit at a time per service."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reports: dict[tuple[Any, ...], dict[str, Any]] = {}

    def get(self, state: ServiceState, settings: dict[str, Any]) -> dict[str, Any]:
        with self.lock, state.live.read() as gallery:
            key = (gallery.generation, gallery.threshold, *sorted(settings.items()))
            if key not in self.reports:
                try:
                    report = audit(gallery, threads=1, **settings)
                except GalleryError as exc:
                    raise ApiError(422, "invalid_request", str(exc)) from None
                self.reports[key] = report.to_dict()
                while len(self.reports) > _KEPT:
                    self.reports.pop(next(iter(self.reports)))
            return self.reports[key]


def _reports(request: Request) -> _Reports:
    holder = request.app.state
    if not hasattr(holder, "audit_reports"):
        holder.audit_reports = _Reports()
    return holder.audit_reports


def _present(report: dict[str, Any], show_paths: bool) -> dict[str, Any]:
    """The report as a client may see it: thumbnails for every item, paths for the key holder."""
    findings = {
        kind: [{**f, "items": [present_item(i, show_paths) for i in f["items"]]} for f in found]
        for kind, found in report["findings"].items()
    }
    gallery = report["gallery"] if show_paths else Path(report["gallery"]).name
    return {**report, "gallery": gallery, "findings": findings}


@router.get(
    "/v1/audit",
    summary="Audit the gallery: duplicates, likely mislabels, overlapping and loose identities",
)
async def gallery_audit(
    request: Request,
    k: Annotated[int, Query(ge=1, le=100, description="Neighbours searched per item.")] = DEFAULT_K,
    limit: Annotated[int, Query(ge=0, le=1000, description="Findings listed per kind.")] = 20,
    duplicate_distance: Annotated[
        float | None, Query(gt=0, description="Override the calibrated near-duplicate distance.")
    ] = None,
    identity_distance: Annotated[
        float | None, Query(gt=0, description="Override the identity (overlap) distance.")
    ] = None,
    x_api_key: KeyHeader = None,
    authorization: AuthHeader = None,
) -> dict[str, Any]:
    state: ServiceState = request.app.state.service
    # The audit names likely mistakes and every identity's pictures: key holders only, even
    # where reads are open (the access middleware lets GETs through then).
    require_key(state.config, request.headers)
    settings = {
        "k": k,
        "limit": limit,
        "duplicate_distance": duplicate_distance,
        "identity_distance": identity_distance,
    }
    report = await asyncio.to_thread(_reports(request).get, state, settings)
    return _present(report, may_see_paths(state.config, x_api_key, authorization))
