"""`siamese serve`: the HTTP search service and its web page."""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

import typer

from siamese.cli.fields import config_from_options, with_config_options
from siamese.cli.support import err, friendly_errors
from siamese.service.config import API_KEY_ENV, ServiceConfig

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
LogLevel = Literal["critical", "error", "warning", "info", "debug"]


@friendly_errors
@with_config_options(ServiceConfig)
def serve(
    host: Annotated[
        str, typer.Option(help="Address to bind; 127.0.0.1 unless you mean to expose it.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    log_level: Annotated[LogLevel, typer.Option(help="uvicorn log level.")] = "info",
    **fields: Any,
) -> None:
    """Serve the gallery over HTTP: /v1 API, a web page at /, OpenAPI docs at /docs."""
    from siamese.service import ServiceState, create_app
    from siamese.service.server import serve as run_server

    # The key from the environment before the config is made: --protect reads checks it has one.
    fields["api_key"] = fields.get("api_key") or os.environ.get(API_KEY_ENV) or None
    config = config_from_options(ServiceConfig, fields)
    gallery_dir = config.gallery_dir
    state = ServiceState.open(
        config
    )  # a wrong model or damaged gallery is refused here, as one line
    if host not in _LOOPBACK and config.api_key is None:
        err.print(
            f"[yellow]warning:[/yellow] serving on {host} with no API key: anyone who can reach it "
            "can search and change the gallery (set --api-key, and --protect reads for a gallery "
            "of personal data)"
        )
    guarded = {"writes": "writes need the API key", "reads": "reads and writes need the API key"}
    access = guarded[config.protect] if config.api_key is not None else "no API key"
    err.print(
        f"serving {gallery_dir} ({len(state.live.current)} items) on http://{host}:{port}/ "
        f"({access}) — API docs at /docs, metrics at /metrics",
        highlight=False,
    )
    run_server(create_app(state), host=host, port=port, log_level=log_level)
