"""Scanning ImageFolder-style datasets: one sub-folder per identity, images inside.

Shared by training (which needs identities with several images) and gallery building (which
also accepts loose files in the root, each its own identity named after the file stem).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image

from siamese.errors import DataError


@dataclass(frozen=True)
class LabelledImage:
    """An image file and the identity it shows."""

    path: Path
    identity: str


@lru_cache(maxsize=1)
def image_extensions() -> frozenset[str]:
    """Lower-case file extensions Pillow can open on this installation (".png", ".pgm", …)."""
    Image.init()
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def is_image_file(path: Path) -> bool:
    """True for non-hidden files whose extension Pillow can open."""
    return not path.name.startswith(".") and path.suffix.lower() in image_extensions()


def _images_under(folder: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / name for name in sorted(filenames) if is_image_file(Path(name)))
    return found


def _require_folder(root: Path) -> None:
    if not root.exists():
        raise DataError(f"{root}: folder not found")
    if not root.is_dir():
        raise DataError(f"{root}: expected a folder of images, got a file")


def scan_image_folder(root: str | os.PathLike[str], *, loose_files: bool = False) -> list[LabelledImage]:
    """List the images of an ImageFolder, labelled by their first-level sub-folder name.

    Args:
        root: the dataset folder.
        loose_files: also take image files directly inside ``root``, each as its own identity
            named after the file stem (handy for galleries of one photo per person).

    Returns:
        Labelled images sorted by identity, then path (deterministic across machines).

    Raises:
        DataError: the folder is missing, is a file, or holds no readable image files.
    """
    root = Path(root)
    _require_folder(root)
    items: list[LabelledImage] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            items.extend(LabelledImage(path, entry.name) for path in _images_under(entry))
        elif loose_files and is_image_file(entry):
            items.append(LabelledImage(entry, entry.stem))
    if not items:
        layout = "one sub-folder per identity" + (" or image files" if loose_files else "")
        raise DataError(
            f"{root}: no images found (expected {layout} holding "
            f"{', '.join(sorted(ext for ext in image_extensions() if ext in _COMMON))} files)"
        )
    return sorted(items, key=lambda item: (item.identity, str(item.path)))


_COMMON = {".png", ".jpg", ".jpeg", ".pgm", ".bmp", ".webp", ".tif", ".tiff"}


def list_image_paths(paths: list[str | os.PathLike[str]]) -> list[Path]:
    """Expand a list of files and folders (searched recursively) into image paths, in order."""
    result: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            result.extend(_images_under(path))
        else:
            result.append(path)
    return result
