"""HTTP errors: every failure answers with the right 4xx/5xx status and a JSON body.

The body is ``{"error": {"code", "message"}}``.

Product errors (siamese.core.errors) are mapped by type, decode errors by their ``kind``, FastAPI's
validation and routing errors are rewrapped, and anything unexpected is a logged 500 that
reveals nothing — never the answer to a user's bad file (the API tests assert that).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from siamese.core.errors import (
    GalleryLockedError,
    ImageDecodeError,
    ModelMismatchError,
    SiameseError,
)

log = logging.getLogger("siamese.service")

#: Decode problems by kind: (status, code).
_DECODE_STATUS = {
    "too_large": (413, "image_too_large"),
    "unsupported": (415, "unsupported_image"),
    "empty": (400, "empty_file"),
    "missing": (400, "missing_file"),
    "corrupt": (400, "corrupt_image"),
}
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    503: "unavailable",
}


class ApiError(Exception):
    """An error the service answers on purpose, with its status, a stable code and a message."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of every error response."""
    return {"error": {"code": code, "message": message, **extra}}


def from_product_error(exc: SiameseError) -> ApiError:
    """Map a product error onto an HTTP status: the user's bad input is 4xx, a busy gallery 409."""
    if isinstance(exc, ImageDecodeError):
        status, code = _DECODE_STATUS.get(exc.kind, (400, "bad_image"))
        return ApiError(status, code, str(exc))
    if isinstance(exc, GalleryLockedError):
        return ApiError(409, "gallery_locked", str(exc))
    if isinstance(exc, ModelMismatchError):
        return ApiError(409, "model_mismatch", str(exc))
    return ApiError(
        400, "bad_request", str(exc)
    )  # other data and gallery errors: the request cannot be done as asked


def _respond(error: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(error.code, error.message), status_code=error.status, headers=error.headers
    )


def install_error_handlers(app: FastAPI) -> None:
    """Make every error answer the same JSON shape."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return _respond(exc)

    @app.exception_handler(SiameseError)
    async def _product(_: Request, exc: SiameseError) -> JSONResponse:
        return _respond(from_product_error(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors()
        ]
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return JSONResponse(
            error_body(
                "invalid_request", "; ".join(problems) or "invalid request", details=details
            ),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body("internal", "internal error; see the server log"), status_code=500
        )
