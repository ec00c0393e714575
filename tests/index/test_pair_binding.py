"""A gallery built with a pair's gallery tower: records the pair, accepts its query tower only."""

from __future__ import annotations

from pathlib import Path

import pytest

from siamese.core.errors import GalleryError, ModelMismatchError


def test_the_manifest_records_the_pair(text_pair_gallery: Path, text_pair_export) -> None:
    from siamese.index import Gallery
    from siamese.index.store.manifest import Manifest

    manifest = Manifest.read(text_pair_gallery)
    assert manifest.pair == {
        "fingerprint": text_pair_export.fingerprint,
        "query_model": str(text_pair_export.query.path.resolve()),
        "query_kind": "text",
        "query_tower": manifest.pair["query_tower"],
    }
    assert manifest.model_fingerprint == text_pair_export.gallery.fingerprint
    assert Gallery.query_model(text_pair_gallery) == text_pair_export.query.path.resolve()


def test_the_pairs_query_tower_and_its_gallery_tower_are_accepted(
    text_pair_gallery: Path, text_pair_export
) -> None:
    from siamese.engine import open_query_embedder
    from siamese.index import Gallery

    for path in (text_pair_export.query.path, text_pair_export.gallery.path):
        embedder = open_query_embedder(path, device="cpu")
        with Gallery.open(
            text_pair_gallery, model_fingerprint=embedder.fingerprint, model_pair=embedder.pair
        ) as gallery:
            assert len(gallery) > 0


def test_another_pairs_query_tower_is_refused_naming_both_pairs(
    text_pair_gallery: Path, text_pair_export, image_pair_export
) -> None:
    from siamese.engine import Embedder
    from siamese.index import Gallery

    other = Embedder(image_pair_export.query.path, device="cpu")
    with pytest.raises(ModelMismatchError) as caught:
        Gallery.open(text_pair_gallery, model_fingerprint=other.fingerprint, model_pair=other.pair)
    message = str(caught.value)
    assert text_pair_export.fingerprint[:16] in message
    assert image_pair_export.fingerprint[:16] in message
    assert "query tower" in message and str(text_pair_export.query.path.resolve()) in message


def test_a_single_model_is_refused_naming_both(
    text_pair_gallery: Path, text_pair_export, tiny_model_path: Path
) -> None:
    from siamese.engine import Embedder
    from siamese.index import Gallery

    single = Embedder(tiny_model_path, device="cpu")
    with pytest.raises(ModelMismatchError, match="not part of a pair") as caught:
        Gallery.open(text_pair_gallery, model_fingerprint=single.fingerprint, model_pair=None)
    assert text_pair_export.fingerprint[:16] in str(caught.value)
    assert single.fingerprint[:16] in str(caught.value)


def test_another_pairs_gallery_tower_is_refused(text_pair_gallery: Path, image_pair_export) -> None:
    """The gallery tower of another pair (role gallery) is refused, like any other model."""
    from siamese.engine import Embedder
    from siamese.index import Gallery

    other_gallery = Embedder(image_pair_export.gallery.path, device="cpu")
    with pytest.raises(ModelMismatchError, match="the gallery tower of pair"):
        Gallery.open(
            text_pair_gallery,
            model_fingerprint=other_gallery.fingerprint,
            model_pair=other_gallery.pair,
        )


def test_a_query_tower_cannot_build_a_gallery(
    image_pair_export, pair_dataset, tmp_path: Path
) -> None:
    from siamese.engine import Embedder
    from siamese.index import Gallery

    with pytest.raises(GalleryError, match="build the gallery with its gallery tower"):
        Gallery.build(
            pair_dataset.sketches,
            Embedder(image_pair_export.query.path, device="cpu"),
            tmp_path / "g",
        )
    assert not (tmp_path / "g").exists()


def test_a_missing_query_tower_is_one_clear_error(
    text_pair_gallery: Path, text_pair_export, tmp_path: Path
) -> None:
    import shutil

    from siamese.index import Gallery

    copy = tmp_path / "copy"
    shutil.copytree(text_pair_gallery, copy)
    moved = text_pair_export.query.path.with_suffix(".moved")
    text_pair_export.query.path.rename(moved)
    try:
        with pytest.raises(GalleryError, match=r"no longer there; name the model \(model PATH\)"):
            Gallery.query_model(copy)
    finally:
        moved.rename(text_pair_export.query.path)


def test_index_add_without_model_uses_the_gallery_tower(
    text_pair_gallery: Path, pair_dataset, tmp_path: Path
) -> None:
    import shutil

    from typer.testing import CliRunner

    from siamese.cli import app
    from siamese.index import Gallery

    copy = Path(shutil.copytree(text_pair_gallery, tmp_path / "copy"))
    with Gallery.open(copy) as gallery:
        before = len(gallery)
    from PIL import Image, ImageOps

    photo = tmp_path / "new.png"  # an image the gallery does not hold yet
    ImageOps.mirror(Image.open(pair_dataset.photos / "id_001" / "001.png")).save(photo)
    done = CliRunner().invoke(
        app, ["index", "add", "--gallery", str(copy), str(photo), "--identity", "id_x"]
    )
    assert done.exit_code == 0, done.output
    with Gallery.open(copy) as gallery:
        assert len(gallery) == before + 1
