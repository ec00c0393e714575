"""The public gallery API on its own.

No engine, a watch for other writers, uploads, one-way imports.

The index needs from an embedder only what :class:`siamese.index.Embeds` names, so a stand-in
that hashes file bytes drives a whole lifecycle without a model. Uploads are stored under
``uploads/`` whatever the identity; index/ imports neither the engine nor itself in a circle.
"""

from __future__ import annotations

import ast
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import siamese.index
from siamese.core.errors import DataError
from siamese.index import Embeds, Gallery

_DIM = 8


@dataclass
class _Batch:
    embeddings: np.ndarray
    paths: list[str]
    failures: list[tuple[str, str]]


class _HashEmbedder:
    """Vectors from file bytes; a file whose bytes start with b"bad" cannot be embedded."""

    dim = _DIM
    fingerprint = "ab" * 32

    def __init__(self, model_path: Path) -> None:
        self.model_path = model_path

    def iter_embed_paths(self, paths: list[str]) -> Iterator[_Batch]:
        for start in range(0, len(paths), 3):
            batch = _Batch(np.zeros((0, _DIM), np.float32), [], [])
            for path in paths[start : start + 3]:
                data = Path(path).read_bytes()
                if data.startswith(b"bad"):
                    batch.failures.append((path, "not an image"))
                else:
                    batch.paths.append(path)
                    batch.embeddings = np.vstack([batch.embeddings, _vector(data)])
            yield batch


def _vector(data: bytes) -> np.ndarray:
    digest = np.frombuffer(hashlib.sha256(data).digest()[: _DIM * 4], dtype=np.uint32)
    vector = (digest / 2**32 - 0.5).astype(np.float32)
    return vector / np.linalg.norm(vector)


def _image_folder(root: Path) -> Path:
    for identity in ("ann", "bob"):
        (root / identity).mkdir(parents=True)
        for n in range(3):
            (root / identity / f"{n}.png").write_bytes(f"{identity}-{n}".encode())
    (root / "bob" / "broken.png").write_bytes(b"bad bytes")
    return root


def test_a_stand_in_embedder_drives_build_add_remove_without_the_engine(tmp_path: Path) -> None:
    embedder: Embeds = _HashEmbedder(tmp_path / "absent.onnx")
    images, gallery_dir = _image_folder(tmp_path / "images"), tmp_path / "gallery"
    report = Gallery.build(images, embedder, gallery_dir)
    assert (report.count, report.identities, report.embedded) == (6, 2, 6)
    assert [Path(p).name for p, _ in report.failures] == ["broken.png"]
    extra = tmp_path / "extra.png"
    extra.write_bytes(b"carol-0")
    assert Gallery.add(gallery_dir, [extra], embedder, identity="carol").count == 7
    assert Gallery.remove(gallery_dir, identities=["ann"]).count == 4
    facts = Gallery.facts(gallery_dir)
    assert (facts["count"], facts["identities"], facts["model_fingerprint"]) == (4, 2, "ab" * 32)
    assert Gallery.describe(gallery_dir)["identity_counts"] == {"bob": 3, "carol": 1}
    verified = Gallery.verify(gallery_dir)
    assert verified.ok, verified.problems
    with Gallery.open(gallery_dir, model_fingerprint=embedder.fingerprint) as gallery:
        (result,) = gallery.search(_vector(b"carol-0")[None], k=1)
        assert result.identities[0].identity == "carol" and result.matches[0].distance < 1e-6
        assert [i.identity for i in gallery.items_at([str(extra)])] == ["carol"]
        assert gallery.count("bob") == 3 and gallery.count("ann") == 0


def test_the_watch_sees_other_writers_and_ignores_same_content_rewrites(tmp_path: Path) -> None:
    gallery_dir = tmp_path / "gallery"
    Gallery.build(_image_folder(tmp_path / "images"), _HashEmbedder(tmp_path / "m"), gallery_dir)
    watch = Gallery.watch(gallery_dir)
    with Gallery.open(gallery_dir) as served:
        assert not watch.touched()
        manifest = gallery_dir / "manifest.json"
        later = manifest.stat().st_mtime_ns + 10**9
        os.utime(manifest, ns=(later, later))  # rewritten with the same content
        assert watch.touched() and not watch.differs(served)
        assert not watch.touched()  # marked seen: no more reads
        Gallery.set_threshold(gallery_dir, 0.5)  # "another process" publishes a threshold
        assert watch.touched() and watch.differs(served)
    with Gallery.open(gallery_dir) as newest:
        watch.mark_seen()
        assert newest.threshold == 0.5 and not watch.touched() and not watch.differs(newest)


_IDENTITIES = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from("./\\~\0é"),
    max_size=140,
)


@settings(max_examples=80, deadline=None)
@given(identity=_IDENTITIES, data=st.binary(min_size=1, max_size=64))
def test_uploads_stay_inside_the_uploads_folder_whatever_the_identity(
    identity: str, data: bytes
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        gallery_dir = Path(folder) / "gallery"
        gallery_dir.mkdir()
        try:
            stored = Path(Gallery.store_upload(gallery_dir, identity, data, "PNG"))
        except DataError as exc:
            assert "cannot name a folder" in str(exc)
            assert not (gallery_dir / "uploads").exists()
            return
        uploads = (gallery_dir / "uploads").resolve()
        assert stored.parent.parent == uploads and stored.read_bytes() == data
        assert stored.name == f"{hashlib.sha256(data).hexdigest()}.png"
        again = Gallery.store_upload(gallery_dir, identity, data, "PNG")
        assert Path(again) == stored and len(list(stored.parent.iterdir())) == 1
        assert Gallery.stored_uploads(gallery_dir, identity=identity) == [stored]


def test_forget_uploads_keeps_what_the_generation_still_holds(tmp_path: Path) -> None:
    gallery_dir = tmp_path / "gallery"
    embedder = _HashEmbedder(tmp_path / "m")
    Gallery.build(_image_folder(tmp_path / "images"), embedder, gallery_dir)
    kept = Gallery.store_upload(gallery_dir, "dan", b"dan-0", "JPEG")
    gone = Gallery.store_upload(gallery_dir, "dan", b"dan-1", None)
    assert Path(gone).suffix == ".img"
    Gallery.add(gallery_dir, [kept, gone], embedder, identity="dan")
    candidates = Gallery.stored_uploads(gallery_dir, identity="dan")
    Gallery.remove(gallery_dir, paths=[gone])
    with Gallery.open(gallery_dir) as gallery:
        assert gallery.forget_uploads(candidates) == 1
    assert Path(kept).is_file() and not Path(gone).exists()


def _index_modules() -> dict[str, ast.Module]:
    """Every module of index/ by its dotted name below siamese.index (sub-packages included)."""
    folder = Path(siamese.index.__file__).parent
    return {
        ".".join(path.relative_to(folder).with_suffix("").parts): ast.parse(path.read_text())
        for path in sorted(folder.rglob("*.py"))
    }


def _index_target(target: str, modules: dict[str, ast.Module]) -> str | None:
    """The index module an import names (the longest dotted prefix that is one)."""
    parts = target.split(".")[2:]
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if name in modules:
            return name
    return None


def test_index_imports_go_one_way_and_never_reach_the_engine() -> None:
    modules = _index_modules()
    arrows: dict[str, set[str]] = {name: set() for name in modules}
    for name, tree in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.If)):
                nested = [n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
                assert not nested, f"index/{name}.py imports inside a function or an if"
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                assert not target.startswith(("siamese.engine", "torch")), f"{name} -> {target}"
                found = (
                    _index_target(target, modules) if target.startswith("siamese.index.") else None
                )
                if found is not None and not found.endswith("__init__"):
                    arrows[name].add(found)
    for name in [n for n in arrows if n.endswith("__init__")]:
        arrows.pop(name)
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            pytest.fail(f"import cycle in index/: {' -> '.join((*path, name))}")
        if name not in done:
            for target in arrows.get(name, ()):
                visit(target, (*path, name))
            done.add(name)

    for name in arrows:
        visit(name, ())
    assert "published" in arrows["gallery"]
    assert "gallery" not in arrows["updates.operations"]


def test_open_returns_a_reader_apart_from_the_handle(gallery_dir: Path) -> None:
    """`Gallery` names a folder and changes it; `Gallery.open` gives a reader of one generation,
    which has no writing methods, so `reader.add(other_dir, ...)` cannot even be written."""
    from siamese.index import GalleryReader

    with Gallery.open(gallery_dir) as reader:
        assert isinstance(reader, GalleryReader) and not isinstance(reader, Gallery)
        assert reader.info()["count"] == Gallery.facts(gallery_dir)["count"]
        for writing in ("build", "add", "remove", "set_threshold", "store_upload"):
            assert not hasattr(reader, writing), writing
    assert not hasattr(Gallery, "search") and not issubclass(Gallery, GalleryReader)
