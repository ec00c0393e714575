"""Ray embedding suite: a Ray Data actor pool against the single-process engine, same JPEGs.

    siamese bench ray_embedding [--quick] [-O key=value ...]

Both embed the same 640×480 photo-like JPEGs (benchmarks/_photos.py) with the default conv
tower (seeded, untrained: the weights do not change the cost) exported once through
siamese.export. The single-process engine is :class:`siamese.engine.Embedder` with its defaults
(decode threads and onnxruntime threads = the cores); the Ray engine is
:class:`siamese.engine.ray_pool.RayEmbedder` on a local cluster it starts on this machine (or
``address``), with the pool sized by its rule (at least half a CPU left free).

Throughput excludes start-up, which is reported on its own: for the local engine, opening the
session and a warm-up batch; for Ray, starting the cluster (``connect_s``) and, per run,
submitting the job until the first actor is ready (``pool_start_s``). Ray's images/s is the
images over the time from the first actor ready to the last part back at the driver, each part
committed to disk as a build commits it. Each round embeds every image again (the parts folder
is emptied first); the figure is the median round. The embeddings of both engines are compared
(max absolute difference, same paths in the same order).

Options (-O): images, width, height, size (the tower's input), part_size, batch_size, rounds,
actors, cpus_per_actor, address, seed.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the suite's private helpers beside it

from _harness import BenchSettings
from _photos import generate_photos

TARGET_RATIO = 0.8


@dataclass(frozen=True)
class Setup:
    images: int = 4000
    width: int = 640
    height: int = 480
    size: int = 96
    part_size: int = 256
    batch_size: int = 32
    rounds: int = 3
    actors: int | None = None
    cpus_per_actor: float | None = None
    address: str | None = None
    seed: int = 0

    @classmethod
    def quick(cls) -> Setup:
        """Well under a minute on 2 cores (figures are not meaningful)."""
        return cls(images=96, width=320, height=240, size=32, part_size=32, rounds=1)


def _setup(settings: BenchSettings) -> Setup:
    setup = Setup.quick() if settings.quick else Setup()
    kinds = {"address": str, "cpus_per_actor": float}
    changes = {
        name: kinds.get(name, int)(settings.options[name])
        for name in Setup.__dataclass_fields__
        if name in settings.options
    }
    return replace(setup, **changes)


def _photos(work_dir: Path, setup: Setup) -> list[str]:
    folder = work_dir / f"ray-photos-{setup.images}-{setup.width}x{setup.height}-{setup.seed}"
    done = folder / ".complete"
    if not done.is_file():
        shutil.rmtree(folder, ignore_errors=True)
        generate_photos(
            folder, setup.images, width=setup.width, height=setup.height, seed=setup.seed
        )
        done.touch()
    return sorted(str(p) for p in folder.rglob("*.jpg"))


def _model(work_dir: Path, setup: Setup) -> Path:
    """The default conv tower at ``size`` pixels, seeded weights, exported once."""
    target = work_dir / f"ray-model-{setup.size}.onnx"
    if target.is_file():
        return target
    from siamese.export import export_onnx
    from siamese.training import TrainConfig
    from siamese.training.trainer import write_untrained_run

    run_dir = work_dir / f"ray-run-{setup.size}"
    shutil.rmtree(run_dir, ignore_errors=True)
    config = TrainConfig(data_dir=str(run_dir), out_dir=str(run_dir), image_size=setup.size)
    write_untrained_run(config, seed=setup.seed)
    return export_onnx(run_dir, target).path


def _local(model: Path, paths: list[str], setup: Setup) -> tuple[dict[str, Any], Any]:
    from siamese.engine import Embedder

    started = time.perf_counter()
    embedder = Embedder(model, batch_size=setup.batch_size)
    embedder.embed_paths(paths[: setup.batch_size])  # decode pool and first batches warm
    startup = time.perf_counter() - started
    rounds, result = [], None
    for _ in range(setup.rounds):
        started = time.perf_counter()
        result = embedder.embed_paths(paths)
        rounds.append(len(result.paths) / (time.perf_counter() - started))
    embedder.close()
    figures = {
        "settings": embedder.settings(),
        "startup_s": round(startup, 3),
        "images_per_s_rounds": [round(r, 1) for r in rounds],
        "images_per_s": round(statistics.median(rounds), 1),
    }
    return figures, result


def _ray(model: Path, paths: list[str], setup: Setup, work_dir: Path) -> tuple[dict[str, Any], Any]:
    import numpy as np

    from siamese.engine.ray_pool import RayEmbedder

    parts = work_dir / "ray-bench-parts"
    shutil.rmtree(parts, ignore_errors=True)
    embedder = RayEmbedder(
        model,
        parts,
        address=setup.address,
        actors=setup.actors,
        cpus_per_actor=setup.cpus_per_actor,
        batch_size=setup.batch_size,
        part_size=setup.part_size,
    )
    rounds, starts, per_actor, embedded = [], [], [], None
    try:
        for _ in range(setup.rounds):
            shutil.rmtree(parts, ignore_errors=True)  # every round embeds every image again
            stats = embedder.stats
            before_run, before_start, before_images = (
                stats.run_s,
                stats.pool_start_s,
                stats.images,
            )
            stats.per_actor.clear()
            batches = list(embedder.iter_embed_paths(paths))
            rounds.append((stats.images - before_images) / (stats.run_s - before_run))
            starts.append(stats.pool_start_s - before_start)
            per_actor.append(stats.to_dict()["per_actor"])
            embedded = (
                [p for b in batches for p in b.paths],
                np.concatenate([b.embeddings for b in batches]),
            )
        settings = embedder.settings()
        connect = embedder.stats.connect_s
    finally:
        embedder.close()
        shutil.rmtree(parts, ignore_errors=True)
    middle = rounds.index(sorted(rounds)[len(rounds) // 2])
    figures = {
        "settings": settings,
        "startup_s": {
            "cluster_connect": round(connect, 3),
            "pool_start_per_round": [round(s, 3) for s in starts],
        },
        "images_per_s_rounds": [round(r, 1) for r in rounds],
        "images_per_s": round(statistics.median(rounds), 1),
        "per_actor_median_round": per_actor[middle],
    }
    return figures, embedded


#: The -O keys this suite reads; the harness refuses any other.
OPTIONS = tuple(Setup.__dataclass_fields__)


def run(settings: BenchSettings) -> dict[str, Any]:
    """Embed the same photos with both engines; compare throughput and embeddings."""
    import numpy as np

    from siamese.engine.runtime import available_cores

    setup = _setup(settings)
    paths = _photos(settings.work_dir, setup)
    model = _model(settings.work_dir, setup)
    local, expected = _local(model, paths, setup)
    distributed, (ray_paths, ray_vectors) = _ray(model, paths, setup, settings.work_dir)
    same_order = ray_paths == expected.paths
    difference = (
        float(np.abs(ray_vectors - expected.embeddings).max()) if same_order else float("nan")
    )
    ratio = distributed["images_per_s"] / local["images_per_s"]
    return {
        "setup": asdict(setup),
        "cores": available_cores(),
        "images": len(paths),
        "single_process": local,
        "ray_local_cluster": distributed,
        "throughput_ratio_ray_over_single": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "target_met": ratio >= TARGET_RATIO,
        "same_paths_in_order": same_order,
        "embeddings_max_abs_difference": difference,
        "definitions": {
            "images_per_s": "images embedded / seconds, start-up excluded (see startup_s); "
            "median of the rounds",
            "ray images_per_s": "from the first actor ready to the last part committed by the "
            "driver",
        },
    }
