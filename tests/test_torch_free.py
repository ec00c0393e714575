"""The query path (engine + index + CLI query + HTTP service) never imports PyTorch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_query_path_does_not_import_torch(
    tiny_model_path: Path, gallery_dir: Path, unseen_dataset: Path, tmp_path: Path
) -> None:
    query = next(unseen_dataset.glob("id_000/*"))
    code = f"""
import sys
import siamese, siamese.engine, siamese.index
from siamese import Embedder, Gallery
embedder = Embedder({str(tiny_model_path)!r})
with Gallery.open({str(gallery_dir)!r}, model_fingerprint=embedder.fingerprint) as gallery:
    result = gallery.search(embedder.embed_paths([{str(query)!r}]).embeddings, k=3)
assert result[0].identities[0].identity == "id_000", result
from typer.testing import CliRunner
from siamese.cli import app
outcome = CliRunner().invoke(
    app, ["query", {str(query)!r}, "--gallery", {str(gallery_dir)!r}, "--json"]
)
assert outcome.exit_code == 0, outcome.output
from fastapi.testclient import TestClient
from siamese.service import ServiceConfig, ServiceState, create_app
config = ServiceConfig(gallery_dir={str(gallery_dir)!r}, device="cpu")
with TestClient(create_app(ServiceState.open(config))) as client:
    with open({str(query)!r}, "rb") as handle:
        answer = client.post("/v1/query", files={{"file": ("q.png", handle.read(), "image/png")}})
    assert answer.json()["identities"][0]["identity"] == "id_000", answer.text
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
assert not loaded, loaded
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")
