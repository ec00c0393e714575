"""Service settings: one frozen dataclass, filled by `siamese serve` (the only argument parser)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from siamese.core.errors import ConfigError

if TYPE_CHECKING:
    from siamese.service.connections import ConnectionLimits

#: Environment variable holding the API key when --api-key is not given.
API_KEY_ENV = "SIAMESE_API_KEY"


@dataclass(frozen=True)
class ServiceConfig:
    """How the service runs.

    Attributes:
        gallery_dir: the gallery to search and update.
        model_path: the model (None: the one the gallery records).
        device: execution provider ("auto", "cpu", "cuda", "tensorrt").
        max_batch: images embedded together at most; 1 embeds each request on its own.
        max_wait_ms: how long the first waiting image waits for others to join its batch.
        max_upload_bytes: the largest request body accepted (413 beyond).
        max_pixels: the largest image accepted, in pixels (413 beyond).
        max_files: images per request at most (batch queries and adds).
        max_k: the largest k a query may ask for.
        timeout_s: a query not answered within this many seconds gets 504.
        api_key: when set, write endpoints need it (X-API-Key or Authorization: Bearer).
        decode_threads: threads decoding uploads (default: one per core).
        refresh_s: how often to look for a generation or threshold published by another process.
        max_connections: open connections at most (503 beyond).
        max_client_connections: open connections per client address at most (429; 0: no limit).
        body_timeout_s: seconds a request may take to arrive in full (408 beyond).
        expose_paths: answer every client with the server paths of gallery files, the gallery and
            the model (otherwise only clients sending the API key see them).
    """

    gallery_dir: Path
    model_path: Path | None = None
    device: str = "auto"
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_upload_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000
    max_files: int = 64
    max_k: int = 100
    timeout_s: float = 30.0
    api_key: str | None = None
    decode_threads: int | None = None
    refresh_s: float = 2.0
    max_connections: int = 256
    max_client_connections: int = 64
    body_timeout_s: float = 60.0
    expose_paths: bool = False

    def __post_init__(self) -> None:
        from siamese.data.images import MAX_PIXELS  # here: `siamese serve --help` stays light

        checks = [
            (self.max_batch >= 1, f"max batch must be at least 1, got {self.max_batch}"),
            (0 <= self.max_wait_ms <= 1000, f"max wait must be 0–1000 ms, got {self.max_wait_ms}"),
            (
                self.max_upload_bytes >= 1024,
                f"max upload must be at least 1 KiB, got {self.max_upload_bytes} bytes",
            ),
            (
                1 <= self.max_pixels <= MAX_PIXELS,
                f"max pixels must be 1–{MAX_PIXELS}, got {self.max_pixels}",
            ),
            (self.max_files >= 1, f"max files must be at least 1, got {self.max_files}"),
            (self.max_k >= 1, f"max k must be at least 1, got {self.max_k}"),
            (self.timeout_s > 0, f"timeout must be positive, got {self.timeout_s}"),
            (self.refresh_s > 0, f"refresh interval must be positive, got {self.refresh_s}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        self.connection_limits()  # refuses bad connection limits now, not when serving starts

    def connection_limits(self) -> ConnectionLimits:
        """The server's connection guard settings (see :mod:`siamese.service.connections`)."""
        from siamese.service.connections import ConnectionLimits

        return ConnectionLimits(
            max_connections=self.max_connections,
            max_client_connections=self.max_client_connections,
            body_timeout_s=self.body_timeout_s,
        )

    @classmethod
    def with_env_key(cls, **fields: object) -> ServiceConfig:
        """A config whose API key falls back to ``$SIAMESE_API_KEY``.

        The key then need not be on the command line.
        """
        key = fields.pop("api_key", None) or os.environ.get(API_KEY_ENV) or None
        return cls(api_key=key, **fields)  # type: ignore[arg-type]


#: Every field's default: `siamese serve` shows these, so each is written once, above.
DEFAULTS: dict[str, Any] = {item.name: item.default for item in fields(ServiceConfig)}
