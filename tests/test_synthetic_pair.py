"""The two-domain generator and captions files: layout, determinism, captions from the scene."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from siamese.core.errors import DataError
from siamese.data.captions import read_captions
from siamese.demos.synthetic import COLOURS, KINDS, PairSpec, generate_pair_identities


def test_two_domains_share_identities_and_captions_describe_them(tmp_path: Path) -> None:
    spec = PairSpec(identities=5, photos_per_identity=2, sketches_per_identity=2, photo_only=1)
    a = generate_pair_identities(tmp_path / "a", spec, seed=3)
    b = generate_pair_identities(tmp_path / "b", spec, seed=3)
    photos = sorted(p.name for p in a.photos.iterdir())
    sketches = sorted(p.name for p in a.sketches.iterdir())
    assert photos == [f"id_{i:03d}" for i in range(5)]
    assert sketches == photos[:4]  # the last identity is photo-only
    for file in sorted(a.photos.rglob("*.png")) + sorted(a.sketches.rglob("*.png")):
        assert (
            file.read_bytes() == (b.photos.parent / file.relative_to(a.photos.parent)).read_bytes()
        )
    with Image.open(a.photos / "id_000" / "000.png") as photo:
        assert photo.mode == "RGB" and photo.size == (96, 96)
    with Image.open(a.sketches / "id_000" / "000.png") as sketch:
        assert sketch.mode == "L" and sketch.size == (64, 64)
    captions = read_captions(a.captions)
    assert len(captions) == 4 * spec.captions_per_identity
    words = {w for kind in KINDS.values() for w in kind}
    for caption in captions:
        assert any(colour in caption.text for colour in COLOURS)
        assert any(word in caption.text for word in words)
    texts = {c.text for c in captions}
    assert len(texts) > len(captions) // 2  # phrasings vary


def test_existing_generator_output_is_unchanged(tmp_path: Path) -> None:
    """The single-domain generator still writes the very bytes it wrote before this feature."""
    from siamese.demos.synthetic import SyntheticSpec, generate_identities

    root = generate_identities(tmp_path, SyntheticSpec(identities=1, images_per_identity=1), 0)
    pixels = np.asarray(Image.open(root / "id_000" / "000.png"))
    assert pixels.shape == (72, 72) and int(pixels.sum()) == 394610


def test_captions_jsonl_and_path_records(tmp_path: Path) -> None:
    lines = [
        {"path": "photos/id_001/000.png", "text": "a red disc"},
        {"identity": "id_002", "text": " a blue box "},
    ]
    file = tmp_path / "c.jsonl"
    file.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    first, second = read_captions(file)
    assert (first.identity, first.path) == ("id_001", str(tmp_path / "photos/id_001/000.png"))
    assert (second.identity, second.text, second.path) == ("id_002", "a blue box", None)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("c.csv", "who,text\nx,y\n", "needs a header"),
        ("c.csv", "identity,text\nid_1,\n", "line 2 has no text"),
        ("c.jsonl", '{"text": "x"}\n', "names neither"),
        ("c.jsonl", "[1]\n", "not a JSON object"),
        ("c.jsonl", "{oops\n", "not JSON"),
        ("c.csv", "identity,text\n", "no captions"),
    ],
)
def test_bad_captions_files_are_one_line_errors(
    tmp_path: Path, name: str, content: str, problem: str
) -> None:
    file = tmp_path / name
    file.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=problem) as caught:
        read_captions(file)
    assert str(file) in str(caught.value) and "\n" not in str(caught.value)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=300), jsonl=st.booleans())
def test_any_bytes_give_captions_or_a_data_error(tmp_path: Path, data: bytes, jsonl: bool) -> None:
    file = tmp_path / ("c.jsonl" if jsonl else "c.csv")
    file.write_bytes(data)
    try:
        captions = read_captions(file)
    except DataError as exc:
        assert str(file) in str(exc)
    else:
        assert all(c.text and c.identity for c in captions)
