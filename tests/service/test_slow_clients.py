"""Slow and greedy clients against a real server on 127.0.0.1: cut off, limited, answered JSON.

A request that dribbles in is answered 408 once the body timeout passes; connections beyond the
per-client or total limit are answered 429 or 503, each with the JSON error body; and queries
keep their latency while 80 slow clients hold connections open. Every loop here is bounded in
count and time, and every socket goes to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from siamese.service import ServiceConfig, ServiceState, create_app
from siamese.service.server import background_server

_HOST = "127.0.0.1"
_PARTIAL_POST = (
    b"POST /v1/query?k=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: multipart/form-data; boundary=slowslow\r\nContent-Length: 100000\r\n\r\n"
    b'--slowslow\r\nContent-Disposition: form-data; name="file"; filename="s.png"\r\n\r\n'
)


@contextmanager
def _server(gallery: Path, **limits: object) -> Iterator[tuple[str, int]]:
    config = ServiceConfig(gallery_dir=gallery, device="cpu", **limits)  # type: ignore[arg-type]
    with background_server(create_app(ServiceState.open(config))) as url:
        yield url, int(url.rsplit(":", 1)[1])


def _connect(port: int, source: str | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5)
    if source is not None:
        sock.bind((source, 0))
    sock.connect((_HOST, port))
    return sock


def _read_answer(sock: socket.socket, within_s: float) -> tuple[int, dict, float]:
    """Read until the server closes (or ``within_s`` passes); return status, JSON body, seconds."""
    start, data = time.monotonic(), b""
    sock.settimeout(0.2)
    while time.monotonic() - start < within_s:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    elapsed = time.monotonic() - start
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), data[:200]
    assert b"content-type: application/json" in head.lower(), head
    return int(head.split()[1]), json.loads(body), elapsed


def _error_code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/json"), response.text
    error = response.json()["error"]
    assert error["message"]
    return error["code"]


def test_a_dribbled_request_is_cut_off_with_a_json_408(service_gallery: Path) -> None:
    with _server(service_gallery, body_timeout_s=1.0) as (url, port):
        body_sock, head_sock, idle_sock = _connect(port), _connect(port), _connect(port)
        body_sock.sendall(_PARTIAL_POST)
        head_sock.sendall(b"GET /v1/health HTTP/1.1\r\nHo")
        start = time.monotonic()
        for _ in range(4):  # one byte every 0.2 s: alive, but far too slow
            body_sock.sendall(b"x")
            head_sock.sendall(b"s")
            time.sleep(0.2)
        for sock, request in ((body_sock, "body"), (head_sock, "head")):
            status, body, _ = _read_answer(sock, within_s=5)
            assert status == 408, (request, body)
            assert body["error"]["code"] == "request_timeout" and "1 s" in body["error"]["message"]
        assert time.monotonic() - start < 4
        idle_sock.settimeout(5)
        assert idle_sock.recv(100) == b""  # never sent a byte: closed without an answer
        for sock in (body_sock, head_sock, idle_sock):
            sock.close()
        with httpx.Client(base_url=url, timeout=10) as client:  # the server is fine afterwards
            assert client.get("/v1/health").status_code == 200


def test_connections_beyond_the_per_client_limit_get_a_json_429(service_gallery: Path) -> None:
    with _server(service_gallery, max_client_connections=3) as (url, port), ExitStack() as stack:
        held = [stack.enter_context(_connect(port)) for _ in range(3)]
        time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=10) as client:
            refused = client.get("/v1/health")
            assert (
                refused.status_code == 429 and _error_code(refused) == "too_many_client_connections"
            )
            assert "3 connections" in refused.json()["error"]["message"]
            try:  # another address is not held back by this one's connections
                other = _connect(port, source="127.0.0.2")
            except OSError:
                other = None
            if other is not None:
                with other:
                    other.sendall(
                        b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                    )
                    other.settimeout(5)
                    assert other.recv(100).startswith(b"HTTP/1.1 200")
            held.pop().close()
            time.sleep(0.2)
            assert client.get("/v1/health").status_code == 200
            # Refused before the app saw a request, yet counted: /metrics has the guard's tally.
            scraped = client.get("/metrics").text
            assert (
                'siamese_connections_refused_total{code="too_many_client_connections",'
                'status="429"} 1.0' in scraped
            )
            (line,) = [x for x in scraped.splitlines() if x.startswith("siamese_open_connections")]
            # 2 held and this client's (and the other address's, if its close is not yet seen).
            assert 3 <= float(line.split()[1]) <= 4, line


def test_connections_beyond_the_total_limit_get_a_json_503(service_gallery: Path) -> None:
    with (
        _server(service_gallery, max_connections=4, max_client_connections=0) as (url, port),
        ExitStack() as stack,
    ):
        for _ in range(4):
            stack.enter_context(_connect(port))
        time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=10) as client:
            refused = client.get("/v1/health")
        assert refused.status_code == 503 and _error_code(refused) == "too_many_connections"
        assert refused.headers["retry-after"] == "1"


def _timed_queries(url: str, probe: bytes, count: int) -> list[float]:
    seconds = []
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(count):
            start = time.perf_counter()
            response = client.post("/v1/query?k=2", files={"file": ("p.png", probe, "image/png")})
            seconds.append(time.perf_counter() - start)
            assert response.status_code == 200, response.text
    return seconds


def test_queries_keep_their_latency_while_slow_clients_hold_connections(
    service_gallery: Path, tiny_dataset: Path, image_of: Callable[..., Path]
) -> None:
    slow_count, query_count = 80, 40
    probe = image_of(tiny_dataset, "id_000").read_bytes()
    with (
        _server(service_gallery, max_client_connections=0, body_timeout_s=30.0) as (url, port),
        ExitStack() as stack,
    ):
        _timed_queries(url, probe, 5)  # warm up
        alone = _timed_queries(url, probe, query_count)
        slow = [stack.enter_context(_connect(port)) for _ in range(slow_count)]
        for sock in slow:
            sock.sendall(_PARTIAL_POST)
        stop = threading.Event()

        def dribble() -> None:  # a byte per slow client every 0.25 s, for at most 20 s
            deadline = time.monotonic() + 20
            while not stop.is_set() and time.monotonic() < deadline:
                for sock in slow:
                    sock.sendall(b"x")
                stop.wait(0.25)

        dribbler = threading.Thread(target=dribble, daemon=True)
        dribbler.start()
        time.sleep(0.5)
        try:
            crowded = _timed_queries(url, probe, query_count)
        finally:
            stop.set()
            dribbler.join(timeout=10)
        with httpx.Client(base_url=url, timeout=10) as client:
            limits = client.get("/v1/gallery").json()["limits"]
    p50_alone, p50_crowded = statistics.median(alone) * 1000, statistics.median(crowded) * 1000
    print(
        f"\nquery p50 {p50_alone:.1f} ms alone, {p50_crowded:.1f} ms with {slow_count} slow "
        f"clients connected (p95 {sorted(crowded)[int(0.95 * query_count)] * 1000:.1f} ms)"
    )
    assert limits["body_timeout_s"] == 30.0
    assert p50_crowded < max(4 * p50_alone, p50_alone + 100), (p50_alone, p50_crowded)


@pytest.mark.parametrize(
    "bad",
    [{"max_connections": 0}, {"max_client_connections": -1}, {"body_timeout_s": 0}],
)
def test_bad_connection_limits_are_refused(service_gallery: Path, bad: dict) -> None:
    from siamese.core.errors import ConfigError

    with pytest.raises(ConfigError):
        ServiceConfig(gallery_dir=service_gallery, **bad)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((_HOST, 0))
        return sock.getsockname()[1]


def test_siamese_serve_applies_the_options(service_gallery: Path) -> None:
    """The real command line: its --body-timeout and --max-per-client reach the server."""
    import subprocess
    import sys

    port = _free_port()
    command = [
        sys.executable, "-m", "siamese.cli", "serve", "--gallery", str(service_gallery),
        "--port", str(port), "--device", "cpu", "--log-level", "warning",
        "--body-timeout", "1", "--max-per-client", "2",
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "siamese serve did not become ready"
            try:
                if httpx.get(f"http://{_HOST}:{port}/v1/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        with ExitStack() as stack:
            slow = stack.enter_context(_connect(port))
            slow.sendall(_PARTIAL_POST)
            stack.enter_context(_connect(port))
            time.sleep(0.2)
            refused = httpx.get(f"http://{_HOST}:{port}/v1/health", timeout=5)
            assert (
                refused.status_code == 429 and _error_code(refused) == "too_many_client_connections"
            )
            status, body, elapsed = _read_answer(slow, within_s=5)
            assert status == 408 and body["error"]["code"] == "request_timeout" and elapsed < 3
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        server.stderr.close()  # type: ignore[union-attr]


_MALFORMED = [
    b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v1/health?" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"garbage\r\n\r\n",
    b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX: \xff\xfe\r\n\r\n",
    b"GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"POST /v1/query HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /v1/health HTTP/1.1\r\n" + b"X-Long: " + b"y" * 70000 + b"\r\n\r\n",
    b"GET /v1/health HTTP/9.9\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),  # a TLS hello
]


def test_malformed_requests_get_json_answers(service_gallery: Path) -> None:
    statuses: list[int] = []
    with _server(service_gallery, body_timeout_s=2.0) as (url, port):
        for raw in _MALFORMED:
            with _connect(port) as sock:
                try:
                    sock.sendall(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # refused mid-send: the answer is still waiting to be read
                status, body, _ = _read_answer(sock, within_s=5)
            statuses.append(status)
            assert status < 500, (raw[:60], status, body)  # a long but valid request may pass
            assert status == 200 or (body["error"]["code"] and body["error"]["message"]), body
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/v1/health").status_code == 200
    assert statuses.count(400) >= 5, statuses
