"""`siamese query`: search a gallery with images or texts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from siamese.cli.support import (
    EXIT_ERROR,
    EXIT_SKIPPED,
    MILVUS_HELP,
    Device,
    err,
    out,
    search_params,
)
from siamese.cli.support import friendly_errors as _friendly_errors
from siamese.cli.support import print_json as _print_json
from siamese.cli.support import report_skipped as _report_skipped

_ModelOption = Annotated[
    Path | None,
    typer.Option("--model", "-m", help="Model (default: the one the gallery was built with)."),
]
_NPROBE_HELP = "IVF lists searched per query (default: the gallery's)."
_EF_HELP = "HNSW search breadth (default: the gallery's)."
_THRESHOLD_HELP = 'Answer "unknown" beyond this distance (default: the gallery\'s calibrated one).'
_WHERE_HELP = (
    "Search only the items this filter selects, e.g. 'identity like \"acme-%\" and id > 100' "
    "(fields id, identity, path, sha256; ==, !=, <, <=, >, >=, in [..], not in, like, and, or, "
    "not: Milvus's expression syntax)."
)


@_friendly_errors
def query(
    images: Annotated[
        list[Path] | None, typer.Argument(help="Query images (files or folders).")
    ] = None,
    gallery_dir: Annotated[
        Path, typer.Option("--gallery", "-g", help=f"Gallery directory{MILVUS_HELP}.")
    ] = Path("gallery"),
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
    where: Annotated[str | None, typer.Option(help=_WHERE_HELP)] = None,
) -> None:
    from siamese.data.image_folder import list_image_paths
    from siamese.galleries import open_served_gallery
    from siamese.index import short_fingerprint
    from siamese.index.search.filters import parse_where

    if bool(images) == bool(text):
        raise typer.BadParameter("give query images or --text, one of the two", param_hint="IMAGES")
    chosen = parse_where(where) if where is not None else None  # refused before any embedding
    options = {"mmap": mmap, "search_params": search_params(nprobe, ef_search)}
    with open_served_gallery(
        gallery_dir, model, device=device.value, queries="text" if text else "image", **options
    ) as served:
        embedder, model_path = served.query, served.model_path
        generation = served.gallery.generation  # named in --json, as the service's answers do
        if no_threshold or threshold is not None:
            served.gallery.threshold = None if no_threshold else threshold
        if text:
            embedded = _embed_texts(embedder, text)
        else:
            embedded = embedder.embed_paths(list_image_paths(images or []))
        results = (
            served.gallery.search(embedded.embeddings, k=k, where=chosen) if embedded.paths else []
        )
    _report_skipped(embedded.failures)
    if as_json:
        _print_json(
            {
                "gallery": str(gallery_dir),
                "model": str(model_path),
                "model_fingerprint": short_fingerprint(embedder.fingerprint),
                "gallery_generation": generation,
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
