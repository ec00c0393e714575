"""Who may do what: --protect reads, cross-site writes refused, the route classification.

HTTP checks go through the real app (TestClient, lifespan started); the cross-site rule is also
checked as a class of header combinations with Hypothesis, against a model written here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from siamese.core.errors import ConfigError
from siamese.service import ServiceConfig
from siamese.service.access import QUERY_PATHS, SAFE_METHODS, origin_matches_host
from siamese.service.metrics import flat_routes

ImageOf = Callable[..., Path]
KEY = {"X-API-Key": "sesame"}
#: TestClient's requests arrive for this Host.
HOST = "testserver"


def _image(unseen_dataset: Path, image_of: ImageOf, field: str = "file") -> dict:
    path = image_of(unseen_dataset, "id_002", 0)
    return {field: (path.name, path.read_bytes(), "image/png")}


# ------------------------------------------------------------------ --protect reads
READS = [
    ("GET", "/v1/gallery"),
    ("GET", "/v1/identities"),
    ("GET", "/v1/identities/id_001"),
    ("GET", "/v1/items/1/image"),
    ("GET", "/metrics"),
    ("POST", "/v1/query"),
    ("POST", "/v1/query/batch"),
    ("GET", "/v1/no-such-route"),  # unknown paths too: nothing says which routes exist
]
PUBLIC = ["/", "/static/app.js", "/favicon.ico", "/v1/health", "/docs", "/redoc", "/openapi.json"]


def test_protected_reads_need_the_key(
    make_client: Callable[..., TestClient], unseen_dataset: Path, image_of: ImageOf
) -> None:
    client = make_client(api_key="sesame", protect="reads")
    for method, path in READS:
        files = _image(unseen_dataset, image_of, "files" if "batch" in path else "file")
        options = {"files": files} if method == "POST" else {}
        refused = client.request(method, path, **options)
        assert refused.status_code == 401, (path, refused.text)
        assert refused.json()["error"]["code"] == "unauthorized"
        assert refused.headers["www-authenticate"] == "Bearer"
        wrong = client.request(method, path, headers={"X-API-Key": "guess"}, **options)
        assert wrong.status_code == 401 and "wrong API key" in wrong.json()["error"]["message"]
        if path != "/v1/no-such-route":
            allowed = client.request(
                method, path, headers={"Authorization": "Bearer sesame"}, **options
            )
            assert allowed.status_code == 200, (path, allowed.text)
    for path in PUBLIC:
        assert client.get(path).status_code == 200, path
    assert client.get("/v1/ready").json() == {"status": "ready"}  # no gallery facts
    assert client.get("/v1/ready", headers=KEY).json()["count"] == 24
    info = client.get("/v1/gallery", headers=KEY).json()["limits"]
    assert info["read_requires_key"] is True and info["write_requires_key"] is True


def test_reads_stay_open_by_default(
    make_client: Callable[..., TestClient], unseen_dataset: Path, image_of: ImageOf
) -> None:
    client = make_client(api_key="sesame")
    assert client.post("/v1/query", files=_image(unseen_dataset, image_of)).status_code == 200
    assert client.get("/v1/identities").status_code == 200
    assert client.get("/v1/ready").json()["count"] == 24
    assert client.get("/v1/gallery").json()["limits"]["read_requires_key"] is False


def test_protecting_reads_without_a_key_is_refused(
    service_gallery: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="needs an API key"):
        ServiceConfig(gallery_dir=service_gallery, protect="reads")
    monkeypatch.delenv("SIAMESE_API_KEY", raising=False)
    from siamese.cli import app

    result = CliRunner().invoke(
        app, ["serve", "--gallery", str(service_gallery), "--protect", "reads"]
    )
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "needs an API key" in lines[0], lines
    assert "SIAMESE_API_KEY" in lines[0] and "api" in lines[0].replace("SIAMESE_API_KEY", "")
    # A key from the environment counts: the next problem is the (missing) gallery, not the key.
    monkeypatch.setenv("SIAMESE_API_KEY", "sesame")
    result = CliRunner().invoke(app, ["serve", "--gallery", "/nonexistent/g", "--protect", "reads"])
    assert result.exit_code != 0 and "needs an API key" not in result.output
    assert "gallery folder not found" in result.output


# ------------------------------------------------------------------ cross-site writes
def test_cross_site_writes_are_refused(
    make_client: Callable[..., TestClient], unseen_dataset: Path, image_of: ImageOf
) -> None:
    client = make_client()  # no key: the cross-site check stands on its own
    add = {"files": _image(unseen_dataset, image_of, "files"), "data": {"identity": "intruder"}}
    for headers in (
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "http://evil.example"},
        {"Origin": "http://testserver:8001"},  # same host, another port: another origin
        {"Origin": "null"},  # a sandboxed frame or a file:// page
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://evil.example"},
    ):
        refused = client.post("/v1/items", headers=headers, **add)
        assert refused.status_code == 403, (headers, refused.text)
        error = refused.json()["error"]
        assert error["code"] == "cross_site_refused" and "refused" in error["message"]
    assert client.get("/v1/identities/intruder").status_code == 404  # nothing was added
    assert client.delete("/v1/items/1", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client.get("/v1/gallery").json()["count"] == 24
    # Queries are reads: a cross-site one is answered (the browser hides the answer anyway).
    cross = {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}
    query = client.post("/v1/query", files=_image(unseen_dataset, image_of), headers=cross)
    assert query.status_code == 200
    # The service's own page, a user's own action, and non-browser clients may write.
    for headers in (
        {"Sec-Fetch-Site": "same-origin", "Origin": f"http://{HOST}"},
        {"Sec-Fetch-Site": "none"},
        {"Origin": f"https://{HOST}"},  # the page as a TLS proxy serves it
        {},
    ):
        added = client.post("/v1/items", headers=headers, **add)
        assert added.status_code == 201, (headers, added.text)


def test_every_write_route_is_guarded(make_client: Callable[..., TestClient]) -> None:
    """Classification by method and path covers every route: none writes unguarded."""
    client = make_client()
    writes = [
        (method, route.path)
        for route in flat_routes(client.app.routes)
        if isinstance(route, APIRoute)
        for method in route.methods
        if method not in SAFE_METHODS and route.path not in QUERY_PATHS
    ]
    assert {("POST", "/v1/items"), ("DELETE", "/v1/items/{item_id}")} <= set(writes)
    for method, template in writes:
        path = template.replace("{item_id}", "1").replace("{identity:path}", "x")
        answer = client.request(method, path, headers={"Sec-Fetch-Site": "cross-site"})
        assert answer.status_code == 403, (method, path, answer.text)


def test_origin_matches_host() -> None:
    assert origin_matches_host("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert origin_matches_host("https://Search.Example.org", "search.example.org")
    assert origin_matches_host("https://search.example.org", "search.example.org:443")
    assert origin_matches_host("http://[::1]:8000", "[::1]:8000")
    assert not origin_matches_host("http://127.0.0.1:8001", "127.0.0.1:8000")
    assert not origin_matches_host("http://localhost:8000", "127.0.0.1:8000")
    assert not origin_matches_host("https://search.example.org", "search.example.org:8443")
    for odd in ("null", "file://", "", "http://", "chrome-extension://abc", "http://a b"):
        assert not origin_matches_host(odd, "127.0.0.1:8000"), odd
    assert not origin_matches_host("http://user@127.0.0.1:8000", "127.0.0.1:8000")


SITES = st.one_of(
    st.none(),
    st.sampled_from(["same-origin", "none", "cross-site", "same-site", "SAME-ORIGIN"]),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=12),
)
ORIGINS = st.one_of(
    st.none(),
    st.sampled_from(
        [
            f"http://{HOST}",
            f"https://{HOST}",
            f"http://{HOST}:80",
            f"http://{HOST}:8000",
            "http://evil.example",
            "null",
        ]
    ),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30),
)


def _expected_refused(site: str | None, origin: str | None) -> bool:
    """The rule, written independently: a browser's cross-site or same-site write is refused."""
    if site is not None and site.lower() not in ("same-origin", "none"):
        return True
    same = {f"http://{HOST}", f"https://{HOST}", f"http://{HOST}:80", f"https://{HOST}:443"}
    return origin is not None and origin.lower() not in same


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(site=SITES, origin=ORIGINS)
def test_cross_site_header_combinations(
    make_client: Callable[..., TestClient], site: str | None, origin: str | None
) -> None:
    # One service for every example: the fixture lives as long as the test, not one example.
    client = getattr(make_client, "shared", None) or make_client()
    make_client.shared = client  # type: ignore[attr-defined]
    headers = {
        name: value
        for name, value in (("Sec-Fetch-Site", site), ("Origin", origin))
        if value is not None
    }
    # A removal of an item that does not exist: 404 when let through, 403 when refused.
    answer = client.delete("/v1/items/999999", headers=headers)
    assert answer.status_code in (403, 404), answer.text
    assert (answer.status_code == 403) == _expected_refused(site, origin), (headers, answer.text)
    assert answer.headers["content-type"].startswith("application/json")
