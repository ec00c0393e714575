"""The documentation site builds strictly, and every figure in it comes from a results file.

CI runs the README's test command, so this is where the site is built as CI builds it:
``mkdocs build --strict`` fails on a broken link, a missing page in the nav, an unresolvable
API reference or a figure marker with no results file behind it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
ISSUE_NUMBER = re.compile(r"\bissues? #?\d+", re.IGNORECASE)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module the way CI builds it."""

    out = tmp_path_factory.mktemp("site")
    # Not -q: it silences warnings before strict mode can count them, and the build passes.
    command = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    command += ["-f", str(ROOT / "mkdocs.yml"), "-d", str(out)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        command, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    problems = "\n".join(
        line for line in done.stderr.splitlines() if "WARNING" in line or "ERROR" in line
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{problems or done.stderr}"
    return out


def _built(site: Path, page: Path) -> Path:
    """The HTML file MkDocs writes for a Markdown page (directory URLs)."""

    relative = page.relative_to(DOCS)
    folder = relative.parent if page.stem == "index" else relative.with_suffix("")
    return site / folder / "index.html"


def _text(page: Path) -> str:
    return re.sub(r"<[^>]+>", " ", page.read_text())


def test_every_figure_in_the_site_names_its_results_file(site: Path) -> None:
    import doc_figures

    markers = {
        name: page
        for page in DOCS.rglob("*.md")
        for name in doc_figures.MARKER.findall(page.read_text())
    }
    assert markers, "no figure markers in docs/"
    for name, page in markers.items():
        built = site / page.relative_to(DOCS).with_suffix("") / "index.html"
        built = (
            built if page.stem != "index" else site / page.relative_to(DOCS).parent / "index.html"
        )
        html = built.read_text()
        assert "<!-- figure:" not in html, f"{page}: a marker was left unexpanded"
        for results_file in doc_figures.FIGURES[name].sources():
            assert f"benchmarks/results/{results_file}" in html, (name, results_file)
    for picture in doc_figures.PICTURES:
        assert (site / "figures" / picture).is_file(), picture


def test_the_cli_reference_lists_every_visible_command(site: Path) -> None:
    import typer

    from siamese.cli import app

    root = typer.main.get_command(app)
    text = _text(site / "reference" / "cli" / "index.html")
    for name, command in root.commands.items():
        if command.hidden:
            continue
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            assert f"siamese {name}" in text, name
            continue
        for sub, subcommand in subcommands.items():
            if not subcommand.hidden:
                assert f"siamese {name} {sub}" in text, (name, sub)
    assert "--identities-per-batch" in text and "--max-memory" in text


def test_the_api_reference_is_rendered_from_docstrings(site: Path) -> None:
    text = _text(site / "reference" / "api" / "index.html")
    for name in ("Embedder", "GalleryReader", "GalleryWriter", "TrainConfig", "export_onnx"):
        assert re.search(rf"\b{name}\b", text), name
    assert "Embeds images with an exported siamese model" in text  # Embedder's own docstring


def test_no_internal_issue_numbers_in_the_site(site: Path) -> None:
    for page in site.rglob("*.html"):
        found = ISSUE_NUMBER.search(_text(page))
        assert found is None, f"{page.relative_to(site)}: {found.group(0)!r}"


def test_a_figure_marker_naming_no_figure_fails() -> None:
    import doc_figures

    with pytest.raises(KeyError, match="unknown figure 'no-such-figure'"):
        doc_figures.expand("text\n<!-- figure: no-such-figure -->\n")


def test_a_missing_results_file_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import doc_figures

    monkeypatch.setattr(doc_figures, "RESULTS", tmp_path)
    doc_figures.load.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="results file missing"):
            doc_figures.render("grocery")
    finally:
        doc_figures.load.cache_clear()


def test_stale_figures_say_so() -> None:
    import doc_figures

    stale = [name for name, figure in doc_figures.FIGURES.items() if figure.stale]
    assert stale
    for name in stale:
        assert "Stale" in doc_figures.render(name)


def test_a_suite_figure_follows_its_newest_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import json

    import doc_figures

    def record(seconds: float) -> dict[str, object]:
        return {
            "command": 'pip install "siamese[cpu]"',
            "install_s": seconds,
            "du_sh": "321M",
            "size_gib": 0.31,
            "distributions": 40,
            "torch_importable": False,
            "onnxruntime_builds": ["onnxruntime"],
        }

    for stamp, seconds in (("20261201T000000Z", 11.0), ("20261207T000000Z", 22.0)):
        run = {
            "suite": "install_profiles",
            "started": f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T00:00:00+00:00",
            "machine": {"cpu": "test CPU", "cores": 2},
            "settings": {"options": {}, "quick": False},
            "results": {"profiles": [record(seconds)]},
        }
        (tmp_path / f"install_profiles-{stamp}.json").write_text(json.dumps(run))
    monkeypatch.setattr(doc_figures, "RESULTS", tmp_path)
    doc_figures.load.cache_clear()
    try:
        text = doc_figures.render("install-profiles")
    finally:
        doc_figures.load.cache_clear()
    assert "install_profiles-20261207T000000Z.json" in text and "| 22 |" in text
    assert "20261201" not in text and "2026-12-07 00:00 UTC, test CPU, 2 cores" in text
