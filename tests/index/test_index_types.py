"""Index types by factory string.

Training, recall against exact search, search parameters, mmap, auto choice.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from siamese.core.errors import GalleryError, RecallTooLowError
from siamese.index import Gallery, GalleryWriter
from siamese.index.search.faiss_index import index_ids
from siamese.index.search.index_choice import choose_index, ivf_lists, parse_memory
from siamese.index.updates.writer import RecallPolicy

DIM = 16


@pytest.mark.parametrize(
    ("index_type", "knob", "floor"),
    [
        ("Flat", None, 1.0),
        ("HNSW32", "efSearch", 0.95),
        ("IVF16,Flat", "nprobe", 0.95),
        ("SQ8", None, 0.8),
        ("IVF16,SQ8", "nprobe", 0.8),
        ("IVF16,PQ4", "nprobe", 0.2),
    ],
)
def test_index_types_record_recall_and_tuned_parameters(
    vector_gallery, clustered, index_type: str, knob: str | None, floor: float
) -> None:
    vectors = clustered(3000, DIM)
    folder = vector_gallery("g", vectors, index_type)
    manifest = json.loads((folder / "manifest.json").read_text())
    recall = manifest["recall"]
    assert manifest["index_type"] == index_type and manifest["count"] == 3000
    assert (
        recall["at10"] >= floor
        and 0.0 <= recall["at1"] <= 1.0
        and recall["exact"] == (index_type == "Flat")
    )
    assert list(manifest["search_params"]) == ([knob] if knob else [])
    with Gallery.open(folder) as gallery:
        assert sorted(index_ids(gallery.index)) == list(gallery.items.ids())
        distances, ids = gallery.nearest(vectors[:50], k=5)
        assert distances.shape == (50, 5) and (ids[:, 0] >= 0).all()
        assert np.all(np.diff(distances, axis=1) >= -1e-5)
        assert Gallery.verify(folder, check_files=False).ok


def test_recall_below_minimum_is_refused_and_embeddings_kept(tmp_path: Path, clustered) -> None:
    vectors = clustered(2000, DIM)
    with GalleryWriter.create(
        tmp_path / "g",
        dimension=DIM,
        model_fingerprint="0" * 64,
        model_path="m",
        index_type="IVF16,PQ2",
    ) as writer:
        writer.stage_embeddings(vectors, [f"v{i}" for i in range(2000)], ["x"] * 2000)
        with pytest.raises(
            RecallTooLowError, match=r"below the minimum asked for \(min_recall 0.99\)"
        ):
            writer.publish(recall=RecallPolicy(minimum=0.99, queries=200))
        assert writer.manifest.generation == 0 and len(writer.items.staged(DIM)[0]) == 2000
        manifest = writer.publish(index_type="Flat", recall=RecallPolicy(minimum=0.99))
    assert manifest.generation == 1 and manifest.count == 2000 and manifest.index_type == "Flat"


def test_search_parameters_are_stored_and_overridable(vector_gallery, clustered) -> None:
    vectors = clustered(4000, DIM, clusters=400)
    folder = vector_gallery("g", vectors, "IVF64,Flat", search_params={"nprobe": 64})
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["search_params"] == {"nprobe": 64} and manifest["recall"]["at10"] == 1.0
    with (
        Gallery.open(folder) as exhaustive,
        Gallery.open(folder, search_params={"nprobe": 1}) as narrow,
    ):
        wide_ids = exhaustive.nearest(vectors[:200], k=10)[1]
        narrow_ids = narrow.nearest(vectors[:200], k=10)[1]
        assert not np.array_equal(wide_ids, narrow_ids)  # one list of 64 misses neighbours
        np.testing.assert_array_equal(
            exhaustive.nearest(vectors[:200], k=10, params={"nprobe": 1})[1], narrow_ids
        )
        with pytest.raises(GalleryError, match="efSearch does not apply"):
            exhaustive.nearest(vectors[:1], params={"efSearch": 8})


def test_mmap_loading_gives_the_same_results(vector_gallery, clustered) -> None:
    vectors = clustered(2000, DIM)
    for index_type in ("Flat", "IVF16,Flat"):
        folder = vector_gallery(index_type, vectors, index_type)
        with Gallery.open(folder) as loaded, Gallery.open(folder, mmap=True) as mapped:
            for a, b in zip(loaded.nearest(vectors[:30], 5), mapped.nearest(vectors[:30], 5)):
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("index_type", ["HNSW32", "IVF16,Flat", "Flat"])
def test_removal_from_every_index_type(vector_gallery, clustered, index_type: str) -> None:
    vectors = clustered(1500, DIM)
    folder = vector_gallery("g", vectors, index_type)
    report = Gallery.remove(folder, identities=["id3"])
    assert report.removed == 150 and report.count == 1350
    with Gallery.open(folder) as gallery:
        assert "id3" not in gallery.items.identity_counts() and len(gallery) == 1350
        assert all(
            m.identity != "id3" for r in gallery.search(vectors[3::10][:20], k=5) for m in r.matches
        )
    assert Gallery.verify(folder, check_files=False).ok


def test_changing_the_index_type_reuses_stored_embeddings(vector_gallery, clustered) -> None:
    vectors = clustered(2000, DIM)
    folder = vector_gallery("g", vectors, "Flat")
    with GalleryWriter.open(folder) as writer:
        ids_before = sorted(index_ids(writer.index))
        manifest = writer.publish(index_type="HNSW32")
    assert (
        manifest.index_type == "HNSW32"
        and manifest.faiss_factory == "IDMap2,HNSW32"
        and manifest.count == 2000
    )
    with Gallery.open(folder) as gallery:
        assert sorted(index_ids(gallery.index)) == ids_before
        assert (
            gallery.nearest(vectors[:100], 1)[1][:, 0] == np.array(ids_before[:100])
        ).mean() > 0.95


def test_too_few_vectors_to_train(tmp_path: Path, clustered) -> None:
    with GalleryWriter.create(
        tmp_path / "g",
        dimension=DIM,
        model_fingerprint="0" * 64,
        model_path="m",
        index_type="IVF256,Flat",
    ) as writer:
        writer.stage_embeddings(clustered(100, DIM), [f"v{i}" for i in range(100)], ["x"] * 100)
        with pytest.raises(GalleryError, match="needs at least 256 vectors to train"):
            writer.publish()


def test_invalid_index_types_are_refused(tmp_path: Path) -> None:
    with pytest.raises(GalleryError, match="invalid index type 'Bogus32'"):
        GalleryWriter.create(
            tmp_path / "g",
            dimension=DIM,
            model_fingerprint="0" * 64,
            model_path="m",
            index_type="Bogus32",
        )
    with pytest.raises(GalleryError, match="nprobe does not apply"):
        GalleryWriter.create(
            tmp_path / "g",
            dimension=DIM,
            model_fingerprint="0" * 64,
            model_path="m",
            index_type="HNSW32",
            search_params={"nprobe": 4},
        )
    assert not (tmp_path / "g").exists() and not list(tmp_path.iterdir())


def test_auto_choice_follows_size_and_memory() -> None:
    assert choose_index(20_000, 128, parse_memory("8G")).index_type == "Flat"
    roomy = choose_index(1_000_000, 128, parse_memory("8G"))
    assert roomy.index_type == "HNSW32" and 0.9 <= roomy.expected_recall_at10 < 1
    assert (
        choose_index(1_000_000, 128, parse_memory("600M")).index_type
        == f"IVF{ivf_lists(1_000_000)},Flat"
    )
    tight = choose_index(1_000_000, 128, parse_memory("40M"))
    assert (
        tight.index_type.startswith("IVF")
        and ",PQ" in tight.index_type
        and tight.estimated_bytes <= parse_memory("40M")
    )
    assert tight.expected_recall_at10 < roomy.expected_recall_at10
    with pytest.raises(GalleryError, match=r"raise the budget \(max_memory\)"):
        choose_index(1_000_000, 128, parse_memory("1M"))
    assert ivf_lists(100_000) == 1024 and ivf_lists(1_000_000) == 4096 and ivf_lists(1000) == 16
    with pytest.raises(GalleryError, match="expected a number"):
        parse_memory("lots")
