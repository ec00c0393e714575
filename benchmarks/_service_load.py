"""The load generator of the service suite: N concurrent HTTP clients on 127.0.0.1, each sending M queries.

Every response is checked: status 200 and the expected identity first (queries are gallery
images, so the answer is certain whatever the tower learnt). Latency is measured per request
from send to parsed answer; throughput is requests over the round's wall time.
"""

from __future__ import annotations

import asyncio
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


async def _client(client: httpx.AsyncClient, queries: list[Query], count: int, offset: int, result: RoundResult) -> None:
    for i in range(count):
        query = queries[(offset + i) % len(queries)]
        started = time.perf_counter()
        try:
            response = await client.post("/v1/query", params={"k": 1}, files={"file": (query.name, query.data, "application/octet-stream")})
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            result.latencies_s.append(time.perf_counter() - started)
            result.note_error(f"{type(exc).__name__}: {exc}")
            continue
        result.latencies_s.append(time.perf_counter() - started)
        if response.status_code != 200:
            result.note_error(f"{response.status_code}: {body}")
        elif not body["identities"] or body["identities"][0]["identity"] != query.identity:
            result.wrong += 1


async def _load(url: str, queries: list[Query], clients: int, per_client: int, warmup: int) -> RoundResult:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await asyncio.gather(*[_client(client, queries, warmup, c, RoundResult()) for c in range(clients)])  # connections open
        result = RoundResult()
        started = time.perf_counter()
        await asyncio.gather(*[_client(client, queries, per_client, c * per_client, result) for c in range(clients)])
        result.wall_s = time.perf_counter() - started
    return result


def run_load(url: str, queries: list[Query], *, clients: int, per_client: int, warmup: int = 1) -> RoundResult:
    """Run ``clients`` concurrent clients of ``per_client`` queries each against the service at ``url``."""
    _check_local(url)
    return asyncio.run(_load(url, queries, clients, per_client, warmup))


def batching_stats(url: str) -> dict[str, Any]:
    """The server's batch counters (cumulative)."""
    _check_local(url)
    return httpx.get(f"{url}/v1/gallery", timeout=30).json()["batching"]
