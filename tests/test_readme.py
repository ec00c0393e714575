"""The README's Python API example runs as written against a real model and gallery."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_api_example(
    tiny_model_path: Path,
    unseen_dataset: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from siamese.engine import Embedder
    from siamese.index import Gallery

    (block,) = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    shutil.copy(tiny_model_path, tmp_path / "model.onnx")
    Gallery.build(unseen_dataset, Embedder(tmp_path / "model.onnx"), tmp_path / "gallery")
    shutil.copy(next((unseen_dataset / "id_003").iterdir()), tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    # exec is the point of this test: it runs the README's own example, as a reader would.
    exec(compile(block, str(README), "exec"), {})  # noqa: S102
    assert capsys.readouterr().out.startswith("photo.jpg -> id_003 0.0")


def test_readme_commands_exist() -> None:
    from typer.testing import CliRunner

    from siamese.cli import app

    text = README.read_text()
    for command in re.findall(r"^siamese ((?:index )?[a-z]+)", text, flags=re.MULTILINE):
        result = CliRunner().invoke(app, [*command.split(), "--help"])
        assert result.exit_code == 0 and f"Usage: siamese {command} " in result.stdout, command


def test_readme_is_short_and_user_facing() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 320, "README.md grew past 320 lines: move detail into docs/"
    found = re.search(r"\bissues? #?\d+", text, flags=re.IGNORECASE)
    assert found is None, f"internal issue number in README.md: {found.group(0)!r}"


def test_readme_figures_match_the_results_files() -> None:
    import doc_figures

    text = README.read_text()
    assert doc_figures.BLOCK.search(text), "README.md has no figure rendered from results"
    assert doc_figures.sync_readme(text) == text, (
        "README.md's figures differ from benchmarks/results: python benchmarks/doc_figures.py "
        "--readme"
    )


def test_readme_links_point_at_files() -> None:
    text = README.read_text()
    for target in re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)", text):
        assert (README.parent / target).is_file(), target
