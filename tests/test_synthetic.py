"""The synthetic identity generator: layout, determinism, and that raw pixels cannot solve it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from siamese.demos.synthetic import SyntheticSpec, generate_identities


def test_layout_formats_and_determinism(tmp_path: Path) -> None:
    spec = SyntheticSpec(identities=3, images_per_identity=4, size=32)
    a = generate_identities(tmp_path / "a", spec, seed=5)
    b = generate_identities(tmp_path / "b", spec, seed=5)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert [str(f) for f in files[:4]] == [
        "id_000/000.png",
        "id_000/001.jpg",
        "id_000/002.png",
        "id_000/003.jpg",
    ]
    assert len(files) == 12
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    with Image.open(a / files[0]) as image:
        assert image.size == (32, 32) and image.mode == "L"


def test_views_of_one_identity_differ(tmp_path: Path) -> None:
    root = generate_identities(
        tmp_path,
        SyntheticSpec(identities=1, images_per_identity=2, size=48, formats=("png",)),
        seed=1,
    )
    first, second = (
        np.asarray(Image.open(p), dtype=np.float32) for p in sorted(root.rglob("*.png"))
    )
    assert np.abs(first - second).mean() > 10  # pose and lighting change the pixels substantially


def test_rgb_variant(tmp_path: Path) -> None:
    root = generate_identities(
        tmp_path,
        SyntheticSpec(identities=1, images_per_identity=1, size=24, rgb=True, formats=("png",)),
    )
    with Image.open(next(root.rglob("*.png"))) as image:
        assert image.mode == "RGB"
