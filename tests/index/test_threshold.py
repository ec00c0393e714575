"""The "unknown" threshold: stored in the manifest, kept across updates, applied by search.

Set by eval.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from siamese.cli import app
from siamese.core.errors import GalleryError
from siamese.index import Gallery, GalleryWriter, Match, QueryResult
from siamese.index.store.lock import WriterLock
from siamese.index.store.manifest import Manifest


def test_ranked_result_is_unknown_only_beyond_the_threshold() -> None:
    neighbours = [
        Match(1, "ann", "a/1.png", 0.4),
        Match(2, "ann", "a/2.png", 0.5),
        Match(3, "bob", "b/1.png", 0.9),
    ]
    near = QueryResult.ranked(neighbours, k=5, threshold=0.45)
    assert (
        not near.unknown
        and near.answer == "ann"
        and [i.identity for i in near.identities] == ["ann", "bob"]
    )
    far = QueryResult.ranked(neighbours, k=5, threshold=0.3)
    assert (
        far.unknown and far.answer is None and len(far.identities) == 2
    )  # neighbours still listed
    assert (
        far.to_dict()["unknown"] is True
        and far.to_dict()["threshold"] == 0.3
        and far.to_dict()["answer"] is None
    )
    assert QueryResult.ranked([], k=5, threshold=0.3).unknown  # an empty gallery knows nobody
    assert (
        QueryResult.ranked(neighbours, k=5, threshold=None).answer == "ann"
    )  # no threshold: always an answer


def test_threshold_is_stored_applied_kept_and_cleared(
    vector_gallery: Callable[..., Path], clustered: Callable[..., np.ndarray]
) -> None:
    vectors = clustered(200, 16)
    folder = vector_gallery("g", vectors)
    Gallery.set_threshold(folder, 1.0, far=1e-3, source="test")
    stranger = vectors[:1] + 100.0
    with Gallery.open(folder) as gallery:
        assert gallery.threshold == 1.0
        (known,), (unknown,) = gallery.search(vectors[:1], k=3), gallery.search(stranger, k=3)
        assert not known.unknown and known.answer == "id0"
        assert (
            unknown.unknown and unknown.answer is None and unknown.identities
        )  # nearest still listed
        gallery.threshold = None  # a caller may ignore the calibration
        assert not gallery.search(stranger, k=3)[0].unknown
    with GalleryWriter.open(
        folder
    ) as writer:  # an update publishes a new generation: the threshold stays
        writer.stage_embeddings(vectors[:2] + 0.01, ["new/0", "new/1"], ["new", "new"])
        writer.publish()
    manifest = Manifest.read(folder)
    assert (
        manifest.generation == 2
        and manifest.threshold["distance"] == 1.0
        and manifest.threshold["far"] == 1e-3
    )
    assert Gallery.verify(folder, check_files=False).ok
    Gallery.set_threshold(folder, None)
    assert Manifest.read(folder).threshold is None


def test_bad_thresholds_and_other_models_are_refused(
    vector_gallery: Callable[..., Path], clustered: Callable[..., np.ndarray]
) -> None:
    folder = vector_gallery("g", clustered(50, 8))
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(GalleryError, match="positive finite"):
            Gallery.set_threshold(folder, bad)
    with pytest.raises(GalleryError, match="not comparable"):
        Gallery.set_threshold(folder, 1.0, model_fingerprint="f" * 64)
    with WriterLock(folder), pytest.raises(GalleryError, match="locked"):
        Gallery.set_threshold(folder, 1.0)
    assert Manifest.read(folder).threshold is None


def test_eval_calibrates_and_query_answers_unknown(
    tiny_model_path: Path,
    gallery_dir: Path,
    unseen_dataset: Path,
    tiny_dataset: Path,
    tmp_path: Path,
) -> None:
    gallery = tmp_path / "gallery"
    shutil.copytree(gallery_dir, gallery)
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "eval",
            str(tiny_model_path),
            str(unseen_dataset),
            "--save-threshold",
            str(gallery),
            "--at-far",
            "0.05",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    stored = report["saved_threshold"]
    assert (
        stored["distance"] == pytest.approx(report["verification"]["threshold_at_far_0.05"])
        and stored["far"] == 0.05
    )
    assert str(unseen_dataset) in stored["source"]

    shown = runner.invoke(app, ["index", "threshold", str(gallery), "--json"])
    assert json.loads(shown.stdout)["threshold"]["distance"] == stored["distance"]
    query = runner.invoke(
        app,
        ["query", str(tiny_dataset), "--gallery", str(gallery), "--threshold", "1e-6", "--json"],
    )
    results = json.loads(query.stdout)["results"]
    assert results and all(
        r["unknown"] and r["answer"] is None for r in results
    )  # nobody is that close
    query = runner.invoke(
        app, ["query", str(tiny_dataset), "--gallery", str(gallery), "--no-threshold", "--json"]
    )
    assert not any(r["unknown"] for r in json.loads(query.stdout)["results"])
    text = runner.invoke(
        app,
        ["query", str(tiny_dataset / "id_000"), "--gallery", str(gallery), "--threshold", "1e-6"],
    )
    assert "unknown" in text.stdout

    assert runner.invoke(app, ["index", "threshold", str(gallery), "0.5"]).exit_code == 0
    assert (
        Manifest.read(gallery).threshold["distance"] == 0.5
        and Manifest.read(gallery).threshold["source"] == "set by hand"
    )
    assert runner.invoke(app, ["index", "threshold", str(gallery), "--clear"]).exit_code == 0
    assert Manifest.read(gallery).threshold is None
    refused = runner.invoke(app, ["index", "threshold", str(gallery), "-1"])
    assert refused.exit_code != 0


def test_eval_refuses_a_gallery_of_another_model(
    tiny_model_path: Path,
    unseen_dataset: Path,
    vector_gallery: Callable[..., Path],
    clustered: Callable[..., np.ndarray],
) -> None:
    folder = vector_gallery("other", clustered(50, 8))
    result = CliRunner().invoke(
        app, ["eval", str(tiny_model_path), str(unseen_dataset), "--save-threshold", str(folder)]
    )
    assert result.exit_code == 1 and "not comparable" in result.stderr
    assert Manifest.read(folder).threshold is None
