"""What ``siamese demo`` prints at the end, from its report's figures.

One function for the command and for the README, whose copy of the output is rendered from the
demo suite's newest results file (benchmarks/doc_figures.py): the two cannot drift apart. A light
module (no PyTorch), so the docs build renders it cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def demo_summary(report: Mapping[str, Any]) -> str:
    """The closing lines of the demo, from ``DemoReport.to_dict()`` (or a results file's copy)."""
    unseen = f"{report['queries']} queries of identities never seen in training"
    lines = [
        f"top-1 identification on {unseen}",
        f"  trained tower (ONNX): {report['tower_top1']:.1%}",
        f"  raw-pixel baseline:   {report['raw_pixel_top1']:.1%}",
    ]
    if report.get("threshold") is not None:
        lines += [
            f"unknown answers (threshold {report['threshold']:.3f}, calibrated on the gallery):",
            f"  enrolled people answered with their identity: {report['known_answered']:.0%}",
            f"  strangers answered unknown:                   {report['strangers_unknown']:.0%}",
        ]
    lines += [
        f"embedding throughput: {report['embed_images_per_second']:.0f} images/s",
        f"pictures of matches: {report['matches_png']}",
        f"total time {report['seconds']['total']:.0f}s; files in {report['out_dir']}",
    ]
    return "\n".join(lines)
