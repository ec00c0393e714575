"""The training-time suite in --quick mode: a real `siamese train` process per recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
import training_time
from _harness import BenchSettings

from siamese.core.errors import ConfigError


def test_training_time_quick_measures_each_recipe_as_its_own_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(training_time, "glyph_fonts_available", lambda: False)  # no fonts needed
    settings = BenchSettings(
        quick=True,
        work_dir=tmp_path,
        options={"recipes": "default,64px", "size": "40", "images": "120"},
    )
    result = training_time.run(settings)
    assert result["data"].startswith("generated identities, 40 px, 120 images")
    default, wide = result["runs"]["default"], result["runs"]["64px"]
    assert default["input"] == "40px" and wide["input"] == "64px"  # the option reached training
    for run in (default, wide):
        assert run["epochs_run"] == 1 and run["user_seconds"] > 0 and run["minor_page_faults"] > 0
        flops = run["gflops_per_image"]["forward"] + run["gflops_per_image"]["backward"]
        expected = run["train_images_per_second"] * flops
        assert run["train_gflops_per_second"] == pytest.approx(expected, rel=0.05)
    assert wide["gflops_per_image"]["forward"] > 2 * default["gflops_per_image"]["forward"]
    assert result["wall_ratio_to_default"]["default"] == 1.0
    assert result["target"]["default wall seconds <= 600"]["met"] is True


def test_unknown_recipes_are_refused(tmp_path: Path) -> None:
    settings = BenchSettings(quick=True, work_dir=tmp_path, options={"recipes": "default,fast"})
    with pytest.raises(ConfigError, match="unknown recipe fast"):
        training_time.run(settings)


def test_the_suite_answers_to_its_hyphenated_name_as_the_docs_write_it() -> None:
    from _harness import load_suite

    assert load_suite("training-time").RECIPES == training_time.RECIPES
