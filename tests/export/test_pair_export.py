"""Pair export: both towers written with parity, self-describing, bound by one pair fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from siamese.contracts.model_card import ModelCard
from siamese.contracts.pair_card import pair_fingerprint
from siamese.core.errors import ModelError, ParityError


def _metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


@pytest.mark.parametrize("which", ["image", "text"])
def test_both_towers_pass_parity_and_name_each_other(
    which: str, image_pair_export, text_pair_export
) -> None:
    report = image_pair_export if which == "image" else text_pair_export
    query, gallery = report.query, report.gallery
    assert query.path.name == "model.query.onnx" and gallery.path.name == "model.gallery.onnx"
    assert query.path.parent == gallery.path.parent
    assert query.parity.passed and gallery.parity.passed
    assert query.parity.max_abs_diff < 1e-4 and gallery.parity.max_abs_diff < 1e-4
    records = {
        role: ModelCard.from_metadata(_metadata(side.path), str(side.path)).pair
        for role, side in (("query", query), ("gallery", gallery))
    }
    q, g = records["query"], records["gallery"]
    assert q is not None and g is not None
    assert q.fingerprint == g.fingerprint == report.fingerprint
    assert (q.role, g.role) == ("query", "gallery")
    assert q.partner == g.own and g.partner == q.own and q.own != g.own
    assert q.fingerprint == pair_fingerprint(q.own, g.own)
    assert (q.partner_file, g.partner_file) == ("model.gallery.onnx", "model.query.onnx")
    assert g.partner_kind == which and q.partner_kind == "image"


def test_image_towers_keep_their_own_input_spec(image_pair_export) -> None:
    query = json.loads(_metadata(image_pair_export.query.path)["siamese.input_spec"])
    gallery = json.loads(_metadata(image_pair_export.gallery.path)["siamese.input_spec"])
    assert (query["channels"], query["height"]) == (1, 24)
    assert (gallery["channels"], gallery["height"]) == (3, 32)


def test_text_tower_carries_its_tokenizer(text_pair_export, text_pair_run: Path) -> None:
    meta = _metadata(text_pair_export.query.path)
    assert meta["siamese.kind"] == "text" and meta["siamese.max_length"] == "16"
    saved = json.loads((text_pair_run / "tokenizer.json").read_text())
    assert json.loads(meta["siamese.tokenizer"]) == saved
    inputs = [i.name for i in onnx.load(str(text_pair_export.query.path)).graph.input]
    assert inputs == ["input_ids", "attention_mask"]


def test_an_edited_pair_record_is_refused(image_pair_export) -> None:
    metadata = _metadata(image_pair_export.query.path)
    record = json.loads(metadata["siamese.pair"])
    record["partner"] = "0" * 64  # claim another gallery tower
    edited = {**metadata, "siamese.pair": json.dumps(record)}
    with pytest.raises(ModelError, match=r"^model.query.onnx: .*siamese.pair .*edited or damaged"):
        ModelCard.from_metadata(edited, "model.query.onnx")
    with pytest.raises(ModelError, match="malformed siamese metadata: siamese.pair is not JSON"):
        ModelCard.from_metadata({**metadata, "siamese.pair": "{not json"}, "model.query.onnx")


def test_parity_failure_writes_neither_file(
    image_pair_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from siamese.export import pair_export
    from siamese.export.parity import ParityReport

    def failing(*args, **kwargs) -> ParityReport:
        return ParityReport((1,), 1.0, 0.5, 1.0, False)

    monkeypatch.setattr(pair_export, "check_parity", failing)
    with pytest.raises(ParityError, match="not written"):
        pair_export.export_pair(image_pair_run, tmp_path / "model.onnx", batch_sizes=(1,))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_pair_path_rule() -> None:
    from siamese.export.pair_export import pair_paths

    assert [p.name for p in pair_paths("out/sk.onnx")] == ["sk.query.onnx", "sk.gallery.onnx"]
    assert [p.name for p in pair_paths("out/pair")] == ["pair.query.onnx", "pair.gallery.onnx"]


def test_a_single_tower_run_is_not_a_pair(trained_run: Path, image_pair_run: Path) -> None:
    from siamese.training.pair_run import is_pair_run

    assert not is_pair_run(trained_run) and is_pair_run(image_pair_run)
