"""The service on a text → image pair's gallery: POST /v1/query takes a text field; JSON errors."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siamese.service import ServiceConfig, ServiceState, create_app


@pytest.fixture()
def pair_client(text_pair_gallery: Path, tmp_path: Path) -> Iterator[TestClient]:
    gallery = Path(shutil.copytree(text_pair_gallery, tmp_path / "gallery"))
    config = ServiceConfig(gallery_dir=gallery, device="cpu")
    with TestClient(create_app(ServiceState.open(config)), raise_server_exceptions=False) as c:
        yield c


def test_a_text_query_finds_identities(pair_client: TestClient) -> None:
    answer = pair_client.post("/v1/query?k=3", data={"text": "a big red disc at the top left"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["query"] == "a big red disc at the top left"
    assert 1 <= len(body["identities"]) <= 3
    assert all(i["identity"].startswith("id_") for i in body["identities"])


def test_gallery_info_says_text_queries_are_taken(pair_client: TestClient) -> None:
    model = pair_client.get("/v1/gallery").json()["model"]
    assert model["text_query"] is True and len(model["pair"]) == 16


def test_an_image_query_and_an_add_use_the_gallery_tower(
    pair_client: TestClient, pair_dataset
) -> None:
    photo = (pair_dataset.photos / "id_003" / "000.png").read_bytes()
    found = pair_client.post("/v1/query", files={"file": ("q.png", photo, "image/png")})
    assert found.status_code == 200 and found.json()["identities"][0]["identity"] == "id_003"
    added = pair_client.post(
        "/v1/items", files={"files": ("new.png", photo, "image/png")}, data={"identity": "id_new"}
    )
    assert added.status_code == 201, added.text
    again = pair_client.post("/v1/query", data={"text": "a small blue box"})
    assert again.status_code == 200
    assert again.json()["gallery_generation"] == added.json()["generation"]
    # Each answer names the tower that embedded its query, as /v1/gallery and /metrics do.
    towers = pair_client.get("/v1/gallery").json()["model"]["towers"]
    assert again.json()["model"]["fingerprint"] == towers["text_query"]["fingerprint"]
    assert found.json()["model"]["fingerprint"] == towers["image_query"]["fingerprint"]
    assert towers["text_query"]["fingerprint"] != towers["image_query"]["fingerprint"]
    assert again.json()["model"]["pair"] == found.json()["model"]["pair"]
    metrics = pair_client.get("/metrics").text
    text_tower = towers["text_query"]
    assert f'fingerprint="{text_tower["fingerprint"]}"' in metrics
    assert f'name="{text_tower["name"]}",role="text_query"' in metrics


@pytest.mark.parametrize(
    ("data", "files", "code"),
    [
        ({}, None, "invalid_request"),
        ({"text": "a red disc"}, {"file": ("q.png", b"\x89PNG", "image/png")}, "invalid_request"),
        ({"text": "   "}, None, "invalid_text"),
        ({"text": "x" * 2001}, None, "invalid_text"),
    ],
)
def test_bad_text_requests_are_json_422s(
    pair_client: TestClient, data: dict, files: dict | None, code: str
) -> None:
    answer = pair_client.post("/v1/query", data=data, files=files)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == code


def test_a_single_model_gallery_refuses_text(client: TestClient) -> None:
    answer = client.post("/v1/query", data={"text": "a red disc"})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "text_not_supported"
    assert client.get("/v1/gallery").json()["model"]["text_query"] is False


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=300))
def test_any_text_is_answered_or_refused_never_a_500(pair_client: TestClient, text: str) -> None:
    answer = pair_client.post("/v1/query", data={"text": text})
    assert answer.status_code in (200, 422), (answer.status_code, answer.text)
    assert ("identities" in answer.json()) == (answer.status_code == 200)
