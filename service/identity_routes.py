"""Browsing the gallery by identity: a filtered, paged identity list and one identity's items.

``GET /v1/gallery`` lists identities by name up to a limit; a gallery of thousands of people
needs a filter and pages, and the page's identity view needs one person's pictures. Both read
the current generation under a lease, on a worker thread (SQLite is quick, but not free).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request

from siamese.service.errors import ApiError
from siamese.service.state import ServiceState
from siamese.service.visibility import may_see_paths, present_item

router = APIRouter(prefix="/v1")

#: Largest page either listing returns.
MAX_PAGE = 1000

Offset = Annotated[int, Query(ge=0, le=10**9, description="Rows skipped (paging).")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Rows returned at most.")]
KeyHeader = Annotated[str | None, Header(description="API key: answers then carry file paths.")]
AuthHeader = Annotated[str | None, Header(description="Alternatively: Bearer API key.")]


def _state(request: Request) -> ServiceState:
    return request.app.state.service


def _identity_page(state: ServiceState, contains: str, offset: int, limit: int) -> dict[str, Any]:
    with state.live.read() as gallery:
        counts = gallery.identity_counts()  # by name
        generation = gallery.generation
    needle = contains.casefold()
    rows = [(name, n) for name, n in counts.items() if needle in name.casefold()]
    return {
        "generation": generation,
        "identity_count": len(counts),
        "total": len(rows),
        "offset": offset,
        "limit": limit,
        "contains": contains,
        "identities": [{"identity": name, "count": n} for name, n in rows[offset : offset + limit]],
    }


@router.get("/identities", summary="Identities with their image counts, filtered and paged")
async def list_identities(
    request: Request,
    contains: Annotated[
        str, Query(max_length=128, description="Only names containing this (any case).")
    ] = "",
    offset: Offset = 0,
    limit: Limit = 50,
) -> dict[str, Any]:
    return await asyncio.to_thread(_identity_page, _state(request), contains, offset, limit)


def _identity_items(
    state: ServiceState, identity: str, offset: int, limit: int, show_paths: bool
) -> dict[str, Any]:
    with state.live.read() as gallery:
        count = gallery.count(identity)
        items = gallery.items_of(identity, offset, limit) if count else []
        generation = gallery.generation
    if not count:
        raise ApiError(404, "identity_not_found", f"no identity {identity!r} in the gallery")
    return {
        "identity": identity,
        "generation": generation,
        "count": count,
        "offset": offset,
        "limit": limit,
        "items": [
            present_item(
                {"id": i.id, "identity": i.identity, "sha256": i.sha256, "path": i.path}, show_paths
            )
            for i in items
        ],
    }


@router.get("/identities/{identity:path}", summary="One identity's items (ids, thumbnails), paged")
async def identity_items(
    request: Request,
    identity: Annotated[str, Path(min_length=1, max_length=1024)],
    offset: Offset = 0,
    limit: Limit = 200,
    x_api_key: KeyHeader = None,
    authorization: AuthHeader = None,
) -> dict[str, Any]:
    state = _state(request)
    show = may_see_paths(state.config, x_api_key, authorization)
    return await asyncio.to_thread(_identity_items, state, identity, offset, limit, show)
