"""The load generator of the service suite.

N concurrent HTTP clients on 127.0.0.1, each sending M queries.

Every response is checked: status 200 and the expected identity first (queries are gallery
images, so the answer is certain whatever the tower learnt). Latency is measured per request
from send to parsed answer; throughput is requests over the round's wall time.

The clients are deliberately light (like wrk): each keeps one HTTP/1.1 keep-alive connection and
sends a multipart request prepared once per image, so on a small machine the load generator
does not take the CPU the server is being measured with. httpx is used only for control calls.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class Query:
    """One query image and the identity the service must answer first."""

    name: str
    data: bytes
    identity: str

    def request(self, host: str, port: int, boundary: str = "siamese-load-boundary") -> bytes:
        """The whole HTTP request (POST /v1/query?k=1, multipart field "file"), ready to write."""
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="{self.name}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + self.data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        head = (
            f"POST /v1/query?k=1 HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: "
            f"multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        return head + body


@dataclass
class RoundResult:
    """What one round of load measured."""

    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    wrong: int = 0
    first_errors: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.latencies_s)

    def note_error(self, message: str) -> None:
        self.errors += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(message[:300])


def _check_local(url: str) -> None:
    host = httpx.URL(url).host
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"the load test only targets this machine (127.0.0.1), not {host}")


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, Any]:
    """Send one request on a keep-alive connection; return (status, parsed JSON body)."""
    writer.write(request)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, json.loads(await reader.readexactly(length))


class _Client:
    """One connection sending queries one after another."""

    def __init__(self, host: str, port: int, requests: list[tuple[Query, bytes]]) -> None:
        self.host, self.port, self.requests = host, port, requests
        self.stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def run(self, count: int, offset: int, result: RoundResult, timeout: float = 120) -> None:
        for i in range(count):
            query, request = self.requests[(offset + i) % len(self.requests)]
            started = time.perf_counter()
            try:
                if self.stream is None:
                    self.stream = await asyncio.open_connection(self.host, self.port)
                status, body = await asyncio.wait_for(_exchange(*self.stream, request), timeout)
            except (
                OSError,
                ValueError,
                IndexError,
                asyncio.IncompleteReadError,
                asyncio.TimeoutError,
            ) as exc:
                result.latencies_s.append(time.perf_counter() - started)
                result.note_error(f"{type(exc).__name__}: {exc}")
                self.close()
                continue
            result.latencies_s.append(time.perf_counter() - started)
            if status != 200:
                result.note_error(f"{status}: {body}")
            elif not body["identities"] or body["identities"][0]["identity"] != query.identity:
                result.wrong += 1

    def close(self) -> None:
        if self.stream is not None:
            self.stream[1].close()
            self.stream = None


async def _load(
    host: str, port: int, queries: list[Query], clients: int, per_client: int, warmup: int
) -> RoundResult:
    requests = [(q, q.request(host, port)) for q in queries]
    pool = [_Client(host, port, requests) for _ in range(clients)]
    try:
        await asyncio.gather(
            *[c.run(warmup, n, RoundResult()) for n, c in enumerate(pool)]
        )  # connections open
        result = RoundResult()
        started = time.perf_counter()
        await asyncio.gather(
            *[c.run(per_client, n * per_client, result) for n, c in enumerate(pool)]
        )
        result.wall_s = time.perf_counter() - started
    finally:
        for client in pool:
            client.close()
    return result


def run_load(
    url: str, queries: list[Query], *, clients: int, per_client: int, warmup: int = 1
) -> RoundResult:
    """Run ``clients`` concurrent clients of ``per_client`` queries each against ``url``."""
    _check_local(url)
    parsed = httpx.URL(url)
    return asyncio.run(_load(parsed.host, parsed.port or 80, queries, clients, per_client, warmup))


def batching_stats(url: str) -> dict[str, Any]:
    """The server's batch counters (cumulative)."""
    _check_local(url)
    return httpx.get(f"{url}/v1/gallery", timeout=30).json()["batching"]
