"""Datasets for benchmarks: generated identities, and Fashion-MNIST from Debian's idx files.

Each dataset is an ImageFolder on disk (one folder per identity or class), so benchmarks go
through the same scanning, decoding and training code as users' data.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from siamese.demos.synthetic import SyntheticSpec, generate_identities

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)


def fashion_mnist_available() -> bool:
    """Whether Debian's dataset-fashion-mnist package is installed."""
    return all(
        (FASHION_MNIST / f"{name}.gz").is_file()
        for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    )


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) idx file: the MNIST container of uint8 arrays."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        zero, dtype_code, dims = struct.unpack(">HBB", handle.read(4))
        if zero != 0 or dtype_code != 0x08:
            raise ValueError(f"{path}: not an idx file of unsigned bytes")
        shape = struct.unpack(f">{dims}I", handle.read(4 * dims))
        return np.frombuffer(handle.read(), dtype=np.uint8).reshape(shape)


def write_image_folder(
    images: np.ndarray, labels: np.ndarray, out: Path, names: tuple[str, ...]
) -> Path:
    """Write grey images as PNGs into one folder per label; skipped when already complete."""
    marker = out / ".complete"
    if marker.exists():
        return out
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = out / names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, "L").save(folder / f"{index:05d}.png")
    marker.write_text("ok")
    return out


def fashion_mnist(
    root: Path, split: str, classes: tuple[int, ...] | None = None, per_class: int | None = None
) -> Path:
    """Fashion-MNIST's ``split`` ("train" or "t10k") as an ImageFolder.

    Optionally some classes / images per class.
    """
    images = read_idx(FASHION_MNIST / f"{split}-images-idx3-ubyte.gz")
    labels = read_idx(FASHION_MNIST / f"{split}-labels-idx1-ubyte.gz")
    keep = np.ones(len(labels), dtype=bool) if classes is None else np.isin(labels, classes)
    if per_class is not None:
        seen: dict[int, int] = {}
        for i in np.flatnonzero(keep):
            seen[labels[i]] = seen.get(labels[i], 0) + 1
            keep[i] = seen[labels[i]] <= per_class
    tag = "all" if classes is None else "-".join(map(str, classes))
    out = root / f"fashion-{split}-{tag}-{per_class or 'full'}"
    return write_image_folder(images[keep], labels[keep], out, FASHION_CLASSES)


def synthetic(root: Path, identities: int, per_identity: int, seed: int, size: int = 72) -> Path:
    """Generated identities (siamese.demos.synthetic); another seed gives other identities."""
    out = root / f"synthetic-{identities}x{per_identity}-s{seed}"
    if not (out / ".complete").exists():
        generate_identities(
            out,
            SyntheticSpec(identities=identities, images_per_identity=per_identity, size=size),
            seed=seed,
        )
        (out / ".complete").write_text("ok")
    return out


ATT_FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "att_faces"


def att_faces(
    root: Path, source: Path = ATT_FACES, unseen_fold: int = 3, folds: int = 4
) -> tuple[Path, Path]:
    """The ORL/AT&T faces (40 people × 10 grey 92×112 photos) re-split by person into folds.

    ``folds`` blocks of people (in the order s1, s2, …): block ``unseen_fold`` is tested, the others
    train. Fold 3 of 4 (s31–s40 unseen) is the suite's fixed split.
    """
    import shutil

    people = sorted(
        (p for part in ("training", "testing") for p in (source / part).iterdir() if p.is_dir()),
        key=lambda p: int(p.name[1:]),
    )
    block = len(people) // folds
    unseen_people = set(range(unseen_fold * block, (unseen_fold + 1) * block))
    tag = "att" if unseen_fold == folds - 1 else f"att-fold-{unseen_fold + 1}"
    train, unseen = root / f"{tag}-train", root / f"{tag}-unseen"
    done = root / f".{tag}-complete"
    if not done.exists():
        for index, person in enumerate(people):
            shutil.copytree(
                person,
                (unseen if index in unseen_people else train) / person.name,
                dirs_exist_ok=True,
            )
        done.write_text("ok")
    return train, unseen


GROCERY = Path(__file__).resolve().parents[2] / "shared" / "data" / "grocery"
#: Classes of the grocery photographs seen in training; the other 31 are never seen.
GROCERY_SEEN = 50


def grocery(root: Path, source: Path = GROCERY, seed: int = 0) -> tuple[Path, Path]:
    """The grocery photographs (81 classes) split by class: 50 train, 31 unseen (fixed by seed).

    Both of the source's own splits of a class go to the same side: identities never cross.
    """
    import shutil

    classes = sorted(p for p in (source / "images").iterdir() if p.is_dir())
    order = np.random.default_rng(seed).permutation(len(classes))
    seen = {classes[i].name for i in order[:GROCERY_SEEN]}
    train, unseen = root / "grocery-train", root / "grocery-unseen"
    done = root / f".grocery-{seed}-complete"
    if not done.exists():
        for folder in classes:
            target = (train if folder.name in seen else unseen) / folder.name
            shutil.copytree(folder, target, dirs_exist_ok=True)
        done.write_text("ok")
    return train, unseen
