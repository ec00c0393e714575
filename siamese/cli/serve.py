"""`siamese serve`: the HTTP search service and its web page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from siamese.cli.support import Device, err, friendly_errors
from siamese.service.config import DEFAULTS

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_DEVICE = Device(DEFAULTS["device"])
LogLevel = Literal["critical", "error", "warning", "info", "debug"]


@friendly_errors
def serve(
    gallery_dir: Annotated[
        Path, typer.Option("--gallery", "-g", help="Gallery directory to search and update.")
    ],
    model: Annotated[
        Path | None,
        typer.Option("--model", "-m", help="Model (default: the one the gallery was built with)."),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to bind; 127.0.0.1 unless you mean to expose it.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(
            help=(
                "Key required by write endpoints "
                "(default: $SIAMESE_API_KEY; none: writes are open)."
            )
        ),
    ] = None,
    max_batch: Annotated[
        int,
        typer.Option(min=1, help="Images embedded together at most (1: one request at a time)."),
    ] = DEFAULTS["max_batch"],
    max_wait_ms: Annotated[
        float,
        typer.Option(min=0, max=1000, help="How long a query waits for others to share its batch."),
    ] = DEFAULTS["max_wait_ms"],
    max_upload_mb: Annotated[
        float, typer.Option(min=0.01, help="Largest request body, in MiB (413 beyond).")
    ] = DEFAULTS["max_upload_bytes"] / 2**20,
    max_megapixels: Annotated[
        float, typer.Option(min=0.000001, max=64, help="Largest image, in megapixels (413 beyond).")
    ] = DEFAULTS["max_pixels"] / 1_000_000,
    max_files: Annotated[int, typer.Option(min=1, help="Images per request at most.")] = DEFAULTS[
        "max_files"
    ],
    timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds before a query is answered 504.")
    ] = DEFAULTS["timeout_s"],
    body_timeout: Annotated[
        float,
        typer.Option(min=0.001, help="Seconds a request may take to arrive in full (408 beyond)."),
    ] = DEFAULTS["body_timeout_s"],
    max_connections: Annotated[
        int, typer.Option(min=1, help="Open connections at most (503 beyond).")
    ] = DEFAULTS["max_connections"],
    max_client_connections: Annotated[
        int,
        typer.Option(
            "--max-per-client",
            min=0,
            help="Open connections per client address at most (429 beyond; 0: no limit).",
        ),
    ] = DEFAULTS["max_client_connections"],
    device: Annotated[Device, typer.Option(help="Execution provider.")] = _DEVICE,
    expose_paths: Annotated[
        bool,
        typer.Option(
            help=(
                "Show every client the server paths of gallery files "
                "(default: only clients with the API key)."
            )
        ),
    ] = DEFAULTS["expose_paths"],
    log_level: Annotated[LogLevel, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the gallery over HTTP: /v1 API, a web page at /, OpenAPI docs at /docs."""
    from siamese.service import ServiceConfig, ServiceState, create_app
    from siamese.service.server import serve as run_server

    config = ServiceConfig.with_env_key(
        gallery_dir=gallery_dir,
        model_path=model,
        device=device.value,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_upload_bytes=int(max_upload_mb * 2**20),
        max_pixels=int(max_megapixels * 1_000_000),
        max_files=max_files,
        timeout_s=timeout,
        api_key=api_key,
        body_timeout_s=body_timeout,
        max_connections=max_connections,
        max_client_connections=max_client_connections,
        expose_paths=expose_paths,
    )
    state = ServiceState.open(
        config
    )  # a wrong model or damaged gallery is refused here, as one line
    if host not in _LOOPBACK and config.api_key is None:
        err.print(
            f"[yellow]warning:[/yellow] serving on {host} with no API key: anyone who can reach it "
            "can change the gallery"
        )
    err.print(
        f"serving {gallery_dir} ({len(state.live.current)} items) on http://{host}:{port}/ — API "
        "docs at /docs",
        highlight=False,
    )
    run_server(create_app(state), host=host, port=port, log_level=log_level)
