"""Reading the speed suite's figures: definitions, the issue's targets, a text table and a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEFINITIONS = {
    "units": (
        "images_per_s = images per second (median of the interleaved rounds); *_ms = milliseconds "
        "per call"
    ),
    "inference_by_batch_size": (
        "inference alone on preprocessed uint8 pixel tensors, per engine and batch size: "
        "throughput and per-call latency percentiles; 'best' = the batch size with the highest "
        "throughput"
    ),
    "pipelines.decode_preprocess": (
        "decode + resize alone (normalising is inside the model), engine pipeline on all cores, "
        "reduced-scale decode (the decode ceiling)"
    ),
    "pipelines.decode_preprocess_full_scale": (
        "the same with reduced-scale decoding off (full JPEG decode, then resize)"
    ),
    "pipelines.inference_<precision>": (
        "inference alone on the same images' tensors at the pipeline batch size, all cores (the "
        "inference ceiling)"
    ),
    "pipelines.combined_limit_<precision>": (
        "1 / (1/decode + 1/inference): the best a pipeline can do when decode and inference share "
        "the cores"
    ),
    "pipelines.end_to_end_<name>": (
        "Embedder.embed_paths over the JPEG files (decode pool overlapping onnxruntime)"
    ),
    "pipelines.cpu_ms_per_image": (
        "process CPU milliseconds per image of each of our stages (all threads; robust to other "
        "load on the machine)"
    ),
    "pipelines.end_to_end_<precision>_cpu_efficiency": (
        "(decode CPU + inference CPU, measured alone) / end-to-end CPU per image: 1.0 = the "
        "pipeline adds no work; with the wall-clock fraction of the limit it tells overhead from "
        "idle cores"
    ),
    "pipelines.peer_dataloader": (
        "the peer: torchvision ImageFolder + DataLoader(num_workers = cores) + the PyTorch tower "
        "under inference_mode"
    ),
    "pipelines.peer_dataloader_no_workers": (
        "the same peer with num_workers=0 (context: on few cores, worker processes fight torch's "
        "threads)"
    ),
    "identification": (
        "top-1 identification of unseen synthetic identities (3 gallery images each, the rest "
        "queries, exact L2), per precision; int8 is calibrated on the gallery images only"
    ),
    "single_query": (
        "one 640x480 JPEG query: read, embed, exact search of the gallery, identities returned; "
        "engine and gallery already open"
    ),
    "single_query.cold_process": (
        "a fresh `siamese query --json` process: imports, model and gallery opening, one query"
    ),
    "targets": (
        "the issue's targets, each with the measured value, the threshold and whether it is met"
    ),
}


def _target(value: float, threshold: float, met: bool, definition: str) -> dict[str, Any]:
    return {
        "value": round(value, 3),
        "threshold": threshold,
        "met": bool(met),
        "definition": definition,
    }


def targets(
    figures: dict[str, Any], torch_best: dict[str, Any], ort_best: dict[str, Any]
) -> dict[str, Any]:
    """The issue's targets from the figures of one run."""
    photos = figures["pipelines"]["photos_640x480"]
    p50 = figures["single_query"]["end_to_end"]["p50_ms"]
    return {
        "onnxruntime_vs_pytorch_eager": _target(
            ort_best["images_per_s"] / torch_best["images_per_s"],
            1.3,
            ort_best["images_per_s"] >= 1.3 * torch_best["images_per_s"],
            f"onnxruntime fp32 at its best batch ({ort_best['batch_size']}) / PyTorch eager at its "
            f"best batch ({torch_best['batch_size']}), CPU",
        ),
        "end_to_end_vs_peer_640x480": _target(
            photos["end_to_end_fp32_vs_peer"],
            3.0,
            photos["end_to_end_fp32_vs_peer"] >= 3.0,
            "Embedder.embed_paths (fp32) / torchvision DataLoader peer, same 640x480 JPEGs, median "
            "of per-round ratios",
        ),
        "end_to_end_fraction_of_limit_640x480": _target(
            photos["end_to_end_fp32_fraction_of_limit"],
            0.8,
            photos["end_to_end_fp32_fraction_of_limit"] >= 0.8,
            "Embedder.embed_paths (fp32) / (1 / (1/decode + 1/inference)), ceilings measured in "
            "the same rounds",
        ),
        "single_query_p50_ms": _target(
            p50,
            20.0,
            p50 < 20.0,
            "single-query end-to-end p50 against a "
            f"{figures['single_query']['gallery_items']}-item exact gallery",
        ),
    }


def table(figures: dict[str, Any]) -> list[str]:
    """The headline figures as lines of text (also stored in the JSON)."""
    lines = ["inference alone (images/s by batch size; p50 ms per call at the best batch):"]
    for name, rows in figures["inference_by_batch_size"].items():
        sizes = [key for key in rows if key != "best"]
        best = rows["best"]
        cells = "  ".join(f"b{size}={rows[size]['images_per_s']:.0f}" for size in sizes)
        lines.append(
            f"  {name:28s} {cells}  best b{best['batch_size']} p50 "
            f"{rows[str(best['batch_size'])]['p50_ms']:.2f} ms"
        )
    for label, block in figures["pipelines"].items():
        rates = block["images_per_s"]
        lines.append(f"{label} ({block['images']} JPEGs, images/s):")
        for key in (
            "decode_preprocess",
            "decode_preprocess_full_scale",
            "inference_fp32",
            "inference_int8",
            "end_to_end_fp32",
            "end_to_end_int8",
            "end_to_end_fp32-full-decode",
            "peer_dataloader",
            "peer_dataloader_no_workers",
        ):
            lines.append(f"  {key:32s} {rates[key]:8.1f}")
        lines.append(
            f"  combined limit fp32 {block['combined_limit_fp32']:.1f}; end-to-end fp32 = "
            f"{block['end_to_end_fp32_fraction_of_limit']:.2f} of it, "
            f"{block['end_to_end_fp32_vs_peer']:.2f}x the peer; int8 "
            f"{block['end_to_end_int8_vs_peer']:.2f}x the peer; "
            f"CPU efficiency fp32 {block['end_to_end_fp32_cpu_efficiency']:.2f}"
        )
    ident = figures["identification"]
    lines.append(
        "identification top-1: "
        + ", ".join(
            f"{p} {ident[p]['top1']:.3f} (cos to fp32 {ident[p]['cosine_to_fp32_mean']:.4f})"
            for p in ("fp32", "int8", "fp16")
        )
    )
    query = figures["single_query"]
    lines.append(
        f"single query vs {query['gallery_items']} items: p50 {query['end_to_end']['p50_ms']:.2f} "
        f"ms, p95 {query['end_to_end']['p95_ms']:.2f} ms, "
        f"p99 {query['end_to_end']['p99_ms']:.2f} ms (embed {query['embed_p50_ms']:.2f} + search "
        f"{query['search_p50_ms']:.2f})"
    )
    for name, target in figures["targets"].items():
        lines.append(
            f"target {name}: {target['value']} (threshold {target['threshold']}) "
            f"{'MET' if target['met'] else 'MISSED'}"
        )
    return lines


def write_plot(sweep: dict[str, Any], path: Path) -> Path:
    """Throughput against batch size, one line per engine (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, rows in sweep.items():
        sizes = sorted(int(key) for key in rows if key != "best")
        axis.plot(sizes, [rows[str(s)]["images_per_s"] for s in sizes], marker="o", label=name)
    axis.set_xscale("log", base=2)
    axis.set_xticks(sizes, labels=[str(s) for s in sizes])
    axis.set_xlabel("batch size")
    axis.set_ylabel("images / s (inference alone)")
    axis.set_title("Embedding throughput by batch size")
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
