"""Scanning ImageFolder-style datasets: one sub-folder per identity, images inside.

Shared by training (which needs identities with several images) and gallery building (which
also accepts loose files in the root, each its own identity named after the file stem). Only
extensions of the decoder's allowed formats count as images; files named like another image
format (.psd, .eps, .ico…) are listed as refused so a gallery build can report them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from PIL import Image

from siamese.core.errors import DataError


@dataclass(frozen=True)
class LabelledImage:
    """An image file and the identity it shows."""

    path: Path
    identity: str


@dataclass
class FolderScan:
    """The images of a folder, and the files named like images of a format that is not allowed."""

    images: list[LabelledImage] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


@lru_cache(maxsize=1)
def _extension_formats() -> dict[str, str]:
    Image.init()
    return {
        ext.lower(): fmt for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN
    }


@lru_cache(maxsize=1)
def image_extensions() -> frozenset[str]:
    """Lower-case extensions of the formats the decoder allows (".png", ".jpg", ".pgm", …)."""
    from siamese.data.images import ALLOWED_FORMATS

    return frozenset(ext for ext, fmt in _extension_formats().items() if fmt in ALLOWED_FORMATS)


def is_image_file(path: Path) -> bool:
    """True for non-hidden files with the extension of an allowed image format."""
    return not path.name.startswith(".") and path.suffix.lower() in image_extensions()


def _refusal(path: Path) -> str | None:
    """Why a file named like an image of a format outside the allow-list is refused, else None."""
    fmt = _extension_formats().get(path.suffix.lower())
    if path.name.startswith(".") or fmt is None or path.suffix.lower() in image_extensions():
        return None
    return f"format {fmt} ({path.suffix}) is not allowed"


def _scan_files(
    folder: Path,
    scan: FolderScan,
    identity: str | None,
    above: frozenset[tuple[int, int]] = frozenset(),
) -> list[Path]:
    """Image files under ``folder``, in walk order; links to folders are followed, loops are not.

    A link back to a folder on the current path (a loop) is refused with a reason instead of
    being followed forever, and an unreadable folder is refused instead of silently skipped.
    Nothing here opens a file: what a name turns out to be is checked before it is read.
    """
    found: list[Path] = []
    stack = [(folder, above)]
    while stack:
        directory, ancestors = stack.pop()
        try:
            info = os.stat(directory)
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            scan.refused.append((str(directory), f"cannot read folder ({exc.strerror or exc})"))
            continue
        here = ancestors | {(info.st_dev, info.st_ino)}
        subfolders = []
        for entry in entries:
            path = Path(directory) / entry.name
            if _is_dir(entry):
                if not entry.name.startswith("."):
                    subfolders.append(path)
            elif is_image_file(path):
                found.append(path)
            elif (reason := _refusal(path)) is not None:
                scan.refused.append((str(path), reason))
        for path in reversed(subfolders):  # popped in name order, like os.walk's top-down walk
            try:
                target = os.stat(path)
            except OSError as exc:
                scan.refused.append((str(path), f"cannot read folder ({exc.strerror or exc})"))
                continue
            if (target.st_dev, target.st_ino) in here:
                scan.refused.append(
                    (str(path), "symbolic link loop (leads back to a folder that contains it)")
                )
                continue
            stack.append((path, here))
    if identity is not None:
        scan.images.extend(LabelledImage(path, identity) for path in found)
    return found


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """A folder, or a link to one.

    A link loop or an unreadable entry is not (it is checked later).
    """
    try:
        return entry.is_dir()
    except OSError:
        return False


def _images_under(folder: Path) -> list[Path]:
    return _scan_files(folder, FolderScan(), None)


def _require_folder(root: Path) -> None:
    if not root.exists():
        raise DataError(f"{root}: folder not found")
    if not root.is_dir():
        raise DataError(f"{root}: expected a folder of images, got a file")


def scan_gallery_folder(root: str | os.PathLike[str], *, loose_files: bool = True) -> FolderScan:
    """Like :func:`scan_image_folder`, also listing refused files.

    An empty folder is not an error here.
    """
    root = Path(root)
    _require_folder(root)
    scan = FolderScan()
    info = root.stat()
    above = frozenset({(info.st_dev, info.st_ino)})
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            target = entry.stat()
            if (target.st_dev, target.st_ino) in above:
                scan.refused.append(
                    (str(entry), "symbolic link loop (leads back to a folder that contains it)")
                )
                continue
            _scan_files(entry, scan, entry.name, above)
        elif loose_files and is_image_file(entry):
            scan.images.append(LabelledImage(entry, entry.stem))
        elif loose_files and (reason := _refusal(entry)) is not None:
            scan.refused.append((str(entry), reason))
    scan.images.sort(key=lambda item: (item.identity, str(item.path)))
    return scan


def scan_image_folder(
    root: str | os.PathLike[str], *, loose_files: bool = False
) -> list[LabelledImage]:
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
    items = scan_gallery_folder(root, loose_files=loose_files).images
    if not items:
        layout = "one sub-folder per identity" + (" or image files" if loose_files else "")
        raise DataError(
            f"{root}: no images found (expected {layout} holding "
            f"{', '.join(sorted(ext for ext in image_extensions() if ext in _COMMON))} files)"
        )
    return items


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
