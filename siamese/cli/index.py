"""`siamese index build|add|remove|info|verify|threshold`: create, update and check galleries.

Exit codes: 0 success, 1 error (one line on stderr), 3 done but some files were refused (each
listed on stderr and in the JSON report, ``GALLERY/rejected.json`` by default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from siamese.add_config import AddConfig
from siamese.build_config import BuildConfig
from siamese.cli.audit import register as register_audit
from siamese.cli.fields import (
    config_from_options,
    option_names,
    speak_words,
    with_config_options,
)
from siamese.cli.index_export import register as register_export
from siamese.cli.support import (
    EXIT_ERROR,
    EXIT_SKIPPED,
    MILVUS_HELP,
    GalleryArgument,
    GalleryOption,
    err,
    friendly_errors,
    one_gallery,
    out,
    print_facts,
    print_json,
    report_skipped,
    search_params,
)

index_app = typer.Typer(
    help="Build, update and check galleries (FAISS index + identity metadata).",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.", metavar="")]


def _ray_line(stats: dict[str, Any]) -> str:
    """What the Ray pool did: its size, start-up apart, throughput in all and per actor."""
    rates = [a["images_per_s"] for a in stats["per_actor"].values() if a["images_per_s"]]
    per_actor = f", {min(rates):.0f}–{max(rates):.0f} images/s per actor busy" if rates else ""
    overall = (
        f"{stats['images_per_s']:.0f} images/s in all{per_actor}"
        if stats["images_per_s"]
        else "nothing to embed"
    )
    note = f" ({stats['pool_note']})" if stats["pool_note"] else ""
    return (
        f"ray: {stats['actors']} actor{'s' if stats['actors'] != 1 else ''} × "
        f"{stats['cpus_per_actor']:g} CPUs, "
        f"{stats['threads_per_actor']} threads each{note}; start-up {stats['connect_s']:.1f}s "
        f"cluster + {stats['pool_start_s']:.1f}s actors; embedded {stats['images_embedded']} "
        f"images in {stats['run_s']:.1f}s: {overall}; parts {stats['parts_embedded']} embedded, "
        f"{stats['parts_resumed']} resumed ({stats['images_resumed']} images)"
    )


def _finish(report: Any, device: str, as_json: bool, engine: dict[str, Any] | None = None) -> None:
    """Print an update's outcome; exit 3 when files were refused."""
    report_skipped(report.failures)
    if as_json:
        print_json({**report.to_dict(), "device": device, **({"ray": engine} if engine else {})})
    else:
        if report.choice:
            choice = report.choice
            out.print(
                f"index {choice.get('asked', 'auto')}: {choice['index_type']} ({choice['reason']}; "
                f"expected recall@10 ≈ "
                f"{choice['expected_recall_at10']})",
                highlight=False,
            )
        recall = report.recall
        quality = ""
        if recall and not recall.get("exact"):
            params = ", ".join(f"{k}={v}" for k, v in recall["params"].items())
            quality = (
                f", recall@1 {recall['at1']:.3f} recall@10 {recall['at10']:.3f}"
                " against exact search" + (f" with {params}" if params else "")
            )
        out.print(
            f"gallery [bold]{escape(str(report.gallery_dir))}[/bold]: "
            f"{report.count} images of {report.identities} identities "
            f"(generation {report.generation}, {report.index_type}{quality}); "
            f"embedded {report.embedded}, resumed {report.resumed}, "
            f"unchanged {report.unchanged}, removed {report.removed} "
            f"in {report.seconds:.1f}s on {device}"
            + (
                f"; {len(report.failures)} refused, listed in {report.report_path}"
                if report.failures
                else ""
            ),
            highlight=False,
        )
        if engine:
            out.print(_ray_line(engine), highlight=False)
    if report.failures:
        raise typer.Exit(EXIT_SKIPPED)


def _gallery_and_paths(gallery: Path | None, paths: list[Path]) -> tuple[Path, list[Path]]:
    """``add --gallery G PATHS…``, or the older ``add G PATHS…`` (the gallery first)."""
    if gallery is not None and paths and paths[0] == gallery:  # given both ways
        paths = paths[1:]
    if gallery is None and paths:
        gallery, paths = paths[0], paths[1:]
    gallery = one_gallery(gallery, None)
    if not paths:
        raise typer.BadParameter("give the images or folders to add", param_hint="PATHS")
    return gallery, paths


def _distance(text: Path) -> float:
    """The DISTANCE argument when the gallery came as --gallery (click filled GALLERY first)."""
    try:
        return float(str(text))
    except ValueError:
        raise typer.BadParameter(
            f"{text} is not a distance (the gallery is already given by --gallery)",
            param_hint="DISTANCE",
        ) from None


@index_app.command(
    "build",
    help=(
        "Create a gallery from IMAGE_DIR (or a CSV/Parquet list of path, identity), or bring one "
        "up to date: only new or changed files are embedded, vanished ones removed. "
        "--engine ray embeds on a Ray cluster: an actor pool that never claims every CPU (at "
        "least half a CPU stays free for Ray Data's own work, so actors × CPUs per actor is "
        "capped below the cluster's CPUs); finished parts are committed in GALLERY/.ray-parts, "
        "so a killed build resumes, and removed once the gallery is published."
    ),
)
@friendly_errors
@with_config_options(BuildConfig)
def index_build(
    gallery_dir: Annotated[
        Path | None,
        typer.Option(
            "--gallery",
            "-g",
            help=f"Gallery directory to create or bring up to date{MILVUS_HELP}.",
            show_default=False,
        ),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", hidden=True, help="Former name of --gallery.")
    ] = None,
    as_json: JsonOption = False,
    **fields: Any,
) -> None:
    gallery = one_gallery(gallery_dir, out_dir, "--out", exists=False)
    config = config_from_options(BuildConfig, fields)
    given = [option_names(BuildConfig)[name][0] for name in config.ray_only_given()]
    if given:
        raise typer.BadParameter(f"{', '.join(given)} need --engine ray", param_hint="--engine")
    from siamese.galleries import build_with_engine

    built = build_with_engine(
        config.image_dir,
        config.model,
        gallery,
        engine=config.engine,
        device=config.device,
        batch_size=config.batch_size,
        commit_every=config.commit_every,
        ray=config.ray_options() if config.engine == "ray" else None,
        index=config.index,
        memory_budget=config.max_memory,
        min_recall=config.min_recall,
        target_recall=config.target_recall,
        search_params=search_params(config.nprobe, config.ef_search),
        report_path=config.report_path,
        progress=not as_json,
    )
    _finish(built.report, built.device, as_json, built.ray)


@index_app.command("add")
@friendly_errors
@with_config_options(AddConfig)
def index_add(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Image files, or folders read like `index build` reads one; without --gallery, "
            "the gallery directory first.",
            metavar="[GALLERY_DIR] PATHS...",
            show_default=False,
        ),
    ],
    gallery_dir: GalleryOption = None,
    as_json: JsonOption = False,
    **fields: Any,
) -> None:
    """Embed images and add them to a gallery; files already there unchanged are skipped."""
    gallery, paths = _gallery_and_paths(gallery_dir, paths)
    config = config_from_options(AddConfig, fields)
    from siamese.galleries import add_with_tower

    added = add_with_tower(
        gallery, paths, config.model, **config.add_options(), progress=not as_json
    )
    _finish(added.report, added.device, as_json)


@index_app.command("remove")
@friendly_errors
def index_remove(
    gallery_arg: GalleryArgument = None,
    gallery_dir: GalleryOption = None,
    identities: Annotated[
        list[str] | None,
        typer.Option("--identity", help="Remove every image of this identity (repeatable)."),
    ] = None,
    paths: Annotated[
        list[Path] | None,
        typer.Option(
            "--path", help="Remove this image, or every image under this folder (repeatable)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Remove images from a gallery by identity or path."""
    gallery_dir = one_gallery(gallery_dir, gallery_arg)
    from siamese.index import Gallery

    report = Gallery.remove(gallery_dir, identities=identities or [], paths=paths or [])
    if as_json:
        print_json(report.to_dict())
    else:
        out.print(
            f"gallery [bold]{escape(str(report.gallery_dir))}[/bold]: removed {report.removed}; "
            f"{report.count} images of {report.identities} identities "
            f"(generation {report.generation})",
            highlight=False,
        )


@index_app.command(
    "info",
    help=(
        "Show what a gallery holds: model, index type and search parameters, recall, counts per "
        "identity."
    ),
)
@friendly_errors
def index_info(
    gallery_arg: GalleryArgument = None,
    gallery_dir: GalleryOption = None,
    as_json: JsonOption = False,
) -> None:
    gallery_dir = one_gallery(gallery_dir, gallery_arg)
    from siamese.index import Gallery

    print_facts({"kind": "gallery", **Gallery.describe(gallery_dir)}, as_json)


@index_app.command(
    "threshold",
    help=(
        'Show, set or clear the "unknown" threshold (calibrate one with `siamese eval '
        "--save-threshold`)."
    ),
)
@friendly_errors
def index_threshold(
    gallery_arg: GalleryArgument = None,
    distance: Annotated[
        float | None,
        typer.Argument(help='L2 distance beyond which queries answer "unknown" (omit to show it).'),
    ] = None,
    gallery_dir: GalleryOption = None,
    clear: Annotated[
        bool,
        typer.Option(
            "--clear", help="Remove the threshold: every query answers its nearest identity."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    from siamese.index import Gallery

    if gallery_dir is not None and gallery_arg is not None and distance is None:
        gallery_arg, distance = None, _distance(gallery_arg)  # `threshold --gallery G 0.5`
    gallery_dir = one_gallery(gallery_dir, gallery_arg)
    if clear and distance is not None:
        raise typer.BadParameter("give a DISTANCE or --clear, not both")
    if clear or distance is not None:
        stored = Gallery.set_threshold(
            gallery_dir, None if clear else distance, source="set by hand"
        )
    else:
        stored = Gallery.facts(gallery_dir)["threshold"]
    if as_json:
        print_json({"gallery": str(gallery_dir), "threshold": stored})
    elif stored is None:
        out.print(
            f"gallery [bold]{gallery_dir}[/bold]: no threshold; every query answers its nearest "
            "identity",
            highlight=False,
        )
    else:
        t = stored
        far = f" (false-accept rate {t['far']:g})" if t.get("far") else ""
        out.print(
            f"gallery [bold]{gallery_dir}[/bold]: queries farther than {t['distance']:.4f}{far} "
            f"answer unknown; {t['source']}, {t['set']}",
            highlight=False,
        )


@index_app.command(
    "verify",
    help=(
        "Check a gallery: checksums, counts, every id present once, fingerprints, image hashes. "
        "Exit 1 on any problem."
    ),
)
@friendly_errors
def index_verify(
    gallery_arg: GalleryArgument = None,
    gallery_dir: GalleryOption = None,
    files: Annotated[
        bool,
        typer.Option("--files/--no-files", help="Also check every indexed image's content hash."),
    ] = True,
    as_json: JsonOption = False,
) -> None:
    from siamese.galleries import verify_with_model

    gallery_dir = one_gallery(gallery_dir, gallery_arg)

    report = verify_with_model(gallery_dir, check_files=files)
    if as_json:
        print_json(report.to_dict())
    else:
        for line in report.checked:
            out.print(f"checked {line}", highlight=False)
        for line in report.warnings:
            err.print(f"[yellow]warning:[/yellow] {line}", highlight=False)
        for line in report.problems:
            err.print(f"[red]problem:[/red] {line}", highlight=False)
        out.print(report.summary(), highlight=False)
    if not report.ok:
        raise typer.Exit(EXIT_ERROR)


register_audit(index_app)  # `siamese index audit` (siamese/cli/audit.py)
register_export(index_app)  # `siamese index export` (siamese/cli/index_export.py)

speak_words(index_app)  # every index verb's --help: words, not Python types
