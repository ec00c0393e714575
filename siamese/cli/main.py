"""The `siamese` command line: train, export, index, query, serve, info, demo.

Heavy libraries are imported inside commands, so `siamese query` never loads PyTorch. User
mistakes surface as one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from dataclasses import replace
from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer
from rich.table import Table

from siamese import __version__
from siamese.cli.fields import config_from_options, with_config_options
from siamese.cli.index import index_app, index_info
from siamese.cli.serve import serve
from siamese.cli.support import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_SKIPPED,
    Device,
    err,
    out,
    print_facts,
    search_params,
)
from siamese.cli.support import friendly_errors as _friendly_errors
from siamese.cli.support import print_json as _print_json
from siamese.cli.support import report_skipped as _report_skipped
from siamese.core.errors import SiameseError
from siamese.evaluation.config import EvalConfig
from siamese.training.config import TrainConfig

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_SKIPPED", "app"]

app = typer.Typer(
    name="siamese",
    help="Train Siamese towers, export them to ONNX, and search image galleries by identity.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(index_app, name="index")
app.command()(serve)


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


def _version_callback(value: bool) -> None:
    if value:
        out.print(f"siamese {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Train Siamese towers, export them to ONNX, and search image galleries by identity."""


# --------------------------------------------------------------------------- train
@app.command()
@_friendly_errors
@with_config_options(TrainConfig)
def train(
    nproc: Annotated[
        int,
        typer.Option(
            min=1,
            help="Training processes on this machine (torchrun's elastic agent; one per GPU). "
            "--identities-per-batch and --batch-size are per process. Several machines: torchrun "
            "(README).",
        ),
    ] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    **fields: Any,
) -> None:
    """Train a tower on DATA_DIR and write a run directory (config, weights, history, curves)."""
    config = config_from_options(TrainConfig, fields)
    from siamese.training.memory import keep_freed_memory

    keep_freed_memory()  # this process only trains: reuse freed buffers instead of re-faulting them
    result = _run_training(config, nproc, progress=not as_json)
    if result is None:  # a rank other than 0 under torchrun: rank 0 reports
        return
    _report_skipped(result.skipped)
    summary = {
        "run_dir": str(result.run_dir),
        "best_epoch": result.best_epoch,
        "metric": result.best_metric,
        "value": result.best_value,
        "stopped_early": result.stopped_early,
        "recipe": result.recipe,
        "recipe_reason": result.recipe_reason,
        "history": result.history,
    }
    if as_json:
        _print_json(summary)
    else:
        early = " (stopped early)" if result.stopped_early else ""
        out.print(
            f"run written to [bold]{result.run_dir}[/bold]; kept epoch {result.best_epoch} "
            f"({result.best_metric} = {result.best_value:.4f}){early}"
        )


def _run_training(config: Any, nproc: int, *, progress: bool) -> Any:
    """Train in this process, under torchrun (every rank runs this), or with --nproc processes.

    Returns rank 0's TrainResult; None on the other ranks of a torchrun job, which print nothing.
    """
    from siamese.training import train as run_training
    from siamese.training.distributed import ranks_from_environment
    from siamese.training.launch import launch

    ranks = ranks_from_environment()
    if nproc > 1 or not ranks.enabled:
        return launch(config, nproc, progress=progress)
    try:
        result = run_training(config, progress=progress)
    except SiameseError as exc:
        if getattr(exc, "reported_by_rank0", False):  # rank 0 prints the same message
            time.sleep(2.0)  # before torchrun, seeing this rank exit, stops rank 0 mid-print
            raise typer.Exit(EXIT_ERROR) from None
        if ranks.is_main:
            raise
        raise SiameseError(f"rank {ranks.rank}: {exc}") from None
    return result if ranks.is_main else None


# -------------------------------------------------------------------------- export
@app.command(
    help=(
        "Export the run's tower to ONNX (dynamic batch), verified against PyTorch (and variants "
        "against fp32)."
    ),
)
@_friendly_errors
def export(
    run_dir: Annotated[
        Path | None,
        typer.Argument(help="Run directory written by `siamese train` (or give --backbone)."),
    ] = None,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="ONNX file to write.")] = Path(
        "model.onnx"
    ),
    opset: Annotated[int, typer.Option(help="ONNX opset version.")] = 18,
    precision: Annotated[
        Precision,
        typer.Option(
            help="fp32; fp16 for GPU providers; int8 (static quantisation, needs --calibration)."
        ),
    ] = Precision.fp32,
    calibration: Annotated[
        Path | None,
        typer.Option(
            help="Gallery images (ImageFolder) to calibrate int8 on and check the variant with."
        ),
    ] = None,
    backbone: Annotated[
        str | None,
        typer.Option(
            help="No training: export this timm backbone's pooled features (e.g. "
            "tf_efficientnet_lite0) with its --pretrained weights."
        ),
    ] = None,
    pretrained: Annotated[
        str,
        typer.Option(help="With --backbone: imagenet, hub, packaged, or a weights file."),
    ] = "imagenet",
    image_size: Annotated[
        int | None, typer.Option(help="With --backbone: input size (default: its own).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    from siamese.training.pair_run import is_pair_run

    if (run_dir is None) == (backbone is None):
        raise SiameseError("give a run directory or --backbone NAME, not both and not neither")
    if backbone is not None:
        from siamese.export import export_pretrained

        report = export_pretrained(
            backbone, out_path, pretrained=pretrained, image_size=image_size, progress=not as_json
        )
        _print_export(report, as_json)
        return
    assert run_dir is not None
    if is_pair_run(run_dir):
        _export_pair(run_dir, out_path, opset, precision.value, as_json)
        return
    from siamese.export import export_onnx

    report = export_onnx(
        run_dir,
        out_path,
        opset=opset,
        progress=not as_json,
        precision=precision.value,
        calibration=calibration,
    )
    _print_export(report, as_json)


def _print_export(report: Any, as_json: bool) -> None:
    if as_json:
        _print_json(report.to_dict())
        return
    out.print(report.parity.summary(), highlight=False)
    if report.variant is not None:
        out.print(report.variant.summary(), highlight=False)
    out.print(
        f"wrote [bold]{report.path}[/bold] ({report.size_bytes / 1e6:.1f} MB, sha256 "
        f"{report.fingerprint[:16]})"
    )


def _export_pair(run_dir: Path, out_path: Path, opset: int, precision: str, as_json: bool) -> None:
    """A pair run: NAME.query.onnx and NAME.gallery.onnx beside --out (export/pair_export.py)."""
    from siamese.export.pair_export import export_pair

    if precision != "fp32":
        raise SiameseError(f"{run_dir}: a pair exports in fp32 only, not {precision}")
    report = export_pair(run_dir, out_path, opset=opset, progress=not as_json)
    if as_json:
        _print_json(report.to_dict())
        return
    for role, side in (("query", report.query), ("gallery", report.gallery)):
        out.print(f"{role}: {side.parity.summary()}", highlight=False)
        out.print(
            f"wrote [bold]{side.path}[/bold] ({side.size_bytes / 1e6:.1f} MB, sha256 "
            f"{side.fingerprint[:16]})"
        )
    out.print(f"pair fingerprint {report.fingerprint[:16]}")


# ---------------------------------------------------------------------------- query
_ModelOption = Annotated[
    Path | None,
    typer.Option("--model", "-m", help="Model (default: the one the gallery was built with)."),
]
_NPROBE_HELP = "IVF lists searched per query (default: the gallery's)."
_EF_HELP = "HNSW search breadth (default: the gallery's)."
_THRESHOLD_HELP = 'Answer "unknown" beyond this distance (default: the gallery\'s calibrated one).'


@app.command(
    help=(
        "Find the nearest gallery identities of each query image. Exit code 3: some queries were "
        "unreadable."
    ),
)
@_friendly_errors
def query(
    images: Annotated[
        list[Path] | None, typer.Argument(help="Query images (files or folders).")
    ] = None,
    gallery_dir: Annotated[Path, typer.Option("--gallery", "-g", help="Gallery directory.")] = Path(
        "gallery"
    ),
    text: Annotated[
        list[str] | None,
        typer.Option("--text", "-t", help="A text query (repeatable), for a text → image pair."),
    ] = None,
    model: _ModelOption = None,
    k: Annotated[int, typer.Option("-k", "--top", min=1, help="Results per query.")] = 5,
    device: Annotated[Device, typer.Option(help="Execution provider.")] = Device.auto,
    show: Annotated[
        Path | None, typer.Option(help="Also write a PNG of queries and matches.")
    ] = None,
    nprobe: Annotated[int | None, typer.Option(min=1, help=_NPROBE_HELP)] = None,
    ef_search: Annotated[int | None, typer.Option(min=1, help=_EF_HELP)] = None,
    mmap: Annotated[bool, typer.Option(help="Memory-map the index instead of reading it.")] = False,
    threshold: Annotated[float | None, typer.Option(min=0.0, help=_THRESHOLD_HELP)] = None,
    no_threshold: Annotated[
        bool,
        typer.Option("--no-threshold", help="Ignore the gallery's threshold: always the nearest."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    from siamese.data.image_folder import list_image_paths
    from siamese.galleries import open_served_gallery

    if bool(images) == bool(text):
        raise typer.BadParameter("give query images or --text, one of the two", param_hint="IMAGES")
    options = {"mmap": mmap, "search_params": search_params(nprobe, ef_search)}
    with open_served_gallery(
        gallery_dir, model, device=device.value, queries="text" if text else "image", **options
    ) as served:
        embedder, model_path = served.query, served.model_path
        if no_threshold or threshold is not None:
            served.gallery.threshold = None if no_threshold else threshold
        if text:
            embedded = _embed_texts(embedder, text)
        else:
            embedded = embedder.embed_paths(list_image_paths(images or []))
        results = served.gallery.search(embedded.embeddings, k=k) if embedded.paths else []
    _report_skipped(embedded.failures)
    if as_json:
        _print_json(
            {
                "gallery": str(gallery_dir),
                "model": str(model_path),
                "device": embedder.device,
                "results": [{"query": p, **r.to_dict()} for p, r in zip(embedded.paths, results)],
                "failures": [{"path": p, "reason": r} for p, r in embedded.failures],
            }
        )
    else:
        _print_results(embedded.paths, results)
    if show is not None and results:
        _plot(embedded.paths, results, show, k, bool(text))
    if not embedded.paths:
        err.print("[red]error:[/red] none of the query images could be read")
        raise typer.Exit(EXIT_ERROR)
    if embedded.failures:
        raise typer.Exit(EXIT_SKIPPED)


def _plot(queries: list[str], results: list[Any], png: Path, k: int, texts: bool) -> None:
    from siamese.evaluation.plots import plot_query_results

    plot_query_results(queries, results, png, k=k, texts=texts)
    err.print(f"wrote {png}")


def _print_results(queries: list[str], results: list[Any]) -> None:
    """One table per query: its nearest identities, and "unknown" beyond the threshold."""
    for path, result in zip(queries, results):
        table = Table(title=path, title_justify="left", show_edge=False)
        for column in ("rank", "identity", "distance", "nearest image"):
            table.add_column(column)
        for rank, match in enumerate(result.identities, start=1):
            table.add_row(str(rank), match.identity, f"{match.distance:.4f}", match.path)
        out.print(table)
        if result.unknown:
            out.print(
                "[yellow]unknown[/yellow]: nothing within the threshold "
                f"{result.threshold:.4f}; the nearest identities are listed above",
                highlight=False,
            )


def _embed_texts(embedder: Any, texts: list[str]) -> Any:
    """Text queries as an EmbedResult whose "paths" are the texts themselves."""
    from siamese.engine import EmbedResult

    return EmbedResult(embedder.embed_texts(texts), list(texts), [])


# ----------------------------------------------------------------------------- info
def _model_info(path: Path) -> dict[str, Any]:
    from siamese.engine import open_query_embedder

    embedder = open_query_embedder(path, device="cpu")
    session_input = embedder.session.get_inputs()[0]
    return {
        "kind": "model",
        "path": str(path),
        "fingerprint": embedder.fingerprint,
        "size_bytes": path.stat().st_size,
        "embeds": embedder.kind,
        "input": {"name": session_input.name, "shape": [str(d) for d in session_input.shape]},
        **embedder.info.to_dict(),
        **({"pair": embedder.pair.to_dict()} if embedder.pair is not None else {}),
    }


@app.command()
@_friendly_errors
def info(
    path: Annotated[Path, typer.Argument(help="A model.onnx or a gallery directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show what a model or a gallery holds (a gallery as `siamese index info` shows it)."""
    if path.is_dir():
        index_info(gallery_arg=path, as_json=as_json)
    elif path.is_file():
        print_facts(_model_info(path), as_json)
    else:
        raise SiameseError(
            f"{path}: no such file or folder (expected a model.onnx or a gallery directory)"
        )


# ----------------------------------------------------------------------------- eval
@app.command(
    "eval",
    help=(
        "Measure identification (recall@k, mAP@R) and verification (ROC-AUC, EER, TAR@FAR) of "
        "MODEL on your data."
    ),
)
@_friendly_errors
@with_config_options(EvalConfig)
def eval_command(
    save_threshold: Annotated[
        Path | None,
        typer.Option(
            help=(
                "Store the threshold at --at-far in this gallery (built with MODEL): "
                'its queries then answer "unknown" beyond it.'
            )
        ),
    ] = None,
    at_far: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="False-accept rate of the threshold --save-threshold stores."
        ),
    ] = 1e-3,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    **fields: Any,
) -> None:
    from siamese.evaluation.evaluate import evaluate, save_threshold_to

    config = config_from_options(EvalConfig, fields)
    if save_threshold is not None and at_far not in config.fars:
        config = replace(config, fars=(*config.fars, at_far))
    report = evaluate(config, progress=not as_json)
    _report_skipped([(s["path"], s["reason"]) for s in report["skipped"]])
    if save_threshold is not None:
        report["saved_threshold"] = save_threshold_to(save_threshold, report, at_far)
    if as_json:
        _print_json(report)
        return
    ident, verif = report["identification"], report["verification"]
    table = Table(show_header=False, show_edge=False)
    table.add_row(
        "gallery / queries",
        f"{report['gallery_images']} images of {report['identities']} identities / "
        f"{report['query_images']} queries",
    )
    for key in ("recall_at_1", "recall_at_5", "recall_at_10", "map_at_r"):
        table.add_row(
            key.replace("_at_", "@").replace("map", "mAP").replace("@r", "@R"), f"{ident[key]:.4f}"
        )
    table.add_row("ROC-AUC", f"{verif['roc_auc']:.4f}")
    table.add_row("EER", f"{verif['eer']:.4f}")
    for value in config.fars:
        table.add_row(
            f"TAR @ FAR {value:g}",
            f"{verif[f'tar_at_far_{value:g}']:.4f} (accept distance ≤ "
            f"{verif[f'threshold_at_far_{value:g}']:.4f})",
        )
    out.print(table)
    if "files" in report:
        out.print(f"wrote {', '.join(report['files'].values())}")
    if save_threshold is not None:
        out.print(
            f"gallery [bold]{save_threshold}[/bold]: queries farther than "
            f"{report['saved_threshold']['distance']:.4f} now answer unknown (FAR {at_far:g})",
            highlight=False,
        )


# ---------------------------------------------------------------------------- bench
@app.command()
@_friendly_errors
def bench(
    suite: Annotated[
        str,
        typer.Argument(
            help="Benchmark suite: a file benchmarks/SUITE.py (run `siamese bench list`)."
        ),
    ],
    quick: Annotated[bool, typer.Option(help="Small, fast configuration.")] = False,
    plot: Annotated[bool, typer.Option(help="Also write plots next to the JSON result.")] = False,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-O", help="Suite option KEY=VALUE (repeatable)."),
    ] = None,
    work_dir: Annotated[Path, typer.Option(help="Scratch folder for generated inputs.")] = Path(
        ".bench-work"
    ),
    results_dir: Annotated[
        Path | None, typer.Option(help="Where the JSON goes (default: benchmarks/results).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole record as JSON.")
    ] = False,
) -> None:
    """Run a benchmark suite and record its figures (machine, versions, settings) as JSON."""
    harness = _bench_harness()
    if suite == "list":
        for name in harness.available_suites():
            out.print(name)
        return
    options = {}
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SiameseError(f"--option {item!r}: expected KEY=VALUE")
        options[key] = value
    settings = harness.BenchSettings(quick=quick, work_dir=work_dir, plot=plot, options=options)
    record, path = harness.run_suite(suite, settings, results_dir)
    if as_json:
        _print_json({**record, "path": str(path)})
    else:
        out.print(json.dumps(record["results"], indent=2), highlight=False)
        out.print(f"results written to [bold]{path}[/bold]")


def _bench_harness() -> ModuleType:
    """The benchmarks' harness, from a source checkout: benchmarks are not part of the package.

    Found through SIAMESE_BENCHMARKS, else as benchmarks/_harness.py in the working directory or
    one above it; the suites import it (and their helpers) by name from that folder.
    """
    here = Path.cwd()
    named = os.environ.get("SIAMESE_BENCHMARKS")
    candidates = [Path(named)] if named else []
    candidates += [folder / "benchmarks" for folder in (here, *here.parents)]
    for folder in candidates:
        if (folder / "_harness.py").is_file():
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
            return importlib.import_module("_harness")
    raise SiameseError(
        "siamese bench runs the suites of a source checkout: run it inside the repository, "
        "or set SIAMESE_BENCHMARKS to its benchmarks/ folder"
    )


# ----------------------------------------------------------------------------- demo
@app.command(
    help=(
        "Run the whole pipeline on generated identities: train, export, index unseen identities, "
        "query."
    ),
)
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
    from dataclasses import replace

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


if __name__ == "__main__":
    app()
