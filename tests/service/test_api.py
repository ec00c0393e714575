"""The /v1 API's happy paths.

Health, readiness, info, query, batch query, add, remove, thumbnails, docs, page.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

ImageOf = Callable[[Path, str, int], Path]


def _upload(path: Path, field: str = "file") -> dict:
    return {field: (path.name, path.read_bytes(), "application/octet-stream")}


def test_health_ready_and_info(client: TestClient) -> None:
    assert client.get("/v1/health").json() == {"status": "ok"}
    ready = client.get("/v1/ready")
    assert ready.status_code == 200 and ready.json()["count"] == 24
    info = client.get("/v1/gallery").json()
    assert info["count"] == 24 and info["index_type"] == "Flat"
    assert info["identities"] == [{"identity": f"id_00{i}", "count": 6} for i in range(4)]
    assert (
        info["batching"]["max_batch"] == 32 and "threshold" in info and info["identity_count"] == 4
    )
    few = client.get("/v1/gallery?limit=2").json()
    assert [row["identity"] for row in few["identities"]] == ["id_000", "id_001"] and few[
        "identities_truncated"
    ] is True


def test_query_finds_the_identity(
    client: TestClient, unseen_dataset: Path, image_of: ImageOf
) -> None:
    path = image_of(unseen_dataset, "id_002", 1)
    response = client.post("/v1/query?k=3", files=_upload(path))
    assert response.status_code == 200, response.text
    body = response.json()
    served = client.get("/v1/gallery").json()["generation"]
    assert body["query"] == path.name and body["gallery_generation"] == served == 1  # built once
    best = body["identities"][0]
    assert best["identity"] == "id_002" and best["distance"] < 1e-3
    assert "path" not in best and best["thumbnail"] == f"/v1/items/{best['id']}/image"
    assert len(body["identities"]) == 3 and len(body["matches"]) == 3
    thumbnail = client.get(f"/v1/items/{best['id']}/image?size=64")
    assert (
        thumbnail.status_code == 200
        and thumbnail.headers["content-type"] == "image/png"
        and thumbnail.content[:4] == b"\x89PNG"
    )


def test_batch_query(client: TestClient, unseen_dataset: Path, image_of: ImageOf) -> None:
    paths = [image_of(unseen_dataset, f"id_00{i}", 2) for i in range(4)]
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]
    body = client.post("/v1/query/batch?k=2", files=files).json()
    assert [r["identities"][0]["identity"] for r in body["results"]] == [
        "id_000",
        "id_001",
        "id_002",
        "id_003",
    ]
    assert [r["query"] for r in body["results"]] == [p.name for p in paths]


def test_add_then_query_then_remove(
    make_client: Callable[..., TestClient],
    tiny_dataset: Path,
    unseen_dataset: Path,
    service_gallery: Path,
    image_of: ImageOf,
) -> None:
    client = make_client(expose_paths=True)  # the test follows the stored files by their paths
    newcomer = [image_of(tiny_dataset, "id_005", i) for i in range(2)]
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in newcomer]
    added = client.post("/v1/items", files=files, data={"identity": "newcomer"})
    assert added.status_code == 201, added.text
    report = added.json()
    assert report["added"] == 2 and report["count"] == 26 and len(report["items"]) == 2
    for item in report["items"]:
        stored = Path(item["path"])
        assert stored.is_relative_to(service_gallery / "uploads" / "newcomer") and stored.is_file()
    found = client.post("/v1/query", files=_upload(newcomer[0])).json()
    assert (
        found["identities"][0]["identity"] == "newcomer"
        and found["gallery_generation"] == report["generation"]
    )
    info = client.get("/v1/gallery").json()
    assert {"identity": "newcomer", "count": 2} in info["identities"]

    one = client.delete(f"/v1/items/{report['items'][0]['id']}")
    assert one.status_code == 200 and one.json()["removed"] == 1 and one.json()["count"] == 25
    assert (
        one.json()["deleted_uploads"] == 1 and not Path(report["items"][0]["path"]).exists()
    )  # the picture goes too
    assert Path(report["items"][1]["path"]).is_file()
    rest = client.delete("/v1/items", params={"identity": "newcomer"})
    assert (
        rest.status_code == 200
        and rest.json()["count"] == 24
        and rest.json()["deleted_uploads"] == 1
    )
    assert not (service_gallery / "uploads" / "newcomer").exists()
    kept = client.delete(
        "/v1/items", params={"identity": "id_000"}
    )  # gallery files outside uploads/ are never deleted
    assert kept.json()["deleted_uploads"] == 0 and image_of(unseen_dataset, "id_000", 0).is_file()
    after = client.post("/v1/query", files=_upload(newcomer[0])).json()
    assert after["identities"][0]["identity"] not in ("newcomer", "id_000")


def test_docs_and_page(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {
        "/v1/query",
        "/v1/query/batch",
        "/v1/items",
        "/v1/gallery",
        "/v1/health",
        "/v1/ready",
    } <= set(schema["paths"])
    for docs in ("/docs", "/redoc"):  # scripts from the installed package, none from a CDN
        html = client.get(docs).text
        assert "/docs-assets/" in html and "https://" not in html, html
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert client.get("/favicon.ico").headers["content-type"].startswith("image/svg+xml")
    page = client.get("/")
    assert page.status_code == 200 and 'id="file-input"' in page.text
    assert client.get("/static/app.js").status_code == 200


def test_unknown_beyond_the_threshold(
    make_client, service_gallery: Path, tiny_dataset: Path, unseen_dataset: Path, image_of: ImageOf
) -> None:  # type: ignore[no-untyped-def]
    import time

    from siamese.index import Gallery

    client = make_client(refresh_s=0.05)
    stranger = image_of(tiny_dataset, "id_007", 0)  # an identity the gallery does not hold
    before = client.post("/v1/query", files=_upload(stranger)).json()
    assert before["unknown"] is False and before["threshold"] is None
    known = client.post("/v1/query", files=_upload(image_of(unseen_dataset, "id_001", 0))).json()
    threshold = (known["identities"][0]["distance"] + before["identities"][0]["distance"]) / 2
    Gallery.set_threshold(
        service_gallery, max(threshold, 1e-6)
    )  # as `siamese index threshold` would, while serving
    deadline = time.monotonic() + 10
    while client.get("/v1/gallery").json()["threshold"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    after = client.post("/v1/query", files=_upload(stranger)).json()
    assert (
        after["unknown"] is True
        and after["answer"] is None
        and after["threshold"] == max(threshold, 1e-6)
    )
    again = client.post("/v1/query", files=_upload(image_of(unseen_dataset, "id_001", 0))).json()
    assert again["unknown"] is False and again["answer"] == "id_001"


def test_not_ready_until_started(
    service_gallery: Path, unseen_dataset: Path, image_of: ImageOf
) -> None:
    from siamese.service import ServiceConfig, ServiceState, create_app

    state = ServiceState.open(ServiceConfig(gallery_dir=service_gallery, device="cpu"))
    client = TestClient(
        create_app(state)
    )  # used without `with`: the lifespan (batcher, write lock) never starts
    assert client.get("/v1/health").status_code == 200
    ready = client.get("/v1/ready")
    assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"
    query = client.post("/v1/query", files=_upload(image_of(unseen_dataset, "id_000", 0)))
    assert query.status_code == 503 and query.json()["error"]["code"] == "not_ready"
    state.live.close()
    state.decode_pool.shutdown()


def test_relative_gallery_dir(
    service_gallery: Path, tiny_dataset: Path, image_of: ImageOf, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from siamese.service import ServiceConfig, ServiceState, create_app

    monkeypatch.chdir(service_gallery.parent)
    with TestClient(
        create_app(
            ServiceState.open(
                ServiceConfig(
                    gallery_dir=Path(service_gallery.name), device="cpu", expose_paths=True
                )
            )
        )
    ) as client:
        added = client.post(
            "/v1/items",
            files=_upload(image_of(tiny_dataset, "id_001", 0), "files"),
            data={"identity": "rel"},
        ).json()
        assert [item["identity"] for item in added["items"]] == ["rel"] and Path(
            added["items"][0]["path"]
        ).is_absolute()
        assert client.delete(f"/v1/items/{added['items'][0]['id']}").json()["deleted_uploads"] == 1
