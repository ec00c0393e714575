"""Service settings: one frozen dataclass; `siamese serve` generates its options from the fields."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from siamese.core.config_fields import setting
from siamese.core.errors import ConfigError, named

if TYPE_CHECKING:
    from siamese.service.connections import ConnectionLimits

#: Environment variable holding the API key when --api-key is not given.
API_KEY_ENV = "SIAMESE_API_KEY"


def _positive(text: str, field: str) -> float:
    """A positive number written on the command line; anything else is a one-line error."""
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{named(field)} takes a number, got {text!r}") from None
    if value <= 0:
        raise ConfigError(f"{named(field)} must be positive, got {text}")
    return value


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
        protect: what the key guards: "writes" (adds and removals), or "reads" too (queries,
            thumbnails, identity lists, gallery facts, metrics: all but the page shell, the API
            docs and health), for galleries that are personal data. "reads" needs a key.
        decode_threads: threads decoding uploads (default: one per core).
        refresh_s: how often to look for a generation or threshold published by another process.
        max_connections: open connections at most (503 beyond).
        max_client_connections: open connections per client address at most (429; 0: no limit).
        body_timeout_s: seconds a request may take to arrive in full (408 beyond).
        expose_paths: answer every client with the server paths of gallery files, the gallery and
            the model (otherwise only clients sending the API key see them).
    """

    #: ``siamese serve --help`` groups the options in these panels.
    PANELS: ClassVar[dict[str, tuple[str, ...]]] = {
        "Model": ("model_path", "device", "max_batch", "max_wait_ms", "decode_threads"),
        "Access": ("api_key", "protect", "expose_paths", "refresh_s"),
        "Limits": (
            "max_upload_bytes",
            "max_pixels",
            "max_files",
            "max_k",
            "timeout_s",
            "max_connections",
            "max_client_connections",
            "body_timeout_s",
        ),
    }

    gallery_dir: Path = setting(
        help="Gallery directory to search and update.", names=("--gallery", "-g")
    )
    model_path: Path | None = setting(
        None, "Model (default: the one the gallery was built with).", names=("--model", "-m")
    )
    device: Literal["auto", "cpu", "cuda", "tensorrt"] = setting("auto", "Execution provider.")
    max_batch: int = setting(
        32, "Images embedded together at most (1: one request at a time).", min=1
    )
    max_wait_ms: float = setting(
        5.0, "How long a query waits for others to share its batch.", min=0, max=1000
    )
    max_upload_bytes: int = setting(
        20 * 2**20,
        "Largest request body, in MiB (413 beyond).",
        names=("--max-upload-mb",),
        parse=lambda text: int(_positive(text, "max_upload_bytes") * 2**20),
        show=lambda value: f"{value / 2**20:g}",
    )
    max_pixels: int = setting(
        40_000_000,
        "Largest image, in megapixels (413 beyond).",
        names=("--max-megapixels",),
        parse=lambda text: int(_positive(text, "max_pixels") * 1_000_000),
        show=lambda value: f"{value / 1_000_000:g}",
    )
    max_files: int = setting(64, "Images per request at most.", min=1)
    max_k: int = setting(100, "The largest k a query may ask for.", min=1)
    timeout_s: float = setting(
        30.0, "Seconds before a query is answered 504.", names=("--timeout",), min=0.001
    )
    api_key: str | None = setting(
        None, "Key required by write endpoints (default: $SIAMESE_API_KEY; none: writes are open)."
    )
    protect: Literal["writes", "reads"] = setting(
        "writes",
        "What the API key guards: writes, or reads too (queries, thumbnails, lists, metrics; "
        "not the page shell or health).",
    )
    decode_threads: int | None = setting(
        None, "Threads decoding uploads (default: one per core).", min=1
    )
    refresh_s: float = setting(
        2.0,
        "How often to look for a generation or threshold another process published, in seconds.",
        names=("--refresh",),
        min=0.001,
    )
    max_connections: int = setting(256, "Open connections at most (503 beyond).", min=1)
    max_client_connections: int = setting(
        64,
        "Open connections per client address at most (429 beyond; 0: no limit).",
        names=("--max-per-client",),
        min=0,
    )
    body_timeout_s: float = setting(
        60.0,
        "Seconds a request may take to arrive in full (408 beyond).",
        names=("--body-timeout",),
        min=0.001,
    )
    expose_paths: bool = setting(
        False,
        "Show every client the server paths of gallery files (default: only clients with the "
        "API key).",
    )

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
        if self.protect not in ("writes", "reads"):
            raise ConfigError(f"protect must be writes or reads, got {self.protect!r}")
        if self.protect == "reads" and self.api_key is None:
            raise ConfigError(
                f"protecting reads ({named('protect')} reads) needs an API key: give one "
                f"({named('api_key')}) or set ${API_KEY_ENV}"
            )
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
