"""The /v1 endpoints: health, readiness, gallery info, queries, adds, removals, item thumbnails."""

from __future__ import annotations

import asyncio
from io import BytesIO
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Header, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from siamese.core.errors import ImageDecodeError
from siamese.data.images import thumbnail
from siamese.index.search.filters import FilterError, Where, parse_where
from siamese.service.access import ready_detail_allowed
from siamese.service.errors import ApiError, error_body
from siamese.service.state import ServiceState
from siamese.service.uploads import read_uploads
from siamese.service.validation import ItemId, check_identity, check_identity_lookup
from siamese.service.visibility import (
    may_see_paths,
    present_failures,
    present_info,
    present_item,
    present_result,
)

router = APIRouter(prefix="/v1")

_THUMBNAIL_SIZES = (32, 512)


def _state(request: Request) -> ServiceState:
    return request.app.state.service


def _k(state: ServiceState, k: int) -> int:
    if k > state.config.max_k:
        raise ApiError(422, "invalid_request", f"k must be at most {state.config.max_k}, got {k}")
    return k


async def _timed(state: ServiceState, work: Any) -> Any:
    """Answer 504 when a query takes longer than the configured timeout (the work is abandoned)."""
    try:
        return await asyncio.wait_for(work, state.config.timeout_s)
    except asyncio.TimeoutError:
        raise ApiError(
            504,
            "timeout",
            f"the query took longer than {state.config.timeout_s:g} s; try again or send fewer "
            "images",
        ) from None


def _provenance(state: ServiceState, generation: int, *, text: bool = False) -> dict[str, Any]:
    """What produced a query answer: the model that embedded it and the generation searched.

    The same short fingerprint as /v1/gallery and /metrics' ``siamese_model_info``, so an answer
    can be traced to the model and gallery state behind it (after a model swap or a write).
    """
    return {"model": state.answer_model(text=text), "gallery_generation": generation}


KeyHeader = Annotated[
    str | None,
    Header(
        description="API key: needed for writes when the service has one, and for reads too "
        "with --protect reads; answers then also carry server paths."
    ),
]
AuthHeader = Annotated[str | None, Header(description="Alternatively: Bearer API key.")]
TopK = Annotated[int, Query(ge=1, description="Identities (and nearest items) returned per query.")]
WhereForm = Annotated[
    str | None,
    Form(
        description='Search only the items this filter selects, e.g. identity like "acme-%" '
        "and id > 100 (fields id, identity, path, sha256; Milvus's expression syntax)."
    ),
]


def _where(text: str | None) -> Where | None:
    """The parsed filter; 422 naming the position of a mistake."""
    try:
        return parse_where(text) if text is not None else None
    except FilterError as exc:
        raise ApiError(422, "invalid_filter", str(exc)) from None


@router.get("/health", summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready", summary="Readiness: model loaded, gallery open, batcher running (503 otherwise)"
)
async def ready(request: Request) -> JSONResponse:
    state = _state(request)
    if not state.is_ready():
        return JSONResponse(
            error_body("not_ready", "the service is starting or stopping"), status_code=503
        )
    if not ready_detail_allowed(state.config, request.headers):
        return JSONResponse({"status": "ready"})  # reads are protected: no gallery facts
    gallery = state.live.current
    return JSONResponse(
        {"status": "ready", "generation": gallery.generation, "count": len(gallery)}
    )


@router.get(
    "/gallery",
    summary="Gallery facts: identities with counts, model, index type, threshold, batching",
)
async def gallery_info(
    request: Request,
    limit: Annotated[
        int, Query(ge=0, le=1_000_000, description="Identities listed at most (by name).")
    ] = 1000,
    x_api_key: KeyHeader = None,
    authorization: AuthHeader = None,
) -> dict[str, Any]:
    state = _state(request)
    info = await asyncio.to_thread(state.info, limit)
    return present_info(info, may_see_paths(state.config, x_api_key, authorization))


@router.post(
    "/query", summary="Nearest identities of one uploaded image, or of a text (a text pair)"
)
async def query(
    request: Request,
    file: Annotated[UploadFile | None, File(description="The query image.")] = None,
    text: Annotated[
        str | None,
        Form(
            description="A text query instead of a file, for a gallery built with a text → "
            "image pair's gallery tower."
        ),
    ] = None,
    k: TopK = 5,
    where: WhereForm = None,
    x_api_key: KeyHeader = None,
    authorization: AuthHeader = None,
) -> dict[str, Any]:
    state = _state(request)
    if (file is None) == (text is None):
        raise ApiError(422, "invalid_request", "send one query: an image file or a text field")
    chosen = _where(where)
    if text is not None:
        generation, results = await _timed(
            state, state.query_texts([text], _k(state, k), where=chosen)
        )
        shown = present_result(
            results[0].to_dict(), may_see_paths(state.config, x_api_key, authorization)
        )
        return {"query": text, **_provenance(state, generation, text=True), **shown}
    assert file is not None
    uploads = await read_uploads([file], state.config)
    generation, results = await _timed(state, state.query(uploads, _k(state, k), where=chosen))
    shown = present_result(
        results[0].to_dict(), may_see_paths(state.config, x_api_key, authorization)
    )
    return {"query": uploads[0].name, **_provenance(state, generation), **shown}


@router.post("/query/batch", summary="Nearest identities of each of several uploaded images")
async def query_batch(
    request: Request,
    files: Annotated[list[UploadFile], File(description="The query images.")],
    k: TopK = 5,
    where: WhereForm = None,
    x_api_key: KeyHeader = None,
    authorization: AuthHeader = None,
) -> dict[str, Any]:
    state = _state(request)
    chosen = _where(where)
    uploads = await read_uploads(files, state.config)
    generation, results = await _timed(state, state.query(uploads, _k(state, k), where=chosen))
    show = may_see_paths(state.config, x_api_key, authorization)
    return {
        **_provenance(state, generation),
        "results": [
            {"query": u.name, **present_result(r.to_dict(), show)} for u, r in zip(uploads, results)
        ],
    }


@router.post(
    "/items", status_code=201, summary="Add uploaded images to the gallery under one identity"
)
async def add_items(
    request: Request,
    files: Annotated[list[UploadFile], File(description="Images to add.")],
    identity: Annotated[str, Form(description="The identity they show.")],
    x_api_key: KeyHeader = None,
    authorization: AuthHeader = None,
) -> dict[str, Any]:
    state = _state(request)
    name = check_identity(identity)
    report = await state.add(await read_uploads(files, state.config), name)
    show = may_see_paths(state.config, x_api_key, authorization)
    return {
        **report,
        "items": [present_item(item, show) for item in report["items"]],
        "failures": present_failures(report["failures"], show),
    }


@router.delete("/items", summary="Remove every item of an identity")
async def remove_identity(
    request: Request,
    identity: Annotated[str, Query(min_length=1, description="The identity to remove.")],
    x_api_key: KeyHeader = None,
    authorization: AuthHeader = None,
) -> dict[str, Any]:
    state = _state(request)
    report = await state.remove(identity=check_identity_lookup(identity))
    show = may_see_paths(state.config, x_api_key, authorization)
    return {**report, "failures": present_failures(report["failures"], show)}


@router.delete("/items/{item_id}", summary="Remove one item")
async def remove_item(
    request: Request, item_id: ItemId, x_api_key: KeyHeader = None, authorization: AuthHeader = None
) -> dict[str, Any]:
    state = _state(request)
    report = await state.remove(item_id=item_id)
    show = may_see_paths(state.config, x_api_key, authorization)
    return {**report, "failures": present_failures(report["failures"], show)}


def _thumbnail(path: str, size: int, max_pixels: int) -> bytes:
    image = thumbnail(path, size, max_pixels=max_pixels)
    buffer = BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


@router.get(
    "/items/{item_id}/image",
    summary="A PNG thumbnail of a gallery item (only files the gallery records)",
)
async def item_image(
    request: Request,
    item_id: ItemId,
    size: Annotated[int, Query(ge=_THUMBNAIL_SIZES[0], le=_THUMBNAIL_SIZES[1])] = 160,
) -> Response:
    state = _state(request)
    with state.live.read() as gallery:
        item = gallery.item(item_id)
    if item is None:
        raise ApiError(404, "item_not_found", f"no item {item_id} in the gallery")
    try:
        data = await asyncio.to_thread(_thumbnail, item.path, size, state.config.max_pixels)
    except ImageDecodeError as exc:
        raise ApiError(
            404, "image_unavailable", f"item {item_id}: its image cannot be shown ({exc.reason})"
        ) from None
    # An item id always means the same content (changed files get new ids): browsers may cache it.
    return Response(
        data,
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=3600", "ETag": f'"{item.sha256[:32]}-{size}"'},
    )
