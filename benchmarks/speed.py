"""Speed suite: embedding and query speed of the default tower.

It is set against the PyTorch peer and the machine's limits.

    siamese bench speed [--quick] [--plot] [-O key=value ...]

Options (-O): images, batch_sizes (comma list), rounds, gallery, queries, epochs, steps_per_epoch,
size, run (reuse a trained run dir instead of training one), peer_workers, plus the other
SpeedConfig fields in _speed_setup.py. Inputs and models are generated into the work dir
and reused while the options match, so a rerun measures without regenerating.
"""

from __future__ import annotations

import os
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

sys.path.insert(
    0, str(Path(__file__).resolve().parent)
)  # the suite's private helpers (_*.py) beside it

import _speed_measure as measure
import _speed_query as query
from _harness import BenchSettings
from _speed_report import DEFINITIONS, table, targets, write_plot
from _speed_setup import SpeedConfig, prepare


def _config(settings: BenchSettings) -> SpeedConfig:
    config = SpeedConfig.quick() if settings.quick else SpeedConfig()
    changes: dict[str, Any] = {}
    for item in fields(SpeedConfig):
        if item.name not in settings.options:
            continue
        raw = settings.options[item.name]
        if item.name == "batch_sizes":
            changes[item.name] = tuple(int(v) for v in raw.split(","))
        elif item.name == "run":
            changes[item.name] = raw
        else:
            changes[item.name] = int(raw)
    return replace(config, **changes)


#: The -O keys this suite reads; the harness refuses any other.
OPTIONS = tuple(item.name for item in fields(SpeedConfig))


def run(settings: BenchSettings) -> dict[str, Any]:
    """Measure everything side by side and return the figures, targets and a text table."""
    import torch

    from siamese.engine import Embedder
    from siamese.engine.runtime import available_cores
    from siamese.training import load_run

    config = _config(settings)
    load_at_start = os.getloadavg()
    space = prepare(settings.work_dir, config)
    trained = load_run(space.run_dir)
    tower = trained.tower.eval()
    cores = available_cores()

    # 1. Inference alone, by batch size: PyTorch eager vs onnxruntime precisions (and GPUs where
    # present).
    onnx_engines, skipped = measure.onnx_engines(space.models, max(config.batch_sizes))
    engines: dict[str, Any] = {"pytorch-eager-cpu": measure.torch_engine(tower, trained.spec)}
    if torch.cuda.is_available():
        engines["pytorch-eager-cuda"] = measure.torch_engine(
            load_run(space.run_dir).tower, trained.spec, "cuda"
        )
    else:
        skipped["pytorch-eager-cuda"] = "torch sees no CUDA device"
    engines.update({name: embedder.embed_batch for name, embedder in onnx_engines.items()})
    probe = onnx_engines["onnxruntime-cpu-fp32"]
    tensors = next(probe.iter_preprocessed(space.native[: max(config.batch_sizes)])).images.copy()
    sweep = measure.inference_sweep(
        engines,
        tensors,
        config.batch_sizes,
        config.rounds,
        target_images=32 if settings.quick else 512,
    )
    torch_best = sweep["pytorch-eager-cpu"]["best"]
    ort_best = sweep["onnxruntime-cpu-fp32"]["best"]
    batch = (
        config.pipeline_batch
    )  # what `siamese index build` uses by default, for ours and the peer alike

    # 2. Ceilings and end-to-end pipelines from JPEG files, interleaved round by round.
    embedders = {
        "fp32": Embedder(space.models["fp32"], device="cpu", batch_size=batch),
        "int8": Embedder(space.models["int8"], device="cpu", batch_size=batch),
        "fp32-full-decode": Embedder(
            space.models["fp32"], device="cpu", batch_size=batch, reduce=False
        ),
    }
    for embedder in embedders.values():  # start decode pools and onnxruntime arenas before timing
        embedder.embed_paths(space.photos[: 2 * batch])
    workers = config.peer_workers if config.peer_workers is not None else cores
    pipelines: dict[str, Any] = {}
    for label, folder, paths in (
        ("photos_640x480", space.photos_dir, space.photos),
        ("native_size", space.native_dir, space.native),
    ):
        peers = {
            "peer_dataloader": measure.peer_pipeline(folder, tower, probe.spec, batch, workers),
            "peer_dataloader_no_workers": measure.peer_pipeline(
                folder, tower, probe.spec, batch, 0
            ),
        }
        rounds = [measure.pipeline_round(paths, embedders, peers) for _ in range(config.rounds)]
        pipelines[label] = {
            "images": len(paths),
            "files": str(folder),
            **measure.summarise_rounds(rounds),
        }

    # 3. Identification with each precision (unseen identities), next to the speed change.
    accuracy = measure.identification(space.models, space.gallery_dir, space.queries)

    # 4. Single query end to end against a large exact gallery.
    real = [p for p in space.photos if p.stem != "3"]
    probes = [p for p in space.photos if p.stem == "3"][: config.queries] or space.photos[
        : config.queries
    ]
    gallery_dir = query.build_gallery(
        space.root, embedders["fp32"], real, space.native[0], config.gallery
    )
    latency = query.query_latency(gallery_dir, space.models["fp32"], probes)
    latency["cold_process"] = query.cold_query_ms(
        gallery_dir, probes[0], runs=1 if settings.quick else 3
    )

    figures: dict[str, Any] = {
        "about": DEFINITIONS,
        "config": space.exports.pop("config"),
        "tower": {
            "name": "conv",
            "input": list(probe.spec.shape),
            "embedding_dim": probe.dim,
            "run_dir": str(space.run_dir),
        },
        "machine_load": {
            "loadavg_1_5_15_at_start": load_at_start,
            "loadavg_1_5_15_at_end": os.getloadavg(),
            "cores": cores,
            "note": (
                "a load above the core count means other programs shared the CPU: compare ratios, "
                "not absolute rates"
            ),
        },
        "engine_settings": embedders["fp32"].settings(),
        "torch_threads": torch.get_num_threads(),
        "peer": {
            "num_workers": workers,
            "batch_size": batch,
            "transforms": "Grayscale, Resize, ToTensor, Normalize"
            if probe.spec.channels == 1
            else "Resize, ToTensor, Normalize",
        },
        "exports": space.exports,
        "inference_by_batch_size": sweep,
        "skipped": skipped,
        "pipelines": pipelines,
        "identification": accuracy,
        "single_query": latency,
    }
    figures["targets"] = targets(figures, torch_best, ort_best)
    figures["default_precision"] = _default_precision(pipelines["photos_640x480"], accuracy)
    figures["table"] = table(figures)
    if settings.plot:
        figures["plot"] = str(
            write_plot(sweep, settings.work_dir / "speed-throughput-by-batch.png")
        )
    return figures


def _default_precision(photos: dict[str, Any], accuracy: dict[str, Any]) -> dict[str, Any]:
    """Which precision is faster end to end here without losing identification accuracy."""
    rates = photos["images_per_s"]
    faster = rates["end_to_end_int8"] > rates["end_to_end_fp32"]
    kept = accuracy["int8"]["top1_change_vs_fp32"] >= 0.0
    choice = "int8" if faster and kept else "fp32"
    return {
        "fastest_without_accuracy_loss": choice,
        "int8_speedup_end_to_end": round(rates["end_to_end_int8"] / rates["end_to_end_fp32"], 3),
        "int8_top1_change": accuracy["int8"]["top1_change_vs_fp32"],
        "note": (
            "`siamese export` defaults to fp32 because int8 needs gallery images to calibrate on "
            "(--calibration DIR)."
        ),
    }
