"""`siamese demo`: the whole pipeline on generated data, offline."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from siamese.cli.support import friendly_errors as _friendly_errors
from siamese.cli.support import (
    out,
)
from siamese.cli.support import print_json as _print_json


@_friendly_errors
def demo(
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Where to keep the demo's files (default: a temporary folder)."
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Training epochs.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    pair: Annotated[
        bool,
        typer.Option(
            "--pair",
            help="Pseudo-siamese pairs instead: sketch → photo and text → photo, each with its "
            "own towers.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    if pair:
        _pair_demo(out_dir, epochs, seed, as_json)
        return
    from siamese.demos.pipeline import DemoConfig, run_demo

    config = DemoConfig(out_dir=str(out_dir) if out_dir else None, seed=seed)
    report = _run_demo(run_demo, config, epochs, as_json)
    if report is None:
        return
    out.print(
        f"\n[bold]top-1 identification on {report.queries} queries of identities never seen in "
        "training[/bold]\n"
        f"  trained tower (ONNX): {report.tower_top1:.1%}\n"
        f"  raw-pixel baseline:   {report.raw_pixel_top1:.1%}\n"
        f"embedding throughput: {report.embed_images_per_second:.0f} images/s\n"
        f"pictures of matches: {report.matches_png}\n"
        f"total time {report.seconds['total']:.0f}s; files in {report.out_dir}",
        highlight=False,
    )


def _run_demo(run: Any, config: Any, epochs: int | None, as_json: bool) -> Any:
    """Run a demo (progress lines unless JSON); None once its JSON report is printed."""

    if epochs is not None:
        config = replace(config, epochs=epochs)
    report = run(
        config,
        progress=not as_json,
        log=(lambda _: None) if as_json else (lambda line: out.print(line, highlight=False)),
    )
    if as_json:
        _print_json(report.to_dict())
        return None
    return report


def _pair_demo(out_dir: Path | None, epochs: int | None, seed: int, as_json: bool) -> None:
    from siamese.demos.pair import PairDemoConfig, run_pair_demo

    config = PairDemoConfig(out_dir=str(out_dir) if out_dir else None, seed=seed)
    report = _run_demo(run_pair_demo, config, epochs, as_json)
    if report is None:
        return
    out.print(
        f"\n[bold]identification of {report.identities} identities never seen in training "
        "(gallery: their photos)[/bold]\n"
        f"  sketch → photo: top-1 {report.sketch_top1:.1%}, top-5 {report.sketch_top5:.1%} "
        f"({report.sketch_queries} sketches)\n"
        f"  text → photo:   top-1 {report.text_top1:.1%}, top-5 {report.text_top5:.1%} "
        f"({report.text_queries} captions)\n"
        f"  chance top-1:   {report.chance_top1:.1%}\n"
        f"pictures of text matches: {report.matches_png}\n"
        f"total time {report.seconds['total']:.0f}s; files in {report.out_dir}",
        highlight=False,
    )
