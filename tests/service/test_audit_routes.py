"""GET /v1/audit: the gallery audit over HTTP, behind the API key, paths for the key holder only."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

KEY = "audit-key-123"


def test_audit_needs_the_key_when_the_service_has_one(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(api_key=KEY)
    missing = client.get("/v1/audit")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    assert client.get("/v1/audit", headers={"X-API-Key": "wrong"}).status_code == 401
    answer = client.get("/v1/audit", headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["count"] == 24 and report["identities"] == 4
    assert set(report["totals"]) == {
        "exact_duplicate",
        "near_duplicate",
        "mislabel",
        "overlap",
        "loose",
    }
    assert report["calibration"]["identity_distance"] > 0
    items = [i for found in report["findings"].values() for f in found for i in f["items"]]
    for item in items:  # the key holder sees paths, everyone thumbnails
        assert item["path"] and item["thumbnail"] == f"/v1/items/{item['id']}/image"


def test_audit_without_a_key_hides_paths_and_follows_new_generations(
    make_client: Callable[..., TestClient], image_of: Callable, unseen_dataset
) -> None:
    client = make_client()
    first = client.get("/v1/audit", params={"k": 5})
    assert first.status_code == 200, first.text
    assert "/" not in first.json()["gallery"]
    first_name, other = sorted(p.name for p in unseen_dataset.iterdir())[:2]
    copy = image_of(unseen_dataset, first_name, 0)
    with open(copy, "rb") as handle:  # the same file, added under another identity
        added = client.post(
            "/v1/items", files={"files": ("copy.png", handle)}, data={"identity": other}
        )
    assert added.status_code == 201, added.text
    second = client.get("/v1/audit", params={"k": 5}).json()
    assert second["generation"] > first.json()["generation"]
    groups = second["findings"]["exact_duplicate"]
    assert (
        len(groups) == 1 and other in groups[0]["identities"] and len(groups[0]["identities"]) == 2
    )
    assert all("path" not in item for item in groups[0]["items"])


def test_audit_refuses_bad_settings(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert client.get("/v1/audit", params={"k": 0}).status_code == 422
    assert client.get("/v1/audit", params={"duplicate_distance": -1}).status_code == 422
    page = client.get("/static/audit.html")
    assert page.status_code == 200 and "audit.js" in page.text
