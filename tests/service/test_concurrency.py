"""A real server on 127.0.0.1.

Many concurrent queries while an add runs each see the old or the new gallery, whole.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import httpx

from siamese.service import ServiceConfig, ServiceState, create_app
from siamese.service.server import background_server


def test_queries_during_an_add_see_old_or_new(
    service_gallery: Path, tiny_dataset: Path, image_of: Callable[..., Path]
) -> None:
    state = ServiceState.open(
        ServiceConfig(gallery_dir=service_gallery, device="cpu", max_batch=16, max_wait_ms=5)
    )
    old_generation, old_count = state.live.current.manifest.generation, len(state.live.current)
    newcomer = [image_of(tiny_dataset, "id_004", i) for i in range(3)]
    probe = newcomer[0].read_bytes()
    responses: list[dict] = []
    errors: list[str] = []
    done = threading.Event()

    with background_server(create_app(state)) as url:

        def query_loop() -> None:
            # Every thread queries until the add has returned, then three more times (so some
            # queries surely follow the add, however fast the machine), and 60 in all at least.
            after_add = 0
            with httpx.Client(base_url=url, timeout=30) as client:
                while after_add < 3 or len(responses) < 60:
                    after_add += done.is_set()
                    response = client.post(
                        "/v1/query?k=2", files={"file": ("probe.png", probe, "image/png")}
                    )
                    (
                        responses.append(response.json())
                        if response.status_code == 200
                        else errors.append(response.text)
                    )
                    if len(responses) > 400 and after_add >= 3:
                        break

        threads = [threading.Thread(target=query_loop) for _ in range(6)]
        for thread in threads:
            thread.start()
        with httpx.Client(base_url=url, timeout=60) as client:
            added = client.post(
                "/v1/items",
                files=[("files", (p.name, p.read_bytes(), "image/png")) for p in newcomer],
                data={"identity": "newcomer"},
            )
        done.set()
        for thread in threads:
            thread.join(timeout=60)
        with httpx.Client(base_url=url, timeout=30) as client:
            info = client.get("/v1/gallery").json()

    assert added.status_code == 201, added.text
    new_generation = added.json()["generation"]
    assert not errors, errors[:3]
    assert info["generation"] == new_generation and info["count"] == old_count + 3
    seen = {r["gallery_generation"] for r in responses}
    assert seen <= {old_generation, new_generation} and new_generation in seen
    for body in responses:
        best = body["identities"][0]
        if body["gallery_generation"] == new_generation:
            assert best["identity"] == "newcomer" and best["distance"] < 1e-4, body
        else:
            assert best["identity"] != "newcomer" and not any(
                m["identity"] == "newcomer" for m in body["matches"]
            ), body
