"""Running the app with uvicorn: in the foreground (`siamese serve`) or on a background thread (tests, load test)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

#: Seconds an idle keep-alive connection stays open; uploads must arrive within uvicorn's limits.
KEEP_ALIVE_S = 5
#: Concurrent connections at most; more are refused with 503 rather than queued without bound.
MAX_CONNECTIONS = 256


def _config(app: FastAPI, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_keep_alive=KEEP_ALIVE_S,
        limit_concurrency=MAX_CONNECTIONS,
        timeout_graceful_shutdown=10,
        server_header=False,
    )


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve until interrupted (Ctrl-C drains open requests, then stops the batcher and closes the gallery)."""
    uvicorn.Server(_config(app, host, port, log_level)).run()


@contextmanager
def background_server(
    app: FastAPI, host: str = "127.0.0.1", log_level: str = "warning"
) -> Iterator[str]:
    """Serve ``app`` on a free port of ``host`` from a thread; yield its base URL, stop it on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(_config(app, host, port, log_level))
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
