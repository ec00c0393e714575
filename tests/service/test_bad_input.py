"""Bad input gets a clear 4xx with a JSON error body naming the problem — never a 500."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image


def _png(size: tuple[int, int] = (40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.radial_gradient("L").resize(size).save(buffer, format="PNG")
    return buffer.getvalue()


def _error(response, status: int, code: str | None = None) -> str:  # type: ignore[no-untyped-def]
    """Assert status and JSON error shape; return the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error["message"]


def _query(client: TestClient, name: str, data: bytes, **params: object):  # type: ignore[no-untyped-def]
    return client.post(
        "/v1/query", params=params, files={"file": (name, data, "application/octet-stream")}
    )


@pytest.mark.parametrize(
    ("name", "data", "status", "code", "says"),
    [
        ("notes.txt", b"hello, I am not an image\n" * 10, 415, "unsupported_image", "not an image"),
        ("empty.png", b"", 400, "empty_file", "empty"),
        ("truncated.png", _png()[:-60], 400, "corrupt_image", "truncated"),
        (
            "garbled.png",
            _png()[:40] + b"\x00" * 200,
            415,
            "unsupported_image",
            "not an image",
        ),  # header broken: not recognisable
    ],
)
def test_bad_files(
    client: TestClient, name: str, data: bytes, status: int, code: str, says: str
) -> None:
    message = _error(_query(client, name, data), status, code)
    assert name in message and says in message


def test_format_outside_the_allow_list(client: TestClient) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buffer, format="ICO")
    message = _error(_query(client, "icon.ico", buffer.getvalue()), 415, "unsupported_image")
    assert "ICO is not allowed" in message


def test_limits(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_upload_bytes=64 * 1024, max_pixels=1000, max_files=2, max_k=10)
    assert "limit" in _error(
        _query(client, "big.png", b"\x89PNG" + b"\x00" * 100_000), 413, "upload_too_large"
    )

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while the body streams
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'
        for _ in range(20):
            yield b"\x00" * 8192

    streamed = client.post(
        "/v1/query", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    _error(streamed, 413, "upload_too_large")
    assert "megapixels" in _error(
        _query(client, "wide.png", _png((40, 40))), 413, "image_too_large"
    )
    files = [("files", (f"{n}.png", _png((20, 20)), "image/png")) for n in range(3)]
    assert "limit is 2" in _error(
        client.post("/v1/query/batch", files=files), 413, "too_many_files"
    )
    assert "at most 10" in _error(_query(client, "ok.png", _png((20, 20)), k=11), 422)


def test_request_shape(client: TestClient) -> None:
    assert "file" in _error(client.post("/v1/query", data={"k": "3"}), 422, "invalid_request")
    _error(
        client.post("/v1/query", files={"wrong_field": ("a.png", _png(), "image/png")}),
        422,
        "invalid_request",
    )
    _error(_query(client, "a.png", _png(), k=0), 422, "invalid_request")
    _error(_query(client, "a.png", _png(), k="three"), 422, "invalid_request")
    garbled = client.post(
        "/v1/query",
        content=b"--nope\r\n\r\n",
        headers={"content-type": "multipart/form-data; boundary=other"},
    )
    assert garbled.status_code in (400, 422) and "error" in garbled.json()
    _error(client.get("/v1/nothing-here"), 404, "not_found")
    _error(client.get("/v1/items/999999/image"), 404, "item_not_found")
    _error(client.get("/v1/items/abc/image"), 422)
    _error(client.delete("/v1/items/999999"), 404, "item_not_found")
    _error(client.delete("/v1/items", params={"identity": "nobody"}), 404, "identity_not_found")
    _error(
        client.post(
            "/v1/items",
            files={"files": ("a.png", _png(), "image/png")},
            data={"identity": "../escape"},
        ),
        400,
        "bad_identity",
    )
    _error(
        client.post(
            "/v1/items",
            files={"files": ("a.txt", b"text", "text/plain")},
            data={"identity": "someone"},
        ),
        415,
        "unsupported_image",
    )


def test_api_key_guards_writes(
    make_client: Callable[..., TestClient], unseen_dataset: Path
) -> None:
    client = make_client(api_key="s3cret")
    image = next((unseen_dataset / "id_001").iterdir()).read_bytes()
    upload = {"files": ("a.png", image, "image/png")}
    _error(client.post("/v1/items", files=upload, data={"identity": "x"}), 401, "unauthorized")
    _error(
        client.post(
            "/v1/items", files=upload, data={"identity": "x"}, headers={"X-API-Key": "guess"}
        ),
        401,
        "unauthorized",
    )
    _error(
        client.delete(
            "/v1/items", params={"identity": "id_001"}, headers={"Authorization": "Bearer guess"}
        ),
        401,
    )
    _error(client.delete("/v1/items/1"), 401)
    assert (
        client.post(
            "/v1/items", files=upload, data={"identity": "x"}, headers={"X-API-Key": "s3cret"}
        ).status_code
        == 201
    )
    assert (
        client.delete(
            "/v1/items", params={"identity": "x"}, headers={"Authorization": "Bearer s3cret"}
        ).status_code
        == 200
    )
    assert _query(client, "q.png", image).status_code == 200  # reads need no key


def test_slow_query_times_out_with_504(make_client: Callable[..., TestClient]) -> None:
    import dataclasses
    import threading
    import time

    client = make_client(timeout_s=0.2)
    state = client.app.state.service  # type: ignore[attr-defined]
    embed = state.embedder.embed_batch
    abandoned_done = threading.Event()

    def slow(rows):  # type: ignore[no-untyped-def]
        time.sleep(0.6)
        try:
            return embed(rows)
        finally:
            abandoned_done.set()

    state.embedder.embed_batch = slow
    assert "longer than 0.2 s" in _error(_query(client, "slow.png", _png()), 504, "timeout")
    state.embedder.embed_batch = embed
    assert abandoned_done.wait(30)  # the abandoned batch finishes on the inference thread
    state.config = dataclasses.replace(
        state.config, timeout_s=30.0
    )  # a loaded CI machine must not turn recovery into a 504
    assert _query(client, "fast.png", _png()).status_code == 200  # the service recovers
