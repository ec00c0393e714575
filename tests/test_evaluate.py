"""`siamese eval`: splits, metrics on real embeddings, plots and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import pairwise_distances, roc_auc_score
from typer.testing import CliRunner

from siamese.cli import app
from siamese.core.errors import DataError
from siamese.data.image_folder import LabelledImage, scan_image_folder
from siamese.engine import Embedder
from siamese.evaluation.evaluate import EvalConfig, evaluate, split_per_identity


def test_split_per_identity() -> None:
    items = [LabelledImage(Path(f"{who}/{i}.png"), who) for who in ("a", "b") for i in range(4)] + [
        LabelledImage(Path("c/0.png"), "c")
    ]
    gallery, queries = split_per_identity(items, 2, "first", seed=0)
    assert [str(i.path) for i in gallery] == ["a/0.png", "a/1.png", "b/0.png", "b/1.png", "c/0.png"]
    assert len(queries) == 4 and all(q.identity in ("a", "b") for q in queries)
    random_gallery, _ = split_per_identity(items, 1, "random", seed=1)
    assert sorted(i.identity for i in random_gallery) == ["a", "b", "c"]
    assert split_per_identity(items, 1, "random", seed=1) == split_per_identity(
        items, 1, "random", seed=1
    )
    with pytest.raises(DataError, match="split must be"):
        split_per_identity(items, 1, "alphabetical", seed=0)


def test_evaluate_reports_and_plots(
    tiny_model_path: Path, unseen_dataset: Path, tmp_path: Path
) -> None:
    report = evaluate(
        EvalConfig(
            model=str(tiny_model_path),
            data_dir=str(unseen_dataset),
            gallery_per_identity=2,
            out_dir=str(tmp_path / "eval"),
        )
    )
    assert (
        report["gallery_images"] == 8 and report["query_images"] == 16 and report["identities"] == 4
    )
    ident, verif = report["identification"], report["verification"]
    assert ident["recall_at_1"] <= ident["recall_at_5"] <= ident["recall_at_10"] == 1.0  # 4 ids
    assert verif["same_pairs"] == 16 * 2 and verif["different_pairs"] == 16 * 6
    # The same split, embedded here and measured with scikit-learn: the report is about these
    # images.
    gallery, queries = split_per_identity(scan_image_folder(unseen_dataset), 2, "random", seed=0)
    embedder = Embedder(tiny_model_path)
    distances = pairwise_distances(
        embedder.embed_paths([q.path for q in queries]).embeddings.astype(np.float64),
        embedder.embed_paths([g.path for g in gallery]).embeddings.astype(np.float64),
    )
    same = np.array([q.identity for q in queries])[:, None] == np.array(
        [g.identity for g in gallery]
    )
    ranked = np.take_along_axis(same, np.argsort(distances, axis=1), axis=1)
    assert ident["recall_at_1"] == pytest.approx(ranked[:, 0].mean())
    precision_at = np.cumsum(ranked[:, :2], axis=1) / np.arange(1, 3)  # R = 2 gallery images
    assert ident["map_at_r"] == pytest.approx((precision_at * ranked[:, :2]).sum(1).mean() / 2)
    assert verif["roc_auc"] == pytest.approx(roc_auc_score(same.ravel(), -distances.ravel()))
    for name in ("roc.png", "distances.png"):
        assert (tmp_path / "eval" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["identification"] == ident


def test_separate_gallery_and_queries(tiny_model_path: Path, unseen_dataset: Path) -> None:
    report = evaluate(
        EvalConfig(
            model=str(tiny_model_path),
            gallery_dir=str(unseen_dataset),
            queries_dir=str(unseen_dataset),
        )
    )
    assert report["identification"]["recall_at_1"] == 1.0  # every query is also in the gallery
    with pytest.raises(DataError, match="not both"):
        evaluate(
            EvalConfig(
                model=str(tiny_model_path),
                data_dir=str(unseen_dataset),
                gallery_dir=str(unseen_dataset),
            )
        )


def test_cli_eval(tiny_model_path: Path, unseen_dataset: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["eval", str(tiny_model_path), str(unseen_dataset), "--far", "0.1", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert "tar_at_far_0.1" in report["verification"] and report["query_images"] == 20
    result = runner.invoke(
        app, ["eval", str(tiny_model_path), str(unseen_dataset), "--out", str(tmp_path / "e")]
    )
    assert (
        result.exit_code == 0 and "recall@1" in result.stdout and "TAR @ FAR 0.001" in result.stdout
    )
    result = runner.invoke(
        app, ["eval", str(tiny_model_path), str(unseen_dataset), "--gallery-per-identity", "6"]
    )
    assert result.exit_code == 1 and "no query images" in result.stderr


def test_eval_options_come_from_evalconfig(tiny_model_path: Path, unseen_dataset: Path) -> None:
    """Every EvalConfig field is an option; rates are comma-separated; a bad one is one line."""
    from dataclasses import fields

    from siamese.cli.fields import option_names
    from siamese.evaluation.config import EvalConfig

    runner = CliRunner()
    shown = runner.invoke(app, ["eval", "--help"], env={"COLUMNS": "160"}).output
    for name, names in option_names(EvalConfig).items():
        if name not in ("model", "data_dir"):
            assert names[0] in shown, names[0]
    assert "--gallery " not in shown  # the image folder's former name is a hidden alias
    assert {f.name for f in fields(EvalConfig)} == set(option_names(EvalConfig))
    args = ["eval", str(tiny_model_path), str(unseen_dataset), "--json"]
    two = runner.invoke(app, [*args, "--far", "0.1,0.05"])
    assert two.exit_code == 0, two.output
    verification = json.loads(two.stdout)["verification"]
    assert "tar_at_far_0.1" in verification and "tar_at_far_0.05" in verification
    bad = runner.invoke(app, [*args, "--far", "ten"])
    assert bad.exit_code == 1 and "false-accept rates (--far) are comma-separated" in bad.output
