"""Who may do what: the API key for writes (and reads, with ``protect="reads"``), cross-site writes.

One ASGI middleware decides before the request body is read, by method and path:

- **public**: the page shell (``/``, its static files, the icon), the API documentation and
  ``/v1/health`` are served to everyone: they hold no gallery data. ``/v1/ready`` is public too
  (probes), but says only "ready" to clients without the key when reads are protected.
- **reads** (every other GET, and the query POSTs): open by default; with ``protect="reads"``
  they need the key. Face galleries are personal data: who is in the gallery, their pictures and
  who a picture resembles should not be open to anyone who can reach the port.
- **writes** (any other POST, PUT, PATCH or DELETE): refused when a browser sends them from a
  page of another site (``Sec-Fetch-Site`` or an ``Origin`` that is not the host the request came
  to), key or no key: a page elsewhere cannot make a visitor's browser change the gallery. They
  need the key when one is set.

Classifying by path rather than per route keeps a new route protected by default: a route added
later is a read or a write without having to remember a dependency.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from siamese.service.config import ServiceConfig
from siamese.service.errors import ApiError, error_body

#: Methods that change nothing (RFC 9110 "safe"): never subject to the cross-site check.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: POST endpoints that only read (queries): reads, not writes.
QUERY_PATHS = frozenset({"/v1/query", "/v1/query/batch"})
#: Paths served to everyone whatever ``protect`` says (exact, or a folder prefix ending in "/").
PUBLIC_PATHS = frozenset(
    {"/", "/favicon.ico", "/v1/health", "/v1/ready", "/docs", "/redoc", "/openapi.json"}
)
PUBLIC_PREFIXES = ("/static/", "/docs-assets/", "/docs/")
#: ``Sec-Fetch-Site`` values a write may carry: the service's own page, or a user's own action
#: (address bar, bookmark). "same-site" is another origin of the same site (another port or
#: subdomain), which may be someone else's application: refused like "cross-site".
ALLOWED_FETCH_SITES = frozenset({"same-origin", "none"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def offered_key(x_api_key: str | None, authorization: str | None) -> str | None:
    """The key a request offers: ``X-API-Key``, else ``Authorization: Bearer KEY``."""
    if x_api_key is not None:
        return x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def key_matches(config: ServiceConfig, x_api_key: str | None, authorization: str | None) -> bool:
    """True when the service has a key and the request offers it (compared in constant time)."""
    expected = config.api_key
    offered = offered_key(x_api_key, authorization)
    return (
        expected is not None
        and offered is not None
        and hmac.compare_digest(offered.encode(), expected.encode())
    )


def require_key(config: ServiceConfig, headers: Mapping[str, str]) -> None:
    """Raise 401 unless the request offers the service's key (a no-op without a key)."""
    if config.api_key is None:
        return
    x_api_key, authorization = headers.get("x-api-key"), headers.get("authorization")
    if key_matches(config, x_api_key, authorization):
        return
    reason = "missing" if offered_key(x_api_key, authorization) is None else "wrong"
    raise ApiError(
        401,
        "unauthorized",
        f"{reason} API key; send it as X-API-Key or Authorization: Bearer",
        headers={"WWW-Authenticate": "Bearer"},
    )


def is_public(path: str) -> bool:
    """Whether ``path`` is served to everyone (page shell, docs, health)."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def is_write(method: str, path: str) -> bool:
    """Whether a request may change the gallery: an unsafe method on anything but a query."""
    return method.upper() not in SAFE_METHODS and path not in QUERY_PATHS


def _host_port(netloc: str, default_port: int | None) -> tuple[str, int | None] | None:
    """(host, port) of ``host[:port]``, lower-cased, the default port filled in; None if odd."""
    try:
        parts = urlsplit(f"//{netloc}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or parts.username is not None or parts.path or parts.query:
        return None
    return host.lower(), port if port is not None else default_port


def origin_matches_host(origin: str, host: str) -> bool:
    """Whether an ``Origin`` names the host (and port) the request was sent to.

    The scheme is not compared: behind a reverse proxy that ends TLS the page is
    ``https://example.org`` while the request reaches the service as plain HTTP with the same
    ``Host``. A port left out means the scheme's default one on both sides.
    """
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    default = _DEFAULT_PORTS.get(parts.scheme)
    if default is None or parts.path or parts.query or parts.fragment or parts.netloc.endswith(":"):
        return False  # "null", "file://", anything that is not a web origin
    ours = _host_port(host, default)
    theirs = _host_port(parts.netloc, default)
    return ours is not None and ours == theirs


def cross_site_problem(headers: Mapping[str, str]) -> str | None:
    """Why a write with these headers comes from a page of another site, or None if it does not.

    Browsers send ``Sec-Fetch-Site`` (all current ones) and ``Origin`` (on every POST and DELETE)
    and pages cannot forge either; clients such as curl send neither, and pass.
    """
    site = headers.get("sec-fetch-site")
    if site is not None and site.strip().lower() not in ALLOWED_FETCH_SITES:
        return f"the browser says this request comes from a {site.strip()[:40]!r} page"
    origin = headers.get("origin")
    if origin is not None and not origin_matches_host(origin, headers.get("host", "")):
        return f"its Origin {origin[:80]!r} is not this service ({headers.get('host', '')[:80]!r})"
    return None


def ready_detail_allowed(config: ServiceConfig, headers: Mapping[str, str]) -> bool:
    """Whether /v1/ready may show gallery facts (count, generation) to this request."""
    return config.protect != "reads" or key_matches(
        config, headers.get("x-api-key"), headers.get("authorization")
    )


def check_access(config: ServiceConfig, method: str, path: str, headers: Mapping[str, str]) -> None:
    """Raise the ApiError (401 or 403) a request gets, or return if it may go on."""
    if is_write(method, path):
        problem = cross_site_problem(headers)
        if problem is not None:
            raise ApiError(
                403,
                "cross_site_refused",
                f"refused: {problem}; the gallery is changed only from the service's own page or "
                "by clients that are not browsers",
            )
        require_key(config, headers)
    elif config.protect == "reads" and not is_public(path):
        require_key(config, headers)


class AccessMiddleware:
    """Applies :func:`check_access` to every HTTP request before the app reads its body."""

    def __init__(self, app: ASGIApp, config: ServiceConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            check_access(self.config, scope["method"], scope["path"], Headers(scope=scope))
        except ApiError as refused:
            body = json.dumps(error_body(refused.code, refused.message)).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *((k.lower().encode(), v.encode()) for k, v in (refused.headers or {}).items()),
            ]
            await send(
                {"type": "http.response.start", "status": refused.status, "headers": headers}
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
