"""The FastAPI application: /v1 API, the web page at /, OpenAPI docs at /docs, one JSON error shape.

The documentation pages (Swagger UI at /docs, ReDoc at /redoc) load their scripts from the
installed ``fastapi-offline`` package rather than a CDN, so they work on a machine without
internet, as the rest of the service does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from siamese import __version__
from siamese.service.access import AccessMiddleware
from siamese.service.audit_routes import router as audit_router
from siamese.service.errors import install_error_handlers
from siamese.service.identity_routes import router as identity_router
from siamese.service.limits import BodyLimitMiddleware
from siamese.service.metrics import CONTENT_TYPE, MetricsMiddleware
from siamese.service.routes import router
from siamese.service.state import ServiceState

STATIC_DIR = Path(__file__).parent / "static"
#: The page's icon; also the docs pages' (browsers ask for /favicon.ico whatever the page says).
FAVICON_URL = "/static/favicon.svg"
#: Where Swagger UI's and ReDoc's scripts are served from (the installed package's copies).
DOCS_ASSETS_URL = "/docs-assets"
#: ReDoc shows its maker's logo from a CDN; this policy keeps that (and anything else) from
#: leaving the machine: the docs work offline and never call out.
REDOC_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)
#: The page loads nothing from elsewhere; the query preview is a blob: URL of the chosen file.
PAGE_POLICY = "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'"


def create_app(state: ServiceState) -> FastAPI:
    """The app serving ``state``, loaded first: model and gallery errors surface before serving."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPIOffline(
        redoc_url=None,  # served below, with a content security policy
        favicon_url=FAVICON_URL,
        static_url=DOCS_ASSETS_URL,
        title="siamese search service",
        version=__version__,
        summary="Find the nearest gallery identities of an image; add and remove gallery items.",
        lifespan=lifespan,
    )
    app.state.service = state
    install_error_handlers(app)
    # Outermost last: metrics count every answer, refusals included; access refuses before the
    # body is read; the body limit guards what the routes read.
    app.add_middleware(BodyLimitMiddleware, max_bytes=state.config.max_upload_bytes)
    app.add_middleware(AccessMiddleware, config=state.config)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics, routes=app.router.routes)
    app.include_router(router)
    app.include_router(identity_router)
    app.include_router(audit_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html",
            media_type="text/html",
            headers={"Content-Security-Policy": PAGE_POLICY},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=FAVICON_URL,
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = REDOC_POLICY
        return page

    @app.get(
        "/metrics",
        summary="Prometheus metrics (text format); needs the API key with --protect reads",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {}}}},
    )
    async def metrics() -> Response:
        return Response(state.metrics.exposition(), media_type=CONTENT_TYPE)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    return app
