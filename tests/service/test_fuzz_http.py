"""HTTP fuzzing of every endpoint's parameters: no input is a 500, every error is the JSON shape.

Hypothesis drives the app (TestClient, lifespan running, a private gallery) with path ids from
-2^70 to 2^70 and text, query values (k, limit, size, identity) of any integer or text, form
identities of any Unicode (and raw, invalid UTF-8 bytes), uploaded bytes and file names of any
kind, and hand-built multipart bodies. Every answer must be < 500, and every 4xx must carry
``{"error": {"code": str, "message": str}}``. The counts of inputs and 500s are printed at the
end of the module (``pytest -s``).
"""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from siamese.index.updates.uploads import upload_folder_name
from siamese.service.validation import MAX_ITEM_ID

_TALLY: Counter[str] = Counter()
_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(
        f"\nHTTP fuzz: {_TALLY['inputs']} inputs, {_TALLY['500']} HTTP 500s, "
        f"{_TALLY['4xx']} 4xx, {_TALLY['2xx']} 2xx"
    )


def _png(size: int = 40) -> bytes:
    buffer = io.BytesIO()
    Image.radial_gradient("L").resize((size, size)).save(buffer, format="PNG")
    return buffer.getvalue()


_PNG = _png()


def _check(response) -> None:  # type: ignore[no-untyped-def]
    """No 500; an error has the project's JSON shape."""
    _TALLY["inputs"] += 1
    status = response.status_code
    if status >= 500:
        _TALLY["500"] += 1
    assert status < 500, (status, response.text[:300])
    if status >= 400:
        _TALLY["4xx"] += 1
        assert response.headers["content-type"].startswith("application/json"), response.text
        error = response.json()["error"]
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["message"], str) and error["message"]
    else:
        _TALLY["2xx"] += 1


_BIG_INTS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from(
        [0, 1, -1, MAX_ITEM_ID, MAX_ITEM_ID + 1, 2**64, 2**64 + 1, -(2**63), -(2**63) - 1, 2**70]
    ),
)
#: Query and path values: integers of any size, or text (percent-encoded as a client would).
_VALUES = st.one_of(_BIG_INTS.map(str), st.text(max_size=30), st.sampled_from(["", "1e3", "0x10"]))
_TEXT = st.text(max_size=300) | st.sampled_from(["é" * 128, "é" * 129, "😀" * 128, ".", ".."])
_CLIENT_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300
) | st.sampled_from(["é" * 128, "😀" * 128, "../x", "a/b", "a\0b", " ", ".hidden", "x" * 5000])
_FILE_BYTES = st.one_of(
    st.binary(max_size=300),
    st.just(_PNG),
    st.just(_PNG[:-30]),
    st.binary(max_size=40).map(lambda tail: _PNG[:60] + tail),
)


def _q(value: str) -> str:
    return quote(value, safe="")


@_SETTINGS
@given(item_id=_VALUES, size=_VALUES)
def test_item_ids_and_sizes(client: TestClient, item_id: str, size: str) -> None:
    _check(client.get(f"/v1/items/{_q(item_id)}/image?size={_q(size)}"))
    _check(client.get(f"/v1/items/{_q(item_id)}/image"))
    _check(client.delete(f"/v1/items/{_q(item_id)}"))


@_SETTINGS
@given(limit=_VALUES, k=_VALUES, identity=_TEXT)
def test_query_parameters(client: TestClient, limit: str, k: str, identity: str) -> None:
    _check(client.get(f"/v1/gallery?limit={_q(limit)}"))
    upload = {"file": ("q.png", _PNG, "image/png")}
    _check(client.post(f"/v1/query?k={_q(k)}", files=upload))
    _check(client.post(f"/v1/query/batch?k={_q(k)}", files={"files": ("q.png", _PNG, "image/png")}))
    _check(client.delete(f"/v1/items?identity={quote(identity, safe='', errors='surrogatepass')}"))


@_SETTINGS
@given(identity=_CLIENT_TEXT, data=_FILE_BYTES, name=_CLIENT_TEXT, count=st.integers(0, 3))
def test_adds_with_any_identity_file_and_name(
    client: TestClient, identity: str, data: bytes, name: str, count: int
) -> None:
    files = [("files", (name, data, "application/octet-stream"))] * count
    _check(client.post("/v1/items", data={"identity": identity}, files=files or None))
    _check(client.post("/v1/query", files={"file": (name, data, "image/png")}))


def _multipart(parts: list[tuple[bytes, bytes | None, bytes]]) -> tuple[bytes, str]:
    """A multipart body from raw (field name, file name or None, content) triples."""
    boundary = b"fuzzboundary7MA4YWxkTrZu0gW"
    body = b""
    for field, filename, content in parts:
        disposition = b'form-data; name="' + field + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
        body += b"--" + boundary + b"\r\nContent-Disposition: " + disposition + b"\r\n\r\n"
        body += content + b"\r\n"
    body += b"--" + boundary + b"--\r\n"
    return body, f"multipart/form-data; boundary={boundary.decode()}"


_RAW_NAMES = st.binary(max_size=40) | st.sampled_from([b"files", b"file", b"identity"])


@_SETTINGS
@given(
    parts=st.lists(
        st.tuples(_RAW_NAMES, st.none() | st.binary(max_size=60), _FILE_BYTES), max_size=4
    ),
    identity=st.binary(max_size=300),
    path=st.sampled_from(["/v1/items", "/v1/query", "/v1/query/batch"]),
    garble=st.booleans(),
)
def test_raw_multipart_bodies(
    client: TestClient,
    parts: list[tuple[bytes, bytes | None, bytes]],
    identity: bytes,
    path: str,
    garble: bool,
) -> None:
    body, content_type = _multipart([(b"identity", None, identity), *parts])
    if garble:
        body = body[: len(body) // 2]
    _check(client.post(path, content=body, headers={"content-type": content_type}))


@_SETTINGS
@given(path=st.text(max_size=400), method=st.sampled_from(["GET", "POST", "DELETE", "PUT"]))
def test_any_path_and_method(client: TestClient, path: str, method: str) -> None:
    for prefix in ("/v1/", "/static/", "/"):
        _check(client.request(method, prefix + quote(path, safe="/", errors="surrogatepass")))


# -------------------------------------------------------------- the cases the probe found, pinned
@pytest.mark.parametrize("item_id", [2**63, 2**64, 2**70, -1, -(2**63) - 1])
def test_item_ids_out_of_range_are_422(client: TestClient, item_id: int) -> None:
    for response in (
        client.get(f"/v1/items/{item_id}/image"),
        client.delete(f"/v1/items/{item_id}"),
    ):
        assert response.status_code == 422, response.text
        assert "item_id" in response.json()["error"]["message"]


def test_identity_longer_than_a_file_name_is_added_losslessly(
    client: TestClient, service_gallery: Path
) -> None:
    identity = "é" * 128  # 256 bytes of UTF-8: one more than ext4 allows in a name
    added = client.post(
        "/v1/items", data={"identity": identity}, files={"files": ("a.png", _PNG, "image/png")}
    )
    assert added.status_code == 201, added.text
    (item,) = added.json()["items"]
    assert item["identity"] == identity
    assert "path" not in item  # server paths are only for clients with the key
    folder = service_gallery / "uploads" / upload_folder_name(identity)
    assert folder.is_dir() and len(folder.name.encode()) < 255
    listed = client.get("/v1/gallery").json()["identities"]
    assert {"identity": identity, "count": 1} in listed
    removed = client.delete("/v1/items", params={"identity": identity})
    assert removed.status_code == 200 and removed.json()["deleted_uploads"] == 1, removed.text
    assert not folder.exists()


def test_upload_folder_names_stay_within_the_name_limit() -> None:
    for identity in ("alice", "é" * 127, "é" * 128, "😀" * 128, "a" * 255, "a" * 256):
        name = upload_folder_name(identity, 255)
        assert name is not None and "/" not in name and len(name.encode()) <= 255
        assert (name == identity) == (len(identity.encode()) <= 255)
    assert upload_folder_name("é" * 128) != upload_folder_name("é" * 127 + "e")
    for unusable in ("", ".", "..", ".x", "a/b", "a\0b", "a\\b", "\ud800"):
        assert upload_folder_name(unusable) is None


def test_every_rule_is_on_the_real_file_system(tmp_path: Path) -> None:
    """The hashed name really can be created where the raw identity cannot."""
    identity = "é" * 128
    with pytest.raises(OSError):
        os.mkdir(tmp_path / identity)
    os.mkdir(tmp_path / upload_folder_name(identity))
