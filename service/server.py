"""Running the app with uvicorn: in the foreground (`siamese serve`) or on a background thread.

The thread is for tests and the load test.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from siamese.service.connections import ConnectionLimits, GuardedH11Protocol, guarded_protocol

#: Seconds an idle keep-alive connection stays open.
KEEP_ALIVE_S = 5


def _protocol(app: FastAPI, limits: ConnectionLimits | None) -> type[GuardedH11Protocol]:
    """The guarded protocol with the service's limits (defaults for an app without a service).

    Refusals and open connections go to the service's metrics: they never reach the app.
    """
    state = getattr(app.state, "service", None)
    if state is None:
        return guarded_protocol(limits or ConnectionLimits())
    metrics = state.metrics
    return guarded_protocol(
        limits or state.config.connection_limits(),
        on_refusal=metrics.count_refusal,
        open_connections=metrics.open_connections.set_function,
    )


def _config(
    app: FastAPI, host: str, port: int, log_level: str, limits: ConnectionLimits | None
) -> uvicorn.Config:
    # uvicorn's own limit_concurrency answers plain text; the guarded protocol limits connections
    # (in total and per client) and request arrival time, and answers JSON.
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=_protocol(app, limits),
        timeout_keep_alive=KEEP_ALIVE_S,
        limit_concurrency=None,
        timeout_graceful_shutdown=10,
        server_header=False,
    )


def serve(
    app: FastAPI,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    limits: ConnectionLimits | None = None,
) -> None:
    """Serve until interrupted.

    Ctrl-C drains open requests, then stops the batcher and closes the gallery.
    """
    uvicorn.Server(_config(app, host, port, log_level, limits)).run()


@contextmanager
def background_server(
    app: FastAPI,
    host: str = "127.0.0.1",
    log_level: str = "warning",
    limits: ConnectionLimits | None = None,
) -> Iterator[str]:
    """Serve ``app`` on a free port of ``host`` in a thread; yield its base URL, stop it on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(_config(app, host, port, log_level, limits))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="siamese-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
