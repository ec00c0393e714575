"""Galleries embedded on Ray Data: same gallery as one process, hostile files, resumption, sizing.

One local Ray cluster of 2 CPUs serves the whole module (``ray.init(num_cpus=2)``: Ray has no
local mode any more). Every call that could block (a named pipe among the files, a pool asking
for every CPU) runs under an alarm, so a hang fails the test instead of stalling CI.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from siamese.cli import app
from siamese.core.errors import ConfigError
from siamese.demos.synthetic import SyntheticSpec, generate_identities
from siamese.engine import Embedder
from siamese.engine.ray_parts import part_name, split
from siamese.engine.ray_pool import (
    RESERVED_CPUS,
    RayEmbedder,
    RayUnavailableError,
    size_pool,
)
from siamese.index import Gallery

TIMEOUT_S = 240
PART = 32


@contextlib.contextmanager
def deadline(seconds: int = TIMEOUT_S) -> Iterator[None]:
    """Fail with TimeoutError instead of hanging (SIGALRM: the main thread, POSIX only)."""

    def expire(*_: object) -> None:
        raise TimeoutError(f"still running after {seconds}s: the Ray job hangs")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A 2-CPU local Ray cluster for the module; the embedders join it and leave it running."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 small generated images: 30 identities × 10, PNG and JPEG."""
    spec = SyntheticSpec(identities=30, images_per_identity=10, size=40)
    return generate_identities(tmp_path_factory.mktemp("ray") / "photos", spec, seed=17)


def _paths(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.is_file())


def _collect(batches: Iterator) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    paths, vectors, failures = [], [], []
    for batch in batches:
        paths += list(batch.paths)
        vectors.append(batch.embeddings)
        failures += list(batch.failures)
    return paths, np.concatenate(vectors), failures


def _gallery_vectors(gallery: Path) -> dict[tuple[str, str, str], np.ndarray]:
    with Gallery.open(gallery) as opened:
        items = opened.all_items()
        ids = np.array([item.id for item in items], dtype=np.int64)
        vectors = opened.items.vectors(ids, opened.manifest.dimension)
    return {(i.path, i.identity, i.sha256): v for i, v in zip(items, vectors)}


def test_distributed_build_equals_single_process(
    cluster: None, photos: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    local = Gallery.build(photos, Embedder(tiny_model_path), tmp_path / "local")
    with deadline(), RayEmbedder(tiny_model_path, tmp_path / "parts", part_size=PART) as embedder:
        distributed = Gallery.build(photos, embedder, tmp_path / "ray")
        assert embedder.stats.parts_embedded == len(split(list(range(300)), PART))
    assert distributed.count == local.count == 300
    assert not distributed.failures
    one, other = _gallery_vectors(tmp_path / "local"), _gallery_vectors(tmp_path / "ray")
    assert one.keys() == other.keys()
    for key, vector in one.items():
        np.testing.assert_allclose(other[key], vector, atol=1e-5)
    assert Gallery.verify(tmp_path / "ray").ok


def test_hostile_files_in_a_part_are_refused_with_their_reasons(
    cluster: None, photos: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    good = _paths(photos)[:40]
    jpeg = next(p for p in good if p.endswith(".jpg"))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(Path(jpeg).read_bytes()[:200])
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"these are not image bytes\n" * 10)
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    hostile = [str(truncated), str(garbage), str(pipe), str(tmp_path / "gone.png")]
    paths = good[:10] + hostile + good[10:]  # all in the first part
    expected = Embedder(tiny_model_path).embed_paths(paths)
    with deadline(), RayEmbedder(tiny_model_path, tmp_path / "parts", part_size=PART) as embedder:
        got_paths, vectors, failures = _collect(embedder.iter_embed_paths(paths))
    assert got_paths == good == expected.paths  # the rest of the part is kept, in order
    assert sorted(failures) == sorted(expected.failures)
    assert {path for path, _ in failures} == set(hostile)
    reasons = dict(failures)
    assert "named pipe" in reasons[str(pipe)] or "not a regular file" in reasons[str(pipe)]
    np.testing.assert_allclose(vectors, expected.embeddings, atol=1e-5)


def test_a_killed_job_resumes_from_its_committed_parts(
    cluster: None, photos: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    paths = _paths(photos)
    parts = tmp_path / "parts"
    total = len(split(paths, PART))
    with deadline(), RayEmbedder(tiny_model_path, parts, part_size=PART) as embedder:
        stream = embedder.iter_embed_paths(paths)
        for _ in range(3):  # the driver is "killed" after three parts reached the index
            next(stream)
        stream.close()
    committed = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in parts.glob("part-*")}
    assert 3 <= len(committed) <= total
    # A part killed while being written leaves only its temporary file: not a committed part.
    names = [part_name(embedder.fingerprint, group) for group in split(paths, PART)]
    unfinished = next(name for name in names if name not in committed)
    (parts / f".{unfinished}.x1y2.tmp").write_bytes(b"PK\x03\x04 half a part")
    # A committed part damaged on disk is embedded again, not trusted.
    damaged = min(committed)
    (parts / damaged).write_bytes((parts / damaged).read_bytes()[:100])
    with deadline(), RayEmbedder(tiny_model_path, parts, part_size=PART) as embedder:
        got_paths, vectors, failures = _collect(embedder.iter_embed_paths(paths))
        stats = embedder.stats
    assert stats.parts_resumed == len(committed) - 1
    assert stats.parts_embedded == total - len(committed) + 1
    assert unfinished in {p.name for p in parts.glob("part-*")}
    for name, stamp in committed.items():  # committed parts were not written again
        if name != damaged:
            path = parts / name
            assert (path.stat().st_ino, path.stat().st_mtime_ns) == stamp
    expected = Embedder(tiny_model_path).embed_paths(paths)
    assert got_paths == expected.paths and not failures
    np.testing.assert_allclose(vectors, expected.embeddings, atol=1e-5)


def test_a_changed_file_makes_another_part(tiny_model_path: Path, tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    before = part_name("fingerprint", [str(image)])
    image.write_bytes(b"xy")
    assert part_name("fingerprint", [str(image)]) != before
    assert part_name("other model", [str(image)]) != part_name("fingerprint", [str(image)])


# ------------------------------------------------------------------ pool sizing
@settings(max_examples=300, deadline=None)
@given(
    cpus=st.floats(0.51, 512),
    gpus=st.integers(0, 16),
    actors=st.none() | st.integers(1, 1024),
    cpus_per_actor=st.none() | st.floats(0.01, 64),
    gpus_per_actor=st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0]),
)
def test_the_pool_never_claims_every_cpu(
    cpus: float,
    gpus: int,
    actors: int | None,
    cpus_per_actor: float | None,
    gpus_per_actor: float,
) -> None:
    try:
        pool = size_pool(
            cpus, gpus, actors=actors, cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor
        )
    except ConfigError as exc:
        assert gpus_per_actor > gpus and "GPU" in str(exc)
        return
    assert pool.actors >= 1 and pool.threads >= 1
    assert pool.actors * pool.cpus_per_actor <= cpus - RESERVED_CPUS + 1e-3
    assert pool.actors * pool.gpus_per_actor <= gpus + 1e-9
    if actors is not None:
        assert pool.actors <= actors
        if pool.actors < actors:
            assert pool.note and "reduced" in pool.note


def test_pool_sizes_by_rule() -> None:
    assert size_pool(2) == size_pool(2, actors=1)
    two = size_pool(2)
    assert (two.actors, two.cpus_per_actor, two.threads) == (1, 1.5, 2)
    assert size_pool(16).actors == 15
    asked_all = size_pool(2, actors=2, cpus_per_actor=1)
    assert (asked_all.actors, asked_all.cpus_per_actor) == (1, 1)
    assert "reduced to 1" in asked_all.note
    assert size_pool(8, 2, gpus_per_actor=1).actors == 2
    with pytest.raises(ConfigError, match="0.5"):
        size_pool(0.5)


def test_asking_for_every_cpu_still_completes(
    cluster: None, photos: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    cpus = int(ray.cluster_resources()["CPU"])
    paths = _paths(photos)[:96]
    with (
        deadline(),
        RayEmbedder(
            tiny_model_path, tmp_path / "parts", actors=cpus, cpus_per_actor=1, part_size=PART
        ) as embedder,
    ):
        assert embedder.pool.actors * embedder.pool.cpus_per_actor < cpus
        got, vectors, _ = _collect(embedder.iter_embed_paths(paths))
    assert got == paths and vectors.shape == (96, embedder.dim)


# ------------------------------------------------------------------ the command line
def test_cli_ray_build_from_a_csv_list(
    cluster: None, photos: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    listing = photos.parent / "gallery.csv"
    images = _paths(photos)[:64]
    with open(listing, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "identity"])
        writer.writerows(
            [str(Path(p).relative_to(photos.parent)), Path(p).parent.name] for p in images
        )
        writer.writerow(["", "nobody"])
    gallery = tmp_path / "gallery"
    command = ["index", "build", str(listing), "--model", str(tiny_model_path)]
    with deadline():
        result = CliRunner().invoke(
            app, [*command, "--gallery", str(gallery), "--engine", "ray", "--part-size", "16"]
        )
    assert result.exit_code == 3, result.output  # the row without a path is refused
    assert "64 images" in result.output and "parts 4 embedded, 0 resumed" in result.output
    assert "line 66 of the list has no path" in result.output
    assert not (gallery / ".ray-parts").exists()  # published: the parts are gone
    local = CliRunner().invoke(app, [*command, "--gallery", str(tmp_path / "local")])
    assert local.exit_code == 3, local.output
    one, other = _gallery_vectors(gallery), _gallery_vectors(tmp_path / "local")
    assert one.keys() == other.keys() and len(one) == 64
    for key, vector in one.items():
        np.testing.assert_allclose(other[key], vector, atol=1e-5)


def test_ray_options_need_the_ray_engine(tiny_model_path: Path, photos: Path, tmp_path: Path):
    result = CliRunner().invoke(
        app,
        ["index", "build", str(photos), "-m", str(tiny_model_path), "-g", str(tmp_path / "g")]
        + ["--actors", "2"],
    )
    assert result.exit_code == 2 and "need --engine ray" in result.output


def test_without_ray_the_engine_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, photos: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(RayUnavailableError, match=r'pip install "siamese\[ray\]"'):
        RayEmbedder(tiny_model_path, tmp_path / "parts")
    result = CliRunner().invoke(
        app,
        ["index", "build", str(photos), "-m", str(tiny_model_path), "-g", str(tmp_path / "g")]
        + ["--engine", "ray"],
    )
    assert result.exit_code == 2  # a missing extra (siamese/core/extras.py)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "siamese[ray]" in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "g").exists()


class _KilledAfter:
    """A RayEmbedder whose build is interrupted after ``parts`` parts reached the index."""

    def __init__(self, embedder: RayEmbedder, parts: int) -> None:
        self.inner, self.parts = embedder, parts
        self.fingerprint, self.dim, self.model_path = (
            embedder.fingerprint,
            embedder.dim,
            embedder.model_path,
        )

    def iter_embed_paths(self, paths: list[str]) -> Iterator:
        stream = self.inner.iter_embed_paths(paths)
        for _ in range(self.parts):
            yield next(stream)
        stream.close()
        raise KeyboardInterrupt  # what Ctrl-C or a kill does to the build


def test_cli_build_resumes_a_killed_ray_build(
    cluster: None, photos: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    gallery = tmp_path / "gallery"
    parts = gallery / ".ray-parts"  # where `index build --engine ray` commits its parts
    with (
        deadline(),
        RayEmbedder(tiny_model_path, parts, part_size=PART) as embedder,
        pytest.raises(KeyboardInterrupt),
    ):
        Gallery.build(photos, _KilledAfter(embedder, 3), gallery)
    committed = len(list(parts.glob("part-*")))
    assert committed >= 3 and Gallery.describe(gallery)["count"] == 0  # nothing published yet
    command = ["index", "build", str(photos), "-m", str(tiny_model_path), "-g", str(gallery)]
    with deadline():
        result = CliRunner().invoke(app, [*command, "--engine", "ray", "--part-size", str(PART)])
    assert result.exit_code == 0, result.output
    total = len(split(_paths(photos), PART))
    assert f"parts {total - committed} embedded, {committed} resumed" in result.output
    assert not parts.exists()
    local = Gallery.build(photos, Embedder(tiny_model_path), tmp_path / "local")
    assert local.count == 300
    one, other = _gallery_vectors(gallery), _gallery_vectors(tmp_path / "local")
    assert one.keys() == other.keys()
    for key, vector in one.items():
        np.testing.assert_allclose(other[key], vector, atol=1e-5)


def test_the_use_case_owns_the_parts_and_runs_ondisk_parts_on_the_cluster(
    cluster: None, tiny_model_path: Path, photos: Path, tmp_path: Path, monkeypatch
) -> None:
    """A library caller of the build use case: the parts folder is made, used and removed, and
    an on-disk index's parts run as tasks of the embedder's cluster (handed over explicitly)."""
    from siamese.galleries import RAY_PARTS_DIR, build_with_engine
    from siamese.index.ondisk import build as ondisk

    ran: list[int] = []
    real_run_tasks = RayEmbedder.run_tasks

    def counted(self, function, argument_lists):
        ran.append(len(argument_lists))
        return real_run_tasks(self, function, argument_lists)

    monkeypatch.setattr(RayEmbedder, "run_tasks", counted)
    monkeypatch.setattr(ondisk, "PART_ITEMS", 150)  # 300 images: two parts
    with deadline():
        built = build_with_engine(
            photos,
            tiny_model_path,
            tmp_path / "gallery",
            engine="ray",
            ray={"part_size": PART},
            index="ondisk:IVF8,Flat",
        )
    assert built.report.count == 300 and built.device.startswith("ray")
    assert built.ray is not None and built.ray["parts_embedded"] > 0
    assert ran == [2]  # the on-disk merge's two parts, as Ray tasks
    assert not (tmp_path / "gallery" / RAY_PARTS_DIR).exists()
    with Gallery.open(tmp_path / "gallery") as gallery:
        assert gallery.info()["count"] == 300
