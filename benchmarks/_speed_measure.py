"""Measurements of the speed suite: inference by batch size, the decode and inference ceilings,
the end-to-end pipelines (ours and the PyTorch DataLoader peer) and identification by precision.

Every figure is a rate over real work (images/s) or a per-call latency; rounds are interleaved
so that the contenders see the same machine load, and the median round is reported.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _harness import latency_stats
from numpy.typing import NDArray

from siamese.core.errors import SiameseError

Engine = Callable[[NDArray[np.uint8]], Any]


def rate(
    images: int, call: Callable[[], Any], cpu: dict[str, float] | None = None, key: str = ""
) -> float:
    """Images per second of one call that processes ``images`` images.

    With ``cpu``, also record under ``key`` the process CPU seconds per image (all threads of this
    process): unlike wall time it barely moves when other programs load the machine.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    call()
    wall = time.perf_counter() - started
    if cpu is not None:
        cpu[key] = (time.process_time() - cpu_started) / images
    return images / wall


def torch_engine(tower: Any, spec: Any, device: str = "cpu") -> Engine:
    """What a PyTorch user writes: the eval-mode tower under inference_mode, fed the same uint8
    batches as the engines (normalised by training's own first layer, as the exported graph is)."""
    import torch

    from siamese.training.pixels import PixelInputTower

    tower = PixelInputTower(tower, spec).eval().to(device)

    def run(images: NDArray[np.uint8]) -> Any:
        with torch.inference_mode():
            out = tower(torch.from_numpy(images).to(device))
            return (
                out.cpu().numpy()
            )  # a real caller needs the embeddings on the host (and it syncs CUDA)

    return run


def onnx_engines(models: dict[str, Path], max_batch: int) -> tuple[dict[str, Any], dict[str, str]]:
    """Embedders for every provider × precision that runs here; the rest with why they do not."""
    from siamese.engine import Embedder
    from siamese.engine.providers import gpu_present
    from siamese.engine.runtime import RuntimeOptions

    wanted = [("cpu", "fp32", False), ("cpu", "int8", False)]
    if gpu_present():
        wanted += [
            ("cuda", "fp32", False),
            ("cuda", "fp16", False),
            ("tensorrt", "fp32", False),
            ("tensorrt", "fp32", True),
        ]
    engines, skipped = {}, {}
    for device, precision, trt_fp16 in wanted:
        name = f"onnxruntime-{device}-{'fp16' if trt_fp16 else precision}"
        try:
            engines[name] = Embedder(
                models[precision],
                device=device,
                batch_size=max_batch,
                runtime=RuntimeOptions(fp16=trt_fp16),
            )
        except SiameseError as exc:
            skipped[name] = str(exc)
    if not gpu_present():
        skipped["onnxruntime-cuda/tensorrt (fp32, fp16)"] = "no NVIDIA GPU on this machine"
    return engines, skipped


def inference_sweep(
    engines: dict[str, Engine],
    images: NDArray[np.uint8],
    batch_sizes: tuple[int, ...],
    rounds: int,
    target_images: int,
) -> dict[str, dict[str, Any]]:
    """Throughput and per-call latency of each engine at each batch size, on uint8 batches."""
    per_round: dict[tuple[str, int], list[float]] = {}
    durations: dict[tuple[str, int], list[float]] = {}
    for _ in range(rounds):
        for name, engine in engines.items():
            for batch in batch_sizes:
                x = np.ascontiguousarray(np.resize(images, (batch, *images.shape[1:])))
                calls = max(5, target_images // batch)
                for _ in range(2):
                    engine(x)
                times = []
                for _ in range(calls):
                    started = time.perf_counter()
                    engine(x)
                    times.append(time.perf_counter() - started)
                per_round.setdefault((name, batch), []).append(batch * calls / sum(times))
                durations.setdefault((name, batch), []).extend(times)
    table: dict[str, dict[str, Any]] = {}
    for (name, batch), rates in per_round.items():
        table.setdefault(name, {})[str(batch)] = {
            "images_per_s": round(statistics.median(rates), 1),
            **latency_stats(durations[(name, batch)]),
        }
    for name, rows in table.items():
        best = max(rows, key=lambda b: rows[b]["images_per_s"])
        rows["best"] = {"batch_size": int(best), "images_per_s": rows[best]["images_per_s"]}
    return table


def peer_pipeline(
    folder: Path, tower: Any, spec: Any, batch_size: int, workers: int
) -> Callable[[], int]:
    """torchvision ImageFolder + DataLoader(num_workers=workers) + the PyTorch tower: the peer."""
    import torch
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    steps = [transforms.Grayscale(1)] if spec.channels == 1 else []
    steps += [
        transforms.Resize((spec.height, spec.width)),
        transforms.ToTensor(),
        transforms.Normalize(list(spec.mean), list(spec.std)),
    ]
    dataset = datasets.ImageFolder(str(folder), transform=transforms.Compose(steps))

    def run() -> int:
        count = 0
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
        with torch.inference_mode():
            for images, _ in loader:
                tower(images).numpy()
                count += len(images)
        return count

    return run


def pipeline_round(
    paths: list[Path], embedders: dict[str, Any], peers: dict[str, Callable[[], int]]
) -> dict[str, float]:
    """One interleaved round: decode alone, inference alone, each end-to-end pipeline, each peer.

    Wall-clock rates are the figures; CPU seconds per image ("cpu_ms_*") of our own stages are
    kept too, because they show the pipeline's overhead even when the machine is shared.
    """
    reference = embedders["fp32"]
    figures: dict[str, float] = {}
    cpu: dict[str, float] = {}
    figures["decode_preprocess"] = rate(
        len(paths),
        lambda: sum(len(b.paths) for b in reference.iter_preprocessed(paths)),
        cpu,
        "decode_preprocess",
    )
    figures["decode_preprocess_full_scale"] = rate(
        len(paths),
        lambda: sum(len(b.paths) for b in embedders["fp32-full-decode"].iter_preprocessed(paths)),
    )
    tensors = np.concatenate([b.images.copy() for b in reference.iter_preprocessed(paths)])
    for name in ("fp32", "int8"):
        engine = embedders[name]
        figures[f"inference_{name}"] = rate(
            len(tensors),
            lambda engine=engine: [
                engine.embed_batch(tensors[i : i + engine.batch_size])
                for i in range(0, len(tensors), engine.batch_size)
            ],
            cpu,
            f"inference_{name}",
        )
    for name, engine in embedders.items():
        figures[f"end_to_end_{name}"] = rate(
            len(paths), lambda engine=engine: engine.embed_paths(paths), cpu, f"end_to_end_{name}"
        )
    for name, run in peers.items():
        started = time.perf_counter()
        count = run()
        figures[name] = count / (time.perf_counter() - started)
    figures.update({f"cpu_ms_{key}": value * 1000 for key, value in cpu.items()})
    return figures


def summarise_rounds(rounds: list[dict[str, float]]) -> dict[str, Any]:
    """Median of each figure over rounds, combined limits, and fractions and ratios per round."""
    rates = [k for k in rounds[0] if not k.startswith("cpu_ms_")]
    median = {k: round(statistics.median(r[k] for r in rounds), 1) for k in rates}
    cpu_ms = {
        k[len("cpu_ms_") :]: round(statistics.median(r[k] for r in rounds), 4)
        for k in rounds[0]
        if k.startswith("cpu_ms_")
    }
    derived: dict[str, list[float]] = {}
    for r in rounds:
        for name in ("fp32", "int8"):
            # CPU-time view: the work of decode + inference alone over the pipeline's work (1.0 = no
            # overhead).
            separate = r["cpu_ms_decode_preprocess"] + r[f"cpu_ms_inference_{name}"]
            derived.setdefault(f"end_to_end_{name}_cpu_efficiency", []).append(
                separate / r[f"cpu_ms_end_to_end_{name}"]
            )
            limit = 1.0 / (1.0 / r["decode_preprocess"] + 1.0 / r[f"inference_{name}"])
            derived.setdefault(f"combined_limit_{name}", []).append(limit)
            derived.setdefault(f"end_to_end_{name}_fraction_of_limit", []).append(
                r[f"end_to_end_{name}"] / limit
            )
            derived.setdefault(f"end_to_end_{name}_vs_peer", []).append(
                r[f"end_to_end_{name}"] / r["peer_dataloader"]
            )
    return {
        "images_per_s": median,
        "cpu_ms_per_image": cpu_ms,
        **{k: round(statistics.median(v), 3) for k, v in derived.items()},
        "rounds": len(rounds),
    }


def identification(
    models: dict[str, Path], gallery_dir: Path, queries: list[tuple[str, str]]
) -> dict[str, Any]:
    """Top-1 identification of unseen identities (exact L2) per precision, and cosine to fp32."""
    from siamese.data.image_folder import scan_image_folder
    from siamese.engine import Embedder

    items = scan_image_folder(gallery_dir)
    labels = np.array([item.identity for item in items])
    wanted = np.array([identity for _, identity in queries])
    embedded: dict[str, NDArray[np.float32]] = {}
    figures: dict[str, Any] = {"gallery_images": len(items), "queries": len(queries)}
    for precision, path in models.items():
        embedder = Embedder(path, device="cpu")
        gallery = embedder.embed_paths([item.path for item in items]).embeddings
        probes = embedder.embed_paths([p for p, _ in queries]).embeddings
        embedded[precision] = probes
        distances = (
            (probes**2).sum(1)[:, None] - 2 * probes @ gallery.T + (gallery**2).sum(1)[None, :]
        )
        figures[precision] = {
            "top1": round(float((labels[distances.argmin(1)] == wanted).mean()), 4)
        }
    for precision, probes in embedded.items():
        reference = embedded["fp32"]
        cosines = (probes * reference).sum(1) / (
            np.linalg.norm(probes, axis=1) * np.linalg.norm(reference, axis=1)
        )
        figures[precision]["cosine_to_fp32_mean"] = round(float(cosines.mean()), 6)
        figures[precision]["cosine_to_fp32_min"] = round(float(cosines.min()), 6)
        figures[precision]["top1_change_vs_fp32"] = round(
            figures[precision]["top1"] - figures["fp32"]["top1"], 4
        )
    return figures
