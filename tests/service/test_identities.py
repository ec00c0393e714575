"""Browsing by identity, duplicate warnings, and who sees paths.

Browsing: a filtered, paged list; one identity's items.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ImageOf = Callable[[Path, str, int], Path]
NAMES = [f"id_00{i}" for i in range(4)]  # the test gallery: 4 identities × 6 images


def _upload(path: Path, field: str = "file") -> dict:
    return {field: (path.name, path.read_bytes(), "application/octet-stream")}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    contains=st.sampled_from(["", "id", "ID_00", "1", "3", "x", "_0", "%", " "]),
    offset=st.integers(0, 6),
    limit=st.integers(1, 5),
)
def test_identity_list_filters_and_pages(
    client: TestClient, contains: str, offset: int, limit: int
) -> None:
    body = client.get(
        "/v1/identities", params={"contains": contains, "offset": offset, "limit": limit}
    ).json()
    expected = [n for n in NAMES if contains.casefold() in n.casefold()]
    assert body["total"] == len(expected) and body["identity_count"] == 4
    assert body["identities"] == [
        {"identity": n, "count": 6} for n in expected[offset : offset + limit]
    ]


def test_identity_list_refuses_bad_paging(client: TestClient) -> None:
    for params in ({"limit": 0}, {"limit": 10_000}, {"offset": -1}, {"limit": "many"}):
        answer = client.get("/v1/identities", params=params)
        assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid_request"


def test_one_identity_items_paged_and_404(client: TestClient) -> None:
    whole = client.get("/v1/identities/id_002").json()
    assert whole["count"] == 6 and len(whole["items"]) == 6
    assert all(i["identity"] == "id_002" and "path" not in i for i in whole["items"])
    assert all(i["thumbnail"] == f"/v1/items/{i['id']}/image" for i in whole["items"])
    ids = [i["id"] for i in whole["items"]]
    assert ids == sorted(ids)
    pages = [
        client.get("/v1/identities/id_002", params={"offset": o, "limit": 4}).json() for o in (0, 4)
    ]
    assert [i["id"] for p in pages for i in p["items"]] == ids and pages[1]["count"] == 6
    for missing in ("nobody", "id_00", "ID_002", "a b/c"):
        answer = client.get(f"/v1/identities/{missing}")
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "identity_not_found"


def test_add_reports_same_picture_under_another_identity(
    client: TestClient, unseen_dataset: Path, tiny_dataset: Path, image_of: ImageOf
) -> None:
    known = image_of(unseen_dataset, "id_001", 2)  # already in the gallery as id_001
    fresh = image_of(tiny_dataset, "id_006", 0)
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in (known, fresh)]
    report = client.post("/v1/items", files=files, data={"identity": "new name"}).json()
    assert report["added"] == 2
    assert [(d["name"], d["identity"]) for d in report["duplicates"]] == [(known.name, "id_001")]
    again = client.post(
        "/v1/items", files=_upload(fresh, "files"), data={"identity": "new name"}
    ).json()
    assert again["duplicates"] == []  # same identity: not a conflict
    listed = client.get("/v1/identities/new name").json()
    assert listed["count"] == 2


def _mentions_server_paths(body: object, *roots: Path) -> bool:
    text = json.dumps(body)
    return any(str(root) in text for root in roots)


def test_paths_only_with_the_key_or_the_flag(
    make_client: Callable[..., TestClient],
    service_gallery: Path,
    unseen_dataset: Path,
    tiny_dataset: Path,
    image_of: ImageOf,
) -> None:
    query = _upload(image_of(unseen_dataset, "id_003", 0))
    guarded = make_client(api_key="sesame")
    for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer nope"}):
        answers = [
            guarded.post("/v1/query", files=query, headers=headers).json(),
            guarded.post(
                "/v1/query/batch", files=[("files", query["file"])], headers=headers
            ).json(),
            guarded.get("/v1/gallery", headers=headers).json(),
            guarded.get("/v1/identities/id_003", headers=headers).json(),
        ]
        assert all("error" not in a for a in answers)
        assert not any(
            _mentions_server_paths(a, service_gallery, unseen_dataset) for a in answers
        ), answers
    for headers in ({"X-API-Key": "sesame"}, {"Authorization": "Bearer sesame"}):
        best = guarded.post("/v1/query", files=query, headers=headers).json()["identities"][0]
        assert Path(best["path"]).is_relative_to(unseen_dataset)
        info = guarded.get("/v1/gallery", headers=headers).json()
        assert info["gallery"] == str(service_gallery)
    added = guarded.post(
        "/v1/items",
        files=_upload(image_of(tiny_dataset, "id_005", 0), "files"),
        data={"identity": "keyed"},
        headers={"X-API-Key": "sesame"},
    ).json()
    assert Path(added["items"][0]["path"]).is_relative_to(service_gallery)

    opened = make_client(expose_paths=True)  # --expose-paths: everyone sees them
    best = opened.post("/v1/query", files=query).json()["identities"][0]
    assert Path(best["path"]).is_relative_to(unseen_dataset)
    anonymous = make_client()  # no key configured, no flag: nobody sees them
    added = anonymous.post(
        "/v1/items",
        files=_upload(image_of(tiny_dataset, "id_005", 1), "files"),
        data={"identity": "anon"},
    ).json()
    assert "path" not in added["items"][0] and not _mentions_server_paths(added, service_gallery)
