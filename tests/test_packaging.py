"""Packaging: the wheel installs only `siamese/…`; the stage folders are not top-level modules."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_holds_only_the_siamese_package(tmp_path: Path) -> None:
    import shutil

    source = (
        tmp_path / "source"
    )  # build from a copy: setuptools leaves build/ behind in the tree it builds
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".ci", "*venv*", "build", "*.egg-info", "__pycache__", ".bench-work", "results"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("siamese-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"siamese", next(n for n in top_level if n.endswith(".dist-info"))}
    for module in (
        "training/trainer.py",
        "export/onnx_export.py",
        "engine/embedder.py",
        "index/gallery.py",
        "cli/main.py",
        "evaluation/evaluate.py",
        "data/images.py",
        "core/errors.py",
        "core/extras.py",
        "engine/runtime_builds.py",
        "contracts/spec.py",
        "demos/pipeline.py",
        "galleries.py",
        "training/towers/registry.py",
        "index/store/manifest.py",
        "index/search/faiss_index.py",
        "index/ondisk/build.py",
        "index/updates/writer.py",
        "service/app.py",
        "service/static/index.html",
        "service/static/app.js",
        "service/static/style.css",
        "service/static/favicon.svg",
    ):
        assert f"siamese/{module}" in names
    assert not any(name.startswith(("tests/", "benchmarks/")) for name in names)
    entry_points = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith("entry_points.txt")))
        .decode()
    )
    assert "siamese = siamese.cli:app" in entry_points
    _check_profiles(zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))))


def _check_profiles(metadata: bytes) -> None:
    """The built metadata: no PyTorch or onnxruntime in the base, each runtime in one extra."""
    requires = [
        line.split(":", 1)[1].strip()
        for line in metadata.decode().splitlines()
        if line.startswith("Requires-Dist:")
    ]
    base = [r for r in requires if "extra ==" not in r]
    assert not [r for r in base if r.startswith(("torch", "onnxruntime"))], base
    for build, extra in (("onnxruntime", "cpu"), ("onnxruntime-gpu", "gpu")):
        naming = [r for r in requires if r.split(";")[0].split("[")[0].split(">")[0] == build]
        assert len(naming) == 1 and f'extra == "{extra}"' in naming[0], naming


def test_stage_folders_are_not_top_level_modules(tmp_path: Path) -> None:
    code = (
        "import importlib\n"
        "for name in ('training', 'export', 'engine', 'index', 'service'):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError:\n"
        "        continue\n"
        "    raise SystemExit(f'{name} is importable at top level')\n"
        "import siamese.training, siamese.export, siamese.engine, siamese.index, siamese.service\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)
