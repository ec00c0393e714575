"""`siamese index export`: a gallery's items and vectors as Parquet files, for other engines.

``siamese index build EXPORT_DIR --model model.onnx --gallery NEW`` builds a gallery back from
such a folder (siamese/galleries.py sees an export and takes its vectors as they are).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from siamese.cli.support import (
    GalleryArgument,
    GalleryOption,
    friendly_errors,
    one_gallery,
    out,
    print_json,
)

_HELP = (
    "Export a gallery to Parquet: one row per item (id, identity, path, sha256, vector as a "
    "fixed-size list of float32) in files of --rows-per-file rows, the model's fingerprint, name, "
    "dimension and embedding kind in each file's metadata. Any Arrow reader takes them; "
    "`siamese index build EXPORT_DIR --model MODEL --gallery NEW` builds a gallery back."
)


def index_export(
    gallery_arg: GalleryArgument = None,
    gallery_opt: GalleryOption = None,
    parquet: Annotated[
        Path | None,
        typer.Option(
            help="Folder to write the Parquet files in (new or empty).", show_default=False
        ),
    ] = None,
    rows_per_file: Annotated[
        int, typer.Option(min=1, help="Rows per Parquet file (the last one holds the rest).")
    ] = 100_000,
    where: Annotated[
        str | None,
        typer.Option(
            help="Export only the items this filter selects, e.g. 'identity like \"acme-%\"' "
            "(the syntax of siamese query --where)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    from siamese.index.exchange import export_gallery

    gallery = one_gallery(gallery_opt, gallery_arg)
    if parquet is None:
        raise typer.BadParameter("give the folder to export to", param_hint="--parquet")
    report = export_gallery(
        gallery, parquet, rows_per_file=rows_per_file, where=where, progress=not as_json
    )
    if as_json:
        print_json({"gallery": str(gallery), **report.to_dict()})
        return
    files = len(report.files)
    out.print(
        f"exported {report.count} items of [bold]{escape(str(gallery))}[/bold] to "
        f"{escape(str(report.folder))} ({files} Parquet file{'s' if files != 1 else ''}, "
        f"dimension {report.dimension}, model {report.model_fingerprint[:16]}"
        + (f", where {escape(report.where)}" if report.where else "")
        + f") in {report.seconds:.1f}s",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``export`` to the ``siamese index`` group."""
    app.command("export", help=_HELP)(friendly_errors(index_export))
