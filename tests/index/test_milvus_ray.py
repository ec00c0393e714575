"""`index build --engine ray` into a Milvus Lite gallery: Ray actors embed, the driver upserts.

Milvus Lite serves a file to one process, so the actors never open it: they embed parts and
commit them beside the file (``PATH.db.ray-parts``), and the driver writes the rows. The gallery
must equal a one-process build, and a build killed half-way, run again, must add no duplicate.
One local Ray cluster of 2 CPUs (as tests/index/test_ray_build.py starts it) serves the module.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("pymilvus", reason="the milvus extra is not installed")
ray = pytest.importorskip("ray", reason="the ray extra is not installed")

from siamese.cli import app
from siamese.demos.synthetic import SyntheticSpec, generate_identities
from siamese.engine import Embedder
from siamese.engine.ray_pool import RayEmbedder
from siamese.galleries import build_with_engine, ray_parts_dir
from siamese.index import Gallery

PART = 16
TIMEOUT_S = 240


@pytest.fixture(autouse=True)
def deadline() -> Iterator[None]:
    """Fail with TimeoutError instead of hanging the run (SIGALRM, main thread)."""

    def expire(*_: object) -> None:
        raise TimeoutError(f"still running after {TIMEOUT_S}s: the Ray build hangs")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TIMEOUT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """80 small generated images: 10 identities × 8."""
    spec = SyntheticSpec(identities=10, images_per_identity=8, size=40)
    return generate_identities(tmp_path_factory.mktemp("milvus-ray") / "photos", spec, seed=5)


@pytest.fixture(scope="module")
def local(photos: Path, tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The same images built in one process, without Ray: what a Ray build must equal."""
    location = f"milvus-lite:{tmp_path_factory.mktemp('milvus-local') / 'local.db'}"
    with Embedder(tiny_model_path) as embedder:
        Gallery.build(photos, embedder, location)
    return location


def _contents(location: str) -> dict[tuple[int, str, str, str], np.ndarray]:
    """Every row of a Milvus gallery: (id, path, identity, sha256) → stored vector."""
    with Gallery.open(location) as gallery:
        items = gallery.all_items()
        vectors = gallery.store.vectors([item.id for item in items])
    return {(i.id, i.path, i.identity, i.sha256): vectors[i.id] for i in items}


def _assert_same(got: str, want: str) -> None:
    one, other = _contents(got), _contents(want)
    assert one.keys() == other.keys()  # same ids (path hashes), paths, identities, hashes
    for key, vector in one.items():
        np.testing.assert_allclose(vector, other[key], atol=1e-5)


class KilledAfter:
    """The Ray embedder of a build killed (KeyboardInterrupt) once ``batches`` reached it."""

    def __init__(self, embedder: RayEmbedder, batches: int) -> None:
        self.inner, self.left = embedder, batches
        self.fingerprint, self.dim = embedder.fingerprint, embedder.dim
        self.model_path = embedder.model_path

    def iter_embed_paths(self, paths: list[str]) -> Iterator:
        for batch in self.inner.iter_embed_paths(paths):
            if self.left == 0:
                raise KeyboardInterrupt  # what Ctrl-C or a kill does to the driver
            self.left -= 1
            yield batch


def test_ray_build_into_milvus_lite_equals_a_local_build(
    cluster: None, photos: Path, tiny_model_path: Path, local: str, tmp_path: Path
) -> None:
    distributed = f"milvus-lite:{tmp_path / 'ray.db'}/faces"
    built = build_with_engine(
        photos, tiny_model_path, distributed, engine="ray", ray={"part_size": PART}
    )
    assert built.report.count == 80 and not built.report.failures
    assert built.ray is not None and built.ray["parts_embedded"] == 80 // PART
    assert not ray_parts_dir(distributed).exists()  # published: the parts are gone
    _assert_same(distributed, local)
    assert Gallery.verify(distributed).ok


def test_a_killed_ray_build_run_again_adds_no_duplicates(
    cluster: None, photos: Path, tiny_model_path: Path, local: str, tmp_path: Path
) -> None:
    gallery = f"milvus-lite:{tmp_path / 'g.db'}"
    parts = ray_parts_dir(gallery)  # where `index build --engine ray` commits its parts
    with (
        RayEmbedder(tiny_model_path, parts, part_size=PART) as embedder,
        pytest.raises(KeyboardInterrupt),
    ):
        Gallery.build(photos, KilledAfter(embedder, 3), gallery, commit_every=PART)
    assert Gallery.describe(gallery)["generation"] == 0  # three chunks upserted, none published
    assert len(list(parts.glob("part-*"))) >= 3
    command = ["index", "build", photos, "-m", tiny_model_path, "-g", gallery, "--engine", "ray"]
    result = CliRunner().invoke(app, [str(a) for a in [*command, "--part-size", PART, "--json"]])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["count"] == 80 and report["resumed"] == 3 * PART
    assert report["embedded"] == 80 - 3 * PART  # the upserted rows were not embedded again
    assert not parts.exists()
    rows = Counter(key[1] for key in _contents(gallery))
    assert len(rows) == 80 and set(rows.values()) == {1}
    _assert_same(gallery, local)
    assert Gallery.verify(gallery).ok
