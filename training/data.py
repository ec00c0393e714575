"""Training data: an ImageFolder decoded once into memory, and identity-level splits.

Images are decoded and resized by the foundation (siamese.data.images) that the engine also uses,
so the
pixels a tower trains on are produced by exactly the code that serves it.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from siamese.contracts.spec import InputSpec
from siamese.core.errors import DataError, ImageDecodeError
from siamese.core.progress import progress_bar
from siamese.data.image_folder import scan_image_folder
from siamese.data.images import load_pixels


@dataclass
class ImageDataset:
    """Decoded, resized images (uint8 N×H×W×C) with integer labels indexing ``identities``."""

    pixels: NDArray[np.uint8]
    labels: NDArray[np.int64]
    identities: list[str]
    paths: list[Path]
    spec: InputSpec
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, identities: list[str]) -> ImageDataset:
        """The images of the given identities, relabelled 0..len(identities)-1."""
        wanted = {name: new for new, name in enumerate(identities)}
        old_to_new = np.array([wanted.get(name, -1) for name in self.identities], dtype=np.int64)
        keep = np.flatnonzero(old_to_new[self.labels] >= 0)
        rows = self.rows(keep)
        rows.labels, rows.identities = old_to_new[rows.labels], list(identities)
        return rows

    def rows(self, indices: NDArray[np.int64]) -> ImageDataset:
        """The images at ``indices``, labels unchanged."""
        return ImageDataset(
            self.pixels[indices],
            self.labels[indices],
            self.identities,
            [self.paths[i] for i in indices],
            self.spec,
        )


def _decode_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def load_image_folder(
    root: str | os.PathLike[str], spec: InputSpec, *, progress: bool = False
) -> ImageDataset:
    """Decode every image of an ImageFolder at the spec's size; unreadable files are skipped.

    Raises:
        DataError: no folder, no images, or fewer than two identities with a readable image.
    """
    items = scan_image_folder(root)
    results: list[NDArray[np.uint8] | ImageDecodeError] = []

    def load(path: Path) -> NDArray[np.uint8] | ImageDecodeError:
        try:
            return load_pixels(path, spec)
        except ImageDecodeError as exc:
            return exc

    with (
        progress_bar("decoding images", len(items), progress) as ticker,
        ThreadPoolExecutor(_decode_threads()) as pool,
    ):
        for result in pool.map(load, (item.path for item in items)):
            results.append(result)
            ticker.advance()

    skipped = [(err.path, err.reason) for err in results if isinstance(err, ImageDecodeError)]
    good = [
        (item, pix) for item, pix in zip(items, results) if not isinstance(pix, ImageDecodeError)
    ]
    identities = sorted({item.identity for item, _ in good})
    if len(identities) < 2:
        raise DataError(
            f"{root}: need at least two identities with readable images, found {len(identities)}"
        )
    index = {name: i for i, name in enumerate(identities)}
    return ImageDataset(
        pixels=np.stack([pix for _, pix in good]),
        labels=np.array([index[item.identity] for item, _ in good], dtype=np.int64),
        identities=identities,
        paths=[item.path for item, _ in good],
        spec=spec,
        skipped=skipped,
    )


@dataclass(frozen=True)
class FolderLook:
    """What a sample of a folder's images looks like: what a recipe is chosen from."""

    images: int
    longer_side: int  # median longer side, pixels (0 when nothing could be read)
    colour: bool  # most sampled images have channels that differ (not grey stored as RGB)


def look_at_folder(
    root: str | os.PathLike[str], sample: int = 48, *, colour: bool = True
) -> FolderLook:
    """Size (read from headers) and, unless ``colour=False``, colour of a fixed sample of images.

    A grey photo saved as RGB counts as grey: colour means the channels really differ, so a
    tower is not given three copies of one channel to learn from.
    """
    items = scan_image_folder(root)
    picks = np.random.default_rng(0).choice(len(items), size=min(sample, len(items)), replace=False)
    sides, colourful = [], []
    for i in picks:
        try:
            side, is_colour = _look_at_image(items[i].path, colour)
        except (OSError, ValueError):
            continue
        sides.append(side)
        colourful.append(is_colour)
    longer = int(np.median(sides)) if sides else 0
    return FolderLook(len(items), longer, bool(colourful) and np.mean(colourful) > 0.5)


def _look_at_image(path: str | os.PathLike[str], colour: bool) -> tuple[int, bool]:
    from PIL import Image

    with Image.open(path) as image:
        side = max(image.size)
        if not colour or image.mode in ("1", "L", "LA", "I", "I;16", "F"):
            return side, False
        image.draft("RGB", (64, 64))  # a reduced JPEG decode is plenty to tell colour
        thumb = np.asarray(image.convert("RGB").resize((32, 32)), dtype=np.int16)
    spread = np.abs(thumb[..., 0] - thumb[..., 1]) + np.abs(thumb[..., 1] - thumb[..., 2])
    return side, float(spread.mean()) > 4.0


def typical_image_size(root: str | os.PathLike[str], sample: int = 64) -> int:
    """Median longer side of a sample of the folder's images, read from headers only."""
    return look_at_folder(root, sample, colour=False).longer_side


def split_identities(
    identities: list[str], val_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Split identities (never images) into training and validation sets, reproducibly.

    Validation needs at least two identities and training keeps at least two; with too few
    identities the validation set is empty.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"validation fraction must be in [0, 1), got {val_fraction}")
    n_val = round(len(identities) * val_fraction)
    if n_val < 2 or len(identities) - n_val < 2:
        return list(identities), []
    order = np.random.default_rng(seed).permutation(len(identities))
    val = sorted(identities[i] for i in order[:n_val])
    train = sorted(identities[i] for i in order[n_val:])
    return train, val
