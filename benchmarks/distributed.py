"""Distributed suite: 2 training processes × 1 thread against 1 process × 2 threads.

Same data and epochs.

    siamese bench distributed [--quick] [-O key=value ...]

Both runs train the default recipe on the same generated identities with the same global batch
(P identities × K images per step: the single process takes P, each of the two ranks P/2) and the
same number of steps, so they see the same number of images and differ only in how the cores are
used: one process with two threads, or two processes (gloo, the batch gathered before the loss)
with one each. Figures: training images per second (training time only, from history.json),
wall time including process start-up, and the last epoch's validation mAP@R.

Options (-O): identities, images_per_identity, size (pixels), epochs, steps_per_epoch, p (global
identities per batch, even), k, widths (comma list), seed.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from _harness import BenchSettings


@dataclass(frozen=True)
class Setup:
    identities: int = 120
    images_per_identity: int = 10
    size: int = 48
    epochs: int = 4
    steps_per_epoch: int = 40
    p: int = 16
    k: int = 4
    widths: str = "16,32,64,128"
    seed: int = 0

    @classmethod
    def quick(cls) -> Setup:
        return cls(12, 6, 24, 1, 3, 4, 2, "4,8")


def _setup(settings: BenchSettings) -> Setup:
    setup = Setup.quick() if settings.quick else Setup()
    changes = {
        name: (settings.options[name] if name == "widths" else int(settings.options[name]))
        for name in Setup.__dataclass_fields__
        if name in settings.options
    }
    setup = replace(setup, **changes)
    if setup.p % 2 or setup.p < 4:
        raise ValueError(f"p is the global batch's identities: an even number ≥ 4, got {setup.p}")
    return setup


def _data(work_dir: Path, setup: Setup) -> Path:
    from siamese.demos.synthetic import SyntheticSpec, generate_identities

    folder = work_dir / (
        f"distributed-data-{setup.identities}x{setup.images_per_identity}-{setup.size}-{setup.seed}"
    )
    if not folder.is_dir():
        spec = SyntheticSpec(setup.identities, setup.images_per_identity, size=setup.size)
        generate_identities(folder, spec, seed=setup.seed)
    return folder


def _train(data: Path, out: Path, setup: Setup, processes: int) -> dict[str, Any]:
    from siamese.training import TrainConfig
    from siamese.training.launch import launch

    shutil.rmtree(out, ignore_errors=True)
    config = TrainConfig(
        data_dir=str(data),
        out_dir=str(out),
        image_size=setup.size,
        widths=tuple(int(w) for w in setup.widths.split(",")),
        epochs=setup.epochs,
        steps_per_epoch=setup.steps_per_epoch,
        identities_per_batch=setup.p // processes,
        images_per_identity=setup.k,
        seed=setup.seed,
        device="cpu",
        threads=2 // processes,
        patience=None,
    )
    started = time.perf_counter()
    result = launch(config, processes, progress=False)
    wall = time.perf_counter() - started
    history = result.history
    images = sum(row["images"] for row in history)
    seconds = sum(row["train_seconds"] for row in history)
    return {
        "processes": processes,
        "threads_per_process": 2 // processes,
        "identities_per_rank": setup.p // processes,
        "images_trained": images,
        "train_seconds": round(seconds, 3),
        "images_per_second": round(images / seconds, 1),
        "wall_seconds": round(wall, 2),
        "final_val_map_at_r": round(history[-1]["val_map_at_r"], 4),
        "best_val_map_at_r": round(max(row["val_map_at_r"] for row in history), 4),
    }


#: The -O keys this suite reads; the harness refuses any other.
OPTIONS = tuple(Setup.__dataclass_fields__)


def run(settings: BenchSettings) -> dict[str, Any]:
    """Train both ways, one after the other, and compare."""
    setup = _setup(settings)
    data = _data(settings.work_dir, setup)
    single = _train(data, settings.work_dir / "distributed-run-1x2", setup, 1)
    double = _train(data, settings.work_dir / "distributed-run-2x1", setup, 2)
    return {
        "setup": setup.__dict__,
        "global_batch": f"{setup.p} identities x {setup.k} images",
        "one_process_two_threads": single,
        "two_processes_one_thread": double,
        "throughput_ratio_2x1_over_1x2": round(
            double["images_per_second"] / single["images_per_second"], 3
        ),
        "gpu": "no GPU was lent to this task: the nccl multi-GPU comparison was not run",
    }
