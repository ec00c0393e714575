"""Connection guard for uvicorn: a request deadline, connection limits, and JSON refusals.

uvicorn reads a request for as long as the client cares to send it, and its own concurrency
limit answers plain text. So one client dribbling bytes into 256 connections took every slot of
the server. This h11 protocol (used whatever uvicorn would pick) adds three guards the operator
sets with ``siamese serve``:

- **body timeout**: a request must arrive in full (head and body) within ``body_timeout_s`` of
  its first byte (or of the connection opening, or of the previous answer); a slower one is
  answered 408 and the connection closed. The clock stops once the body is in, so a query that
  takes long to answer is not affected (``--timeout`` bounds that). An idle connection that
  never sent a byte is closed without an answer.
- **per-client limit**: at most ``max_client_connections`` open connections per client address
  (0: no limit); the next one is answered 429.
- **total limit**: at most ``max_connections`` open connections; the next one is answered 503.

Every refusal is the service's JSON error shape with ``Connection: close``. A refused connection
is closed gently: the answer is written, the server stops writing, reads and discards what the
client still sends for up to ``linger_s`` seconds, then closes, so the client reads the answer
instead of a reset.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from siamese.core.errors import ConfigError
from siamese.service.errors import error_body

#: h11 states of the client once its request is fully received (or the connection is over).
_REQUEST_IN = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR, h11.SWITCHED_PROTOCOL)
#: h11 states of the server once the application has started (or finished) its answer.
_ANSWERING = (h11.SEND_BODY, h11.DONE, h11.MUST_CLOSE, h11.CLOSED)


@dataclass(frozen=True)
class ConnectionLimits:
    """How many connections the server keeps and how long a request may take to arrive.

    Attributes:
        max_connections: open connections at most (503 beyond).
        max_client_connections: open connections per client address at most (429 beyond; 0: none).
        body_timeout_s: seconds a request may take to arrive in full (408 beyond).
        linger_s: seconds a refused connection is drained before it is closed.
    """

    max_connections: int = 256
    max_client_connections: int = 64
    body_timeout_s: float = 60.0
    linger_s: float = 2.0

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ConfigError(f"max connections must be at least 1, got {self.max_connections}")
        if self.max_client_connections < 0:
            raise ConfigError(
                f"max connections per client must be 0 (no limit) or more, "
                f"got {self.max_client_connections}"
            )
        if not self.body_timeout_s > 0:
            raise ConfigError(f"body timeout must be positive, got {self.body_timeout_s}")
        if not self.linger_s >= 0:
            raise ConfigError(f"linger time must be 0 or more, got {self.linger_s}")


def json_refusal(
    status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()
) -> bytes:
    """A complete HTTP/1.1 answer with the service's JSON error body, closing the connection."""
    body = json.dumps(error_body(code, message)).encode()
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Tally:
    """Open, accepted connections of one server: in total and per client address."""

    def __init__(self) -> None:
        self.total = 0
        self.per_client: Counter[str] = Counter()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request deadline and per-client and total limits.

    ``limits`` and ``tally`` belong to one server: :func:`guarded_protocol` makes the subclass
    that holds them.
    """

    limits: ClassVar[ConnectionLimits]
    tally: ClassVar[_Tally]
    #: Told of each refusal (status, code): the service's metrics count them.
    on_refusal: ClassVar[Callable[[int, str], None] | None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._counted: str | None = None
        self._refused = False

    # ------------------------------------------------------------ connection lifecycle
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        client = self.client[0] if self.client else "local"
        if self.tally.total >= self.limits.max_connections:
            self._refuse(
                503,
                "too_many_connections",
                f"the server has {self.limits.max_connections} connections open, its limit; "
                "try again shortly",
            )
            return
        if self.limits.max_client_connections and (
            self.tally.per_client[client] >= self.limits.max_client_connections
        ):
            self._refuse(
                429,
                "too_many_client_connections",
                f"{client} has {self.limits.max_client_connections} connections open, the limit "
                "per client; reuse or close them",
            )
            return
        self.tally.total += 1
        self.tally.per_client[client] += 1
        self._counted = client
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._counted is not None:
            self.tally.total -= 1
            self.tally.per_client[self._counted] -= 1
            if self.tally.per_client[self._counted] <= 0:
                del self.tally.per_client[self._counted]
            self._counted = None
        self._disarm()
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # draining a refused connection: its bytes are discarded
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def send_400_response(self, msg: str) -> None:
        """A request h11 cannot parse (bad request line, header too large): JSON 400, close."""
        self._refuse(400, "bad_request", f"{msg.rstrip('.')}: not a valid HTTP/1.1 request")

    def shutdown(self) -> None:
        if self._refused:
            self.transport.close()
            return
        super().shutdown()

    # ------------------------------------------------------------------ the deadline
    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.limits.body_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _follow(self) -> None:
        """Run the clock while a request is arriving; stop it once the request is in."""
        if self._refused or self.transport.is_closing() or self.conn.their_state in _REQUEST_IN:
            self._disarm()
        else:
            self._arm()

    def _expired(self) -> None:
        self._deadline = None
        if self._refused or self.transport.is_closing():
            return
        if self.conn.their_state in _REQUEST_IN:
            return
        if self.conn.our_state in _ANSWERING:  # answered early (413, 401): just stop
            self._close_gently()
            return
        partial = self.conn.their_state is h11.SEND_BODY or bool(self.conn.trailing_data[0])
        if not partial:  # an idle connection that never started a request
            self.transport.close()
            return
        self._refuse(
            408,
            "request_timeout",
            f"the request did not arrive in full within {self.limits.body_timeout_s:g} s "
            "(the server's body timeout); send it faster or in smaller parts",
        )

    # ------------------------------------------------------------------- refusing
    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer ``status`` with the JSON error body, abandon the request, close gently."""
        self.logger.warning("refused %s: %s", self.client, message)
        if self.on_refusal is not None:
            self.on_refusal(status, code)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the application hears http.disconnect, sends nowhere
            cycle.message_event.set()
        headers = (("retry-after", "1"),) if status in (429, 503) else ()
        if not self.transport.is_closing():
            self.transport.write(json_refusal(status, code, message, headers))
        self._close_gently()

    def _close_gently(self) -> None:
        self._refused = True
        self._disarm()
        self._unset_keepalive_if_required()
        if self.transport.is_closing():
            return
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.flow.resume_reading()
        self._linger = self.loop.call_later(self.limits.linger_s, self.transport.close)


def guarded_protocol(
    limits: ConnectionLimits,
    on_refusal: Callable[[int, str], None] | None = None,
    open_connections: Callable[[Callable[[], int]], None] | None = None,
) -> type[GuardedH11Protocol]:
    """An h11 protocol class for ``uvicorn.Config(http=...)`` enforcing one server's ``limits``.

    ``on_refusal`` hears each refusal (status, code); ``open_connections`` is handed a function
    that counts the open connections (the service's metrics read both).
    """
    tally = _Tally()
    if open_connections is not None:
        open_connections(lambda: tally.total)
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"limits": limits, "tally": tally, "on_refusal": staticmethod(on_refusal)},
    )
