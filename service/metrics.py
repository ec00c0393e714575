"""Prometheus metrics of one running service, served at ``/metrics`` in the text format.

Each service has its own :class:`~prometheus_client.CollectorRegistry` (never the process-wide
default one), so several apps in one process (tests, the load test) count apart and a second app
does not fail on names the first registered.

What is measured, and where:

- ``siamese_http_requests_total{method,route,status}`` and
  ``siamese_http_request_duration_seconds{route}``: every HTTP request, by route *template*
  (``/v1/items/{item_id}``, never the raw path: a client cannot grow the label set), counted by
  the outermost middleware so refusals (401, 403, 413) count too.
- ``siamese_query_stage_duration_seconds{stage}``: ``decode`` (one request's uploads, on the
  decode pool), ``embed`` and ``search`` (one micro-batch: one inference call, one FAISS call;
  text queries embed and search on their own).
- ``siamese_batch_size``: images per inference call of the micro-batcher.
- ``siamese_batch_queue_depth`` and ``siamese_decoding_requests``: requests waiting for the
  batcher, and requests whose uploads are being decoded, read at scrape time.
- ``siamese_connections_refused_total{status,code}`` and ``siamese_open_connections``: what the
  server's connection guard (:mod:`siamese.service.connections`) refused before any request
  reached the app, and the connections open (served by ``siamese serve`` only, not a TestClient).
- ``siamese_gallery_items`` and ``siamese_gallery_generation``: the generation being served.
- ``siamese_model_info{role,fingerprint,name}``: the towers serving (``image_query``,
  ``text_query``, ``gallery``), with the same short fingerprints as the answers and /v1/gallery.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Seconds: from a cached thumbnail (a millisecond) to a query near the default 30 s timeout.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
#: Images per inference call: powers of two up to past the largest useful --max-batch.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
#: The route label of a request no route matches (its raw path would be unbounded).
UNMATCHED = "unmatched"
CONTENT_TYPE = CONTENT_TYPE_LATEST
STAGES = ("decode", "embed", "search")


class ServiceMetrics:
    """The service's counters, histograms and gauges, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "siamese_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "siamese_http_request_duration_seconds",
            "Seconds from a request's arrival to the end of its answer, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.stage_seconds = Histogram(
            "siamese_query_stage_duration_seconds",
            "Seconds per query stage: decode (one request's uploads), embed and search (one "
            "micro-batch, or one text query).",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "siamese_batch_size",
            "Images per inference call of the micro-batcher.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "siamese_batch_queue_depth",
            "Query requests decoded and waiting for the micro-batcher.",
            registry=registry,
        )
        self.decoding = Gauge(
            "siamese_decoding_requests",
            "Query requests whose uploads are being decoded.",
            registry=registry,
        )
        self.gallery_items = Gauge(
            "siamese_gallery_items", "Items in the gallery generation served.", registry=registry
        )
        self.gallery_generation = Gauge(
            "siamese_gallery_generation", "The gallery generation served.", registry=registry
        )
        self.refused = Counter(
            "siamese_connections_refused",
            "Connections the server refused before the app saw a request: 408 (too slow), 429 "
            "(too many from one client), 503 (too many in all), 400 (not HTTP).",
            ["status", "code"],
            registry=registry,
        )
        self.open_connections = Gauge(
            "siamese_open_connections", "Connections open to the server.", registry=registry
        )
        self.model = Info(
            "siamese_model",
            "The model towers serving: role (image_query, text_query, gallery), short "
            "fingerprint (as in answers and /v1/gallery), file name.",
            ["role"],
            registry=registry,
        )
        for stage in STAGES:
            self.stage_seconds.labels(stage=stage)  # shown (at zero) before the first query

    def watch(
        self,
        *,
        queued: Callable[[], int],
        decoding: Callable[[], int],
        items: Callable[[], int],
        generation: Callable[[], int],
    ) -> None:
        """Read these gauges from the live service at each scrape (always current, never stale)."""
        self.queue_depth.set_function(queued)
        self.decoding.set_function(decoding)
        self.gallery_items.set_function(items)
        self.gallery_generation.set_function(generation)

    def set_model(self, role: str, fingerprint: str, name: str) -> None:
        """Name one serving tower (fingerprint already shortened as the answers show it)."""
        self.model.labels(role=role).info({"fingerprint": fingerprint, "name": name})

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time one stage of a query (recorded whether it succeeds or fails)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds.labels(stage=name).observe(time.perf_counter() - started)

    def count_refusal(self, status: int, code: str) -> None:
        """Count one connection refused by the server's connection guard."""
        self.refused.labels(status=str(status), code=code).inc()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered HTTP request."""
        self.requests.labels(method=method, route=route, status=str(status)).inc()
        self.request_seconds.labels(route=route).observe(seconds)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


def flat_routes(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route of an app, those of included routers too (FastAPI keeps them in a branch)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from flat_routes(inner.routes)
        else:
            yield route


def route_template(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """The template of the route a request went to (or would have, had it not been refused)."""
    route = scope.get("route")
    if route is None:  # refused before routing (401, 403, 413): find the route it was meant for
        for candidate in flat_routes(routes):
            match, _ = candidate.matches(scope)
            if match == Match.FULL:
                route = candidate
                break
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class MetricsMiddleware:
    """Counts and times every HTTP request; the outermost middleware, so refusals count too."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before answering

        async def watched_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            self.metrics.observe_request(
                scope["method"],
                route_template(scope, self.routes),
                status,
                time.perf_counter() - started,
            )
