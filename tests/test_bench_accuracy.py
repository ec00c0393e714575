"""The accuracy suite in --quick mode.

Every method trained/embedded and measured, targets computed, JSON written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _harness import benchmarks_dir
from typer.testing import CliRunner

from siamese.cli import app


def test_accuracy_suite_quick(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "accuracy",
            "--quick",
            "-O",
            "datasets=synthetic",
            "-O",
            "methods=raw,pca,default",
            "-O",
            "epochs=1",
            "-O",
            "seeds=0,3",
            "--work-dir",
            str(tmp_path / "work"),
            "--results-dir",
            str(tmp_path / "results"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    rows = record["results"]["results"]["synthetic"]
    # trained methods once per training seed, the first seed's row in front; pixels once
    runs = tmp_path / "work" / "accuracy" / "runs"
    spread = rows["default"]["training_seeds"]
    assert spread["seeds"] == [0, 3] and record["results"]["training_seeds"] == [0, 3]
    assert spread["recall_at_1"]["per_seed"][0] == rows["default"]["recall_at_1"]
    assert spread["map_at_r"]["mean"] == pytest.approx(
        np.mean(spread["map_at_r"]["per_seed"]), abs=1e-4
    )
    assert len(spread["one_shot_5-way"]["per_seed"]) == 2
    assert "training_seeds" not in rows["raw"] and "training_seeds" not in rows["pca"]
    recorded = [
        json.loads((runs / name / "config.json").read_text())["train"]["seed"]
        for name in ("synthetic-default", "synthetic-default-seed3")
    ]
    assert recorded == [0, 3]
    assert (runs / "synthetic-default-seed3" / "tower.safetensors").read_bytes() != (
        runs / "synthetic-default" / "tower.safetensors"
    ).read_bytes()
    assert set(rows) == {"raw", "pca", "default"}
    for row in rows.values():
        assert (
            0.0 <= row["recall_at_1"] <= 1.0
            and 0.0 <= row["map_at_r"] <= 1.0
            and row["queries"] == 12 * 8
        )
    assert (
        rows["pca"]["dimension"] == 128
        and rows["default"]["dimension"] == 256
        and rows["default"]["epochs_run"] == 1
    )
    assert (runs / "synthetic-default" / "model.onnx").is_file()
    # one-shot trials where 12 unseen identities hold them (5-way; not 20-way),
    # and training's arithmetic
    assert all(set(row["one_shot"]) == {"5-way"} for row in rows.values())
    assert rows["default"]["one_shot"]["5-way"]["trials"] == 2000
    flops = rows["default"]["flops_per_image"]
    assert flops["backward"] > flops["forward"] > 0 and rows["default"]["train_images"] > 0
    assert record["results"]["arithmetic_peak"]["measured_matmul_gflops"] > 0
    assert "synthetic: default - pca one-shot 5-way" in record["results"]["targets"]
    gap = record["results"]["targets"]["synthetic: default - pca recall_at_1"]
    assert gap == pytest.approx(
        rows["default"]["recall_at_1"] - rows["pca"]["recall_at_1"], abs=1e-4
    )
    assert json.loads(Path(record["path"]).read_text())["suite"] == "accuracy"


def test_accuracy_suite_names_unknown_methods(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["bench", "accuracy", "--quick", "-O", "methods=raw,nope", "--work-dir", str(tmp_path)]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "unknown dataset or method: nope" in result.stderr
    result = CliRunner().invoke(
        app, ["bench", "accuracy", "--quick", "-O", "seeds=0,one", "--work-dir", str(tmp_path)]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "-O seeds=0,one: training seeds are whole numbers" in result.stderr


def test_enrolment_draws_and_sweep(unseen_dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several random enrolments of the same embeddings.

    The first draw is the main split, the spread is reported, and the sweep over images enrolled per
    identity re-splits the same rows.
    """
    monkeypatch.syspath_prepend(str(benchmarks_dir()))
    import accuracy

    from siamese.data.image_folder import scan_image_folder
    from siamese.evaluation.evaluate import measure, split_per_identity

    task = accuracy.Task(
        "tiny", unseen_dataset, unseen_dataset, 1, 32, "tiny", enrol_draws=4, enrol_sweep=(2, 3)
    )
    embed, _ = accuracy.raw_pixels(task, Path("unused"), 1, True)
    calls: list[int] = []

    def counting(paths: list[str]):
        calls.append(len(paths))
        return embed(paths)

    figures = accuracy._enrolment_figures(counting, task)
    assert calls == [24]  # every image embedded once, whatever the number of draws and sweep points
    summary = figures["enrolments"]
    assert (
        summary["draws"] == 4
        and summary["recall_at_1_std"]
        == pytest.approx(np.std(summary["recall_at_1_per_draw"]), abs=1e-4)
        and len(summary["recall_at_1_per_draw"]) == 4
    )
    assert summary["recall_at_1_mean"] == pytest.approx(
        np.mean(summary["recall_at_1_per_draw"]), abs=1e-4
    )
    assert set(figures["enrolment_sweep"]) == {"2", "3"}
    assert len(figures["enrolment_sweep"]["3"]["map_at_r_per_draw"]) == accuracy.SWEEP_DRAWS
    items = scan_image_folder(unseen_dataset)
    for k in (2, 3):
        gallery, queries = split_per_identity(items, k, "random", seed=0)
        expected = measure(embed, gallery, queries)["identification"]
        assert figures["enrolment_sweep"][str(k)]["map_at_r_per_draw"][0] == round(
            expected["map_at_r"], 4
        )
    gallery, queries = split_per_identity(items, 1, "random", seed=0)
    assert summary["recall_at_1_per_draw"][0] == round(
        measure(embed, gallery, queries)["identification"]["recall_at_1"], 4
    )
    assert (
        accuracy._enrolment_figures(
            counting, accuracy.Task("tiny", unseen_dataset, unseen_dataset, 1, 32, "tiny")
        )
        == {}
    )
    assert calls == [24]  # nothing to re-split: nothing embedded


def test_paired_gap_counts_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(benchmarks_dir()))
    import accuracy

    ours, rival = (
        {"recall_at_1_per_draw": [0.9, 0.8, 0.7, 0.6]},
        {"recall_at_1_per_draw": [0.8, 0.8, 0.8, 0.5]},
    )
    assert accuracy._paired_gap(ours, rival, "recall_at_1") == {
        "mean": 0.025,
        "std": pytest.approx(0.0829, abs=1e-4),
        "ahead": 2,
        "tied": 1,
        "behind": 1,
    }


def test_att_faces_folds_split_people(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each fold tests a different block of people and trains on all the others.

    No person is in both.
    """
    monkeypatch.syspath_prepend(str(benchmarks_dir()))
    from _datasets import att_faces

    source = tmp_path / "att_faces"
    for number in range(1, 9):
        person = source / ("training" if number <= 6 else "testing") / f"s{number}"
        person.mkdir(parents=True)
        (person / "1.pgm").write_bytes(b"P5 1 1 255\n\x00")
    tested = []
    for fold in range(4):
        train, unseen = att_faces(tmp_path / "data", source, unseen_fold=fold, folds=4)
        people = sorted(p.name for p in unseen.iterdir())
        assert people == [f"s{2 * fold + 1}", f"s{2 * fold + 2}"]
        assert (
            not set(people) & {p.name for p in train.iterdir()} and len(list(train.iterdir())) == 6
        )
        tested += people
    assert sorted(tested) == sorted(f"s{n}" for n in range(1, 9))
    assert (
        tmp_path / "data" / "att-unseen"
    ).is_dir()  # the last fold keeps the fixed split's folder names


def test_fold_gaps_pool_folds_and_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(benchmarks_dir()))
    import accuracy

    def row(r1: float, draws: list[float]) -> dict:
        return {"recall_at_1": r1, "enrolments": {"recall_at_1_per_draw": draws}}

    folds = {
        "a": {"default": row(0.9, [0.9, 0.8]), "pca": row(0.8, [0.8, 0.8])},
        "b": {"default": row(0.7, [0.7, 0.6]), "pca": row(0.75, [0.6, 0.7])},
    }
    checks = accuracy._pooled_fold_gaps(folds)
    assert set(checks) == {
        "att-faces, 2 identity folds: default - pca recall_at_1"
    }  # no seed rows: no seed check
    pooled = checks["att-faces, 2 identity folds: default - pca recall_at_1"]
    assert (
        pooled["per_fold"] == {"a": 0.1, "b": -0.05}
        and pooled["mean"] == 0.025
        and pooled["unseen_people"] == 20
    )
    draws = pooled["over_enrolments"]
    assert (draws["default_mean"], draws["pca_mean"]) == (0.75, 0.725)
    assert (draws["ahead"], draws["tied"], draws["behind"]) == (2, 1, 1) and draws["mean"] == 0.025
    assert accuracy._pooled_fold_gaps({"a": folds["a"]}) == {}


def test_targets_pair_the_enrolment_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(benchmarks_dir()))
    import accuracy

    def row(r1: float, maps: list[float]) -> dict:
        sweep = {"5": {"draws": 2, "recall_at_1_per_draw": [r1, r1], "map_at_r_per_draw": maps}}
        return {"recall_at_1": r1, "map_at_r": maps[0], "enrolment_sweep": sweep}

    targets = accuracy._targets(
        {"fashion-x": {"default": row(0.9, [0.6, 0.5]), "pca": row(0.8, [0.4, 0.5])}}
    )
    assert targets["fashion-x: default - pca recall_at_1"] == 0.1
    assert targets["fashion-x: default - pca map_at_r, 5 enrolled per identity (2 draws)"] == {
        "mean": 0.1,
        "std": 0.1,
        "ahead": 1,
        "tied": 1,
        "behind": 0,
    }
    assert (
        targets["fashion-x: default - pca recall_at_1, 5 enrolled per identity (2 draws)"]["ahead"]
        == 2
    )
