"""/metrics: scraped after real queries and parsed with prometheus_client's own parser.

Counts by route and status (refusals included), stage latencies, batch sizes, queue depth, the
gallery's size and generation, and the model's fingerprint, which must agree with /v1/gallery and
with every query answer; two apps in one process count apart; --protect reads guards /metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

ImageOf = Callable[..., Path]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(client: TestClient, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


def _upload(path: Path, field: str = "file") -> tuple[str, tuple[str, bytes, str]]:
    return (field, (path.name, path.read_bytes(), "image/png"))


def test_metrics_after_real_queries(
    make_client: Callable[..., TestClient],
    unseen_dataset: Path,
    tiny_dataset: Path,
    image_of: ImageOf,
) -> None:
    client = make_client(api_key="sesame")
    before = _scrape(client)
    assert _value(before, "siamese_gallery_items") == 24
    assert _value(before, "siamese_batch_queue_depth") == 0
    assert _value(before, "siamese_query_stage_duration_seconds_count", stage="embed") == 0

    answers = [
        client.post("/v1/query?k=2", files=[_upload(image_of(unseen_dataset, "id_001", i))]).json()
        for i in range(3)
    ]
    batch = [_upload(image_of(unseen_dataset, f"id_00{i}", 1), "files") for i in range(4)]
    answers.append(client.post("/v1/query/batch?k=2", files=batch).json())
    assert client.get("/v1/items/999999/image").status_code == 404
    refused = client.delete("/v1/items/1")  # no key
    assert refused.status_code == 401
    info = client.get("/v1/gallery?limit=0").json()
    samples = _scrape(client)

    def requests(route: str, status: int, method: str = "POST") -> float:
        labels = {"method": method, "route": route, "status": str(status)}
        return _value(samples, "siamese_http_requests_total", **labels)

    assert requests("/v1/query", 200) == 3 and requests("/v1/query/batch", 200) == 1
    assert requests("/v1/items/{item_id}/image", 404, "GET") == 1
    assert requests("/v1/items/{item_id}", 401, "DELETE") == 1  # refused before routing, named
    assert requests("/metrics", 200, "GET") == 1  # the first scrape
    assert _value(samples, "siamese_http_request_duration_seconds_count", route="/v1/query") == 3
    # One decode per request; one embed and one search per micro-batch (4 here: sequential).
    stage = "siamese_query_stage_duration_seconds"
    assert _value(samples, f"{stage}_count", stage="decode") == 4
    assert _value(samples, f"{stage}_count", stage="embed") == 4
    assert _value(samples, f"{stage}_count", stage="search") == 4
    assert _value(samples, f"{stage}_sum", stage="embed") > 0
    assert _value(samples, "siamese_batch_size_count") == 4
    assert _value(samples, "siamese_batch_size_sum") == 3 + 4  # images embedded
    assert _value(samples, "siamese_batch_size_bucket", le="2.0") == 3  # the single queries
    assert _value(samples, "siamese_batch_queue_depth") == 0
    assert _value(samples, "siamese_decoding_requests") == 0

    # The model and generation: the same in /metrics, /v1/gallery and every answer.
    fingerprint, name = info["model"]["fingerprint"], info["model"]["towers"]["gallery"]["name"]
    assert len(fingerprint) == 16 and name.endswith(".onnx")
    model_info = {"role": "image_query", "fingerprint": fingerprint, "name": name}
    assert _value(samples, "siamese_model_info", **model_info) == 1
    gallery_info = {**model_info, "role": "gallery"}
    assert _value(samples, "siamese_model_info", **gallery_info) == 1
    assert _value(samples, "siamese_gallery_generation") == info["generation"]
    for answer in answers:
        assert answer["model"] == {"fingerprint": fingerprint, "name": name}, answer
        assert answer["gallery_generation"] == info["generation"]

    added = client.post(
        "/v1/items",
        files=[_upload(image_of(tiny_dataset, "id_005", 0), "files")],
        data={"identity": "newcomer"},
        headers={"X-API-Key": "sesame"},
    )
    assert added.status_code == 201, added.text
    after = _scrape(client)
    assert _value(after, "siamese_gallery_items") == 25
    assert _value(after, "siamese_gallery_generation") == added.json()["generation"]
    assert _value(after, "siamese_gallery_generation") > info["generation"]


def test_two_apps_count_apart(
    make_client: Callable[..., TestClient], unseen_dataset: Path, image_of: ImageOf
) -> None:
    first, second = make_client(), make_client()  # a second registry: no duplicate-name error
    image = image_of(unseen_dataset, "id_000", 0)
    assert first.post("/v1/query", files=[_upload(image)]).status_code == 200
    labels = {"method": "POST", "route": "/v1/query", "status": "200"}
    assert _value(_scrape(first), "siamese_http_requests_total", **labels) == 1
    assert _value(_scrape(second), "siamese_http_requests_total", **labels) == 0


def test_metrics_follow_the_read_protection(make_client: Callable[..., TestClient]) -> None:
    open_client = make_client(api_key="sesame")  # writes protected: Prometheus scrapes freely
    assert open_client.get("/metrics").status_code == 200
    guarded = make_client(api_key="sesame", protect="reads")
    refused = guarded.get("/metrics")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    samples = _scrape(guarded, authorization="Bearer sesame")
    assert _value(samples, "siamese_gallery_items") == 24
