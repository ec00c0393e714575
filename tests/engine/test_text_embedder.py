"""The engine's text path: tokenise from the model's metadata, embed with onnxruntime, no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siamese.core.errors import DataError, ModelError


@pytest.fixture(scope="module")
def text_embedder(text_pair_export):
    from siamese.engine import TextEmbedder

    return TextEmbedder(text_pair_export.query.path, device="cpu")


def test_engine_matches_the_pytorch_tower_on_real_texts(text_embedder, text_pair_run) -> None:
    import torch

    from siamese.data.text import encode_texts, load_tokenizer
    from siamese.training.pair_run import load_pair_run

    texts = ["a large red disc above a small blue box", "a purple wedge", "Ünïcode, ÇAPS; 42!"]
    run = load_pair_run(text_pair_run)
    ids, mask = encode_texts(load_tokenizer(run.query.tokenizer_json, "run"), texts)
    with torch.no_grad():
        expected = run.query.tower(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    actual = text_embedder.embed_texts(texts)
    assert actual.shape == (3, text_embedder.dim) and actual.dtype == np.float32
    assert np.abs(actual - expected).max() < 1e-4
    assert np.allclose(np.linalg.norm(actual, axis=1), 1.0, atol=1e-5)


def test_open_query_embedder_picks_the_kind(text_pair_export) -> None:
    from siamese.engine import Embedder, TextEmbedder, open_query_embedder

    query = open_query_embedder(text_pair_export.query.path, device="cpu")
    gallery = open_query_embedder(text_pair_export.gallery.path, device="cpu")
    assert isinstance(query, TextEmbedder) and query.pair.role == "query"
    assert isinstance(gallery, Embedder) and gallery.pair.role == "gallery"
    assert query.pair.fingerprint == gallery.pair.fingerprint


def test_an_image_embedder_refuses_a_text_tower_and_back(text_pair_export) -> None:
    from siamese.engine import Embedder, TextEmbedder

    with pytest.raises(ModelError, match="text tower"):
        Embedder(text_pair_export.query.path, device="cpu")
    with pytest.raises(ModelError, match="not a text tower"):
        TextEmbedder(text_pair_export.gallery.path, device="cpu")


@pytest.mark.parametrize("text", ["", "   ", "x" * 2001])
def test_empty_or_overlong_texts_are_data_errors(text_embedder, text: str) -> None:
    with pytest.raises(DataError):
        text_embedder.embed_texts(["fine", text])


@settings(max_examples=40, deadline=None)
@given(texts=st.lists(st.text(max_size=80), min_size=1, max_size=4))
def test_any_text_embeds_to_unit_vectors_or_is_refused(text_embedder, texts: list[str]) -> None:
    try:
        vectors = text_embedder.embed_texts(texts)
    except DataError:
        assert any(not t.strip() for t in texts)
    else:
        assert vectors.shape == (len(texts), text_embedder.dim)
        assert np.all(np.isfinite(vectors))
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_text_query_path_does_not_import_torch(
    text_pair_export, text_pair_gallery: Path, tmp_path: Path
) -> None:
    code = f"""
import sys
from siamese.engine import open_query_embedder
from siamese.index import Gallery
embedder = open_query_embedder({str(text_pair_export.query.path)!r}, device="cpu")
with Gallery.open({str(text_pair_gallery)!r}, model_fingerprint=embedder.fingerprint,
                  model_pair=embedder.pair) as gallery:
    result = gallery.search(embedder.embed_texts(["a big red disc at the top left"]), k=3)
assert len(result[0].identities) == 3, result
from typer.testing import CliRunner
from siamese.cli import app
outcome = CliRunner().invoke(
    app, ["query", "--text", "a small blue box", "--gallery", {str(text_pair_gallery)!r}, "--json"]
)
assert outcome.exit_code == 0, outcome.output
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
assert not loaded, loaded
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")
