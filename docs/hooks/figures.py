"""MkDocs hook: every figure of the docs, rendered from benchmarks/results/ at build time.

A page says ``<!-- figure: NAME -->`` and gets the table or plot NAME from
``benchmarks/doc_figures.py``, with the results file, date, machine and settings under it. A
marker naming no figure, or a figure whose results file is missing, fails the build. Plots are
copied from benchmarks/results/ into the site under ``figures/``.
"""

from __future__ import annotations

import importlib.util
import posixpath
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]


def _figures() -> ModuleType:
    """benchmarks/doc_figures.py (the benchmarks are a folder of the checkout, not a package)."""

    name = "siamese_doc_figures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "doc_figures.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def on_files(files: Any, config: Any) -> Any:
    """Add the plots the figures show, as generated files of the site."""

    for name, source in _figures().assets_used().items():
        files.append(File.generated(config, f"figures/{name}", abs_src_path=str(source)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Expand the page's figure markers, with plots linked relative to the page."""

    depth = posixpath.dirname(page.file.src_uri)
    assets = posixpath.relpath("figures", depth or ".") + "/"
    return _figures().expand(markdown, assets=assets)
