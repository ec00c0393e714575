"""`siamese demo --pair` end to end on a tiny configuration: both pairs, real figures."""

from __future__ import annotations

import json
from pathlib import Path


def test_pair_demo_runs_end_to_end(tmp_path: Path) -> None:
    from siamese.demos.pair import PairDemoConfig, run_pair_demo

    config = PairDemoConfig(
        out_dir=str(tmp_path / "demo"),
        train_identities=12,
        unseen_identities=5,
        photos_per_identity=2,
        sketches_per_identity=2,
        captions_per_identity=2,
        photo_size=32,
        sketch_size=24,
        epochs=1,
        steps_per_epoch=2,
    )
    lines: list[str] = []
    report = run_pair_demo(config, progress=False, log=lines.append)
    assert report.sketch_queries == 10 and report.text_queries == 10
    for value in (report.sketch_top1, report.text_top1, report.sketch_top5, report.text_top5):
        assert 0.0 <= value <= 1.0
    assert report.sketch_top5 >= report.sketch_top1 and report.text_top5 >= report.text_top1
    assert report.chance_top1 == 0.2
    saved = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert saved["text_queries"] == 10 and Path(saved["matches_png"]).is_file()
    assert any("text → photo pair" in line for line in lines)
    for name in ("sketch.query.onnx", "sketch.gallery.onnx", "text.query.onnx"):
        assert (tmp_path / "demo" / name).is_file()
