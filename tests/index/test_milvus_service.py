"""`siamese serve` on a Milvus Lite gallery: query, add an upload, remove it, see other writers.

The real service (its app, batcher and live gallery) over a ``milvus-lite:`` gallery built with
the tiny ONNX model: the same API answers as on a folder gallery.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pymilvus", reason="the milvus extra is not installed")

from fastapi.testclient import TestClient

from siamese.engine import Embedder
from siamese.index import Gallery
from siamese.service import ServiceConfig, ServiceState, create_app


def _upload(path: Path) -> dict:
    return {"file": (path.name, path.read_bytes(), "application/octet-stream")}


def test_service_on_a_milvus_lite_gallery(
    tiny_model_path: Path, unseen_dataset: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    gallery = f"milvus-lite:{tmp_path / 'g.db'}"
    with Embedder(tiny_model_path) as embedder:
        Gallery.build(unseen_dataset, embedder, gallery)
    config = ServiceConfig(gallery_dir=Path(gallery), device="cpu", expose_paths=True)
    with TestClient(create_app(ServiceState.open(config))) as client:
        probe = min((unseen_dataset / "id_002").iterdir())
        found = client.post("/v1/query?k=2", files=_upload(probe))
        assert found.status_code == 200, found.text
        assert found.json()["identities"][0]["identity"] == "id_002"
        assert client.get("/v1/gallery").json()["count"] == 24

        newcomer = min((tiny_dataset / "id_005").iterdir())
        files = [("files", (newcomer.name, newcomer.read_bytes(), "image/png"))]
        added = client.post("/v1/items", files=files, data={"identity": "newcomer"})
        assert added.status_code == 201, added.text
        stored = Path(added.json()["items"][0]["path"])
        assert stored.is_relative_to(tmp_path / "g.db.files" / "uploads") and stored.is_file()
        again = client.post("/v1/query", files=_upload(newcomer)).json()
        assert again["identities"][0]["identity"] == "newcomer"

        gone = client.delete("/v1/items", params={"identity": "newcomer"})
        assert gone.status_code == 200 and gone.json()["deleted_uploads"] == 1
        assert not stored.exists() and client.get("/v1/gallery").json()["count"] == 24
