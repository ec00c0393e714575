"""Pair training: both kinds of pair write their run dir; the shared special case; refusals."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from siamese.core.errors import ConfigError, DataError
from siamese.core.files import read_json


def test_image_pair_run_records_both_towers(image_pair_run: Path) -> None:
    config = read_json(image_pair_run / "config.json")
    query, gallery = config["pair"]["query"], config["pair"]["gallery"]
    assert not config["pair"]["shared"] and "tower" not in config  # not a single-tower run
    assert query["input_spec"]["channels"] == 1 and query["input_spec"]["height"] == 24
    assert gallery["input_spec"]["channels"] == 3 and gallery["input_spec"]["height"] == 32
    assert query["tower"]["embedding_dim"] == gallery["tower"]["embedding_dim"] == 8
    assert gallery["tower"]["options"]["embed_from"] == "head"
    for name in ("query.safetensors", "gallery.safetensors", "history.json", "loss.png"):
        assert (image_pair_run / name).is_file()
    history = read_json(image_pair_run / "history.json")
    assert history["metric"] == "map_at_r" and len(history["epochs"]) == 2
    assert {"val_recall_at_1", "val_map_at_r"} <= set(history["epochs"][0])
    kept = max(history["epochs"], key=lambda row: row["val_map_at_r"])
    assert history["best_epoch"] == kept["epoch"]
    # gallery-only identities are distractors in validation, never trained on
    assert set(config["data"]["gallery_only_identities"]) == {"id_014", "id_015"}
    assert not set(config["data"]["train_identities"]) & {"id_014", "id_015"}


def test_text_pair_run_saves_its_tokenizer_which_reads_back_the_same(
    text_pair_run: Path, pair_dataset
) -> None:
    from siamese.data.text import encode_texts, load_tokenizer
    from siamese.training.pair_run import load_pair_run

    config = read_json(text_pair_run / "config.json")
    assert config["pair"]["query"]["kind"] == "text"
    assert config["pair"]["query"]["tokenizer"] == "tokenizer.json"
    assert config["pair"]["loss"] == {
        "name": "symmetric-ce",
        "margin": None,
        "temperature": None,
        "learnt": True,
    }
    run = load_pair_run(text_pair_run)
    saved = load_tokenizer((text_pair_run / "tokenizer.json").read_text(), "tokenizer.json")
    texts = ["a large red disc above a small blue box", "an unheard-of zebra, in CAPITALS"]
    ids, mask = encode_texts(saved, texts)
    again, again_mask = encode_texts(load_tokenizer(run.query.tokenizer_json, "run"), texts)
    assert ids.shape == (2, 16) and (ids == again).all() and (mask == again_mask).all()
    assert mask[0].sum() < 16 and ids[0, mask[0] == 0].tolist() == [0] * int((mask[0] == 0).sum())


def test_shared_weights_is_an_ordinary_single_tower_run(
    pair_dataset, pair_config, tmp_path: Path
) -> None:
    from siamese.training import load_run, train

    run_dir = tmp_path / "shared"
    train(
        pair_config(
            pair_dataset,
            run_dir,
            query_data=str(pair_dataset.sketches),
            share_weights=True,
            epochs=1,
        )
    )
    config = read_json(run_dir / "config.json")
    assert config["pair"]["shared"] and config["tower"]["name"] == "conv"
    run = load_run(run_dir)  # what `siamese export` reads: exported as today
    assert run.spec.channels == 3 and (run_dir / "tower.safetensors").is_file()


@pytest.mark.parametrize("loss", ["contrastive", "triplet"])
def test_margin_losses_train_and_record_their_margin(
    pair_dataset, pair_config, tmp_path: Path, loss: str
) -> None:
    from siamese.training import train

    result = train(
        pair_config(
            pair_dataset,
            tmp_path / loss,
            query_data=str(pair_dataset.sketches),
            pair_loss=loss,
            epochs=1,
            steps_per_epoch=2,
        )
    )
    assert np.isfinite(result.history[0]["loss"])
    recorded = read_json(tmp_path / loss / "config.json")["pair"]["loss"]
    assert recorded["margin"] == {"contrastive": 1.0, "triplet": 0.2}[loss]


def test_a_pair_run_resumes_where_it_stopped(
    pair_dataset, pair_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after epoch 1 of 2 and resumed, a pair run ends as an uninterrupted one does."""
    from siamese.training import run_keeper, train

    def run(out: Path, **options):
        config = pair_config(
            pair_dataset, out, query_data=str(pair_dataset.sketches), epochs=2, steps_per_epoch=2
        )
        return train(replace(config, **options))

    straight = run(tmp_path / "straight").history
    real_save = run_keeper.save_checkpoint

    def interrupt_after_epoch_1(run_dir, state):
        real_save(run_dir, state)
        if state["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(run_keeper, "save_checkpoint", interrupt_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "resumed")
    monkeypatch.setattr(run_keeper, "save_checkpoint", real_save)
    with pytest.raises(ConfigError, match=r"resume it \(resume\)"):
        run(tmp_path / "resumed")
    resumed = run(tmp_path / "resumed", resume=True).history
    assert [row["epoch"] for row in resumed] == [1, 2]
    for key in ("loss", "val_map_at_r"):
        assert resumed[1][key] == pytest.approx(straight[1][key], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"share_weights": True}, r"need query images \(query_data\)"),
        ({"query_data": "a", "captions": "b"}, "not both"),
        ({"captions": "b", "share_weights": True}, "cannot share weights"),
        ({"query_data": "a", "tower": "classic"}, "normalised embeddings"),
    ],
)
def test_inconsistent_pair_options_are_refused(changes: dict, problem: str) -> None:
    from siamese.training import TrainConfig

    with pytest.raises(ConfigError, match=problem):
        TrainConfig(data_dir="d", out_dir="o", **changes)


def test_sides_without_shared_identities_are_a_data_error(
    pair_dataset, pair_config, tmp_path: Path
) -> None:
    from siamese.training import train

    captions = tmp_path / "c.csv"
    captions.write_text("identity,text\nnobody,a red disc\nno_one,a blue box\n")
    with pytest.raises(DataError, match="at least two identities on both sides"):
        train(pair_config(pair_dataset, tmp_path / "r", captions=str(captions)))
