"""MkDocs hook: let mkdocstrings read the package as it is laid out once installed.

The stages live in top-level folders (training/, engine/, index/…) that install as
``siamese.training``, ``siamese.engine``… through pyproject's ``package-dir``. Griffe, which
mkdocstrings uses to read the sources without importing them, does not follow that mapping, so
this hook mirrors the installed layout with symbolic links in a temporary folder and points the
Python handler at it. Nothing is copied and nothing in the checkout changes.
"""

from __future__ import annotations

import atexit
import importlib.util
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parents[2]
#: Sphinx roles in the docstrings (``:meth:`open```), which mkdocstrings leaves as text.
_SPHINX_ROLE = re.compile(r":(?:meth|class|func|attr|mod|exc|data|obj):(?=<code>)")


def mirror_installed_layout(destination: Path) -> Path:
    """Link every package folder to where it lands once installed; returns ``destination``.

    A top-level folder of the checkout is a stage when the installed ``siamese.<folder>``
    resolves to it (pyproject's ``package-dir``, as the editable install maps it).
    """

    top = destination / "siamese"
    top.mkdir(parents=True)
    stages = {
        folder.name: folder
        for folder in ROOT.iterdir()
        if (folder / "__init__.py").is_file() and _installed_at(f"siamese.{folder.name}", folder)
    }
    for child in (ROOT / "siamese").iterdir():
        if child.name not in stages and child.name != "__pycache__":
            (top / child.name).symlink_to(child)
    for name, folder in stages.items():
        (top / name).symlink_to(folder)
    return destination


def _installed_at(module: str, folder: Path) -> bool:
    spec = importlib.util.find_spec(module)
    locations = spec.submodule_search_locations if spec else None
    return bool(locations) and Path(next(iter(locations))).resolve() == folder.resolve()


@event_priority(100)  # before mkdocstrings reads its handlers' configuration
def on_config(config: Any) -> Any:
    """Point mkdocstrings' Python handler at a mirror of the installed layout."""

    folder = Path(tempfile.mkdtemp(prefix="siamese-docs-api-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    mirror = mirror_installed_layout(folder)
    handlers = config["plugins"]["mkdocstrings"].config["handlers"]
    handlers.setdefault("python", {})["paths"] = [str(mirror)]
    return config


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """Drop the Sphinx role prefixes docstrings use; the name stays, set as code."""

    return _SPHINX_ROLE.sub("", html)
