"""`siamese index audit`: what is in a gallery — duplicates, likely mislabels, overlapping and
loose identities — from the gallery's own vectors and index (no model, no images needed).

Exit code 0 whatever it finds: findings are for a person to look at, not failures. ``--sheets DIR``
draws each finding as a contact sheet, with the match-sheet drawing of ``siamese query --show``
(:func:`siamese.evaluation.plots.plot_query_results`): the key item, then the items of the
finding with their distances, green where they share the key item's identity, red where not.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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

if TYPE_CHECKING:
    from siamese.index.audit import AuditReport, Finding

_HELP = (
    "Audit a gallery: exact and near-duplicates (with their identities, so a file under two "
    "names stands out), likely mislabels with the identity their neighbours suggest, "
    "overlapping identities (merge candidates) and loose ones (two people under one name?). "
    "Distances are calibrated from the gallery itself; --duplicate-distance and "
    "--identity-distance override them."
)


def index_audit(
    gallery_arg: GalleryArgument = None,
    gallery_opt: GalleryOption = None,
    k: Annotated[
        int, typer.Option("--k", min=1, max=1000, help="Neighbours searched per item.")
    ] = 10,
    duplicate_distance: Annotated[
        float | None,
        typer.Option(
            help="L2 distance below which two items are near-duplicates (default: calibrated)."
        ),
    ] = None,
    identity_distance: Annotated[
        float | None,
        typer.Option(
            help="L2 distance within which items of two identities overlap (default: the "
            "gallery's threshold, else calibrated)."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=0, help="Findings listed per kind (all are counted).")
    ] = 20,
    sheets: Annotated[
        Path | None,
        typer.Option(help="Draw each listed finding as a PNG contact sheet in this folder."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    gallery_dir = one_gallery(gallery_opt, gallery_arg)
    from siamese.index.audit import audit

    report = audit(
        gallery_dir,
        k=k,
        duplicate_distance=duplicate_distance,
        identity_distance=identity_distance,
        limit=limit,
    )
    drawn = draw_sheets(report, sheets) if sheets is not None else {}
    if as_json:
        payload = report.to_dict()
        for kind, paths in drawn.items():
            for finding, path in zip(payload["findings"][kind], paths):
                finding["sheet"] = str(path)
        print_json(payload)
    else:
        _print_report(report, sheets)


index_audit.__doc__ = _HELP


def _print_report(report: AuditReport, sheets: Path | None) -> None:
    """The calibration in one line, a summary table, then the top findings of each kind."""
    from rich.table import Table

    c = report.calibration
    out.print(
        f"gallery [bold]{escape(report.gallery)}[/bold]: {report.count} items of "
        f"{report.identities} identities ({report.index_type}, generation {report.generation}); "
        f"duplicate distance {c.duplicate_distance:.4f} ({c.duplicate_source}); identity "
        f"distance {c.identity_distance:.4f} ({c.identity_source}); audited in "
        f"{report.seconds['total']:.1f}s",
        highlight=False,
    )
    table = Table(show_edge=False)
    for column in ("finding", "count", "top"):
        table.add_column(column)
    for kind, count, top in report.summary_rows():
        table.add_row(kind.replace("_", " "), str(count), escape(top))
    out.print(table)
    for kind, found in report.findings.items():
        for finding in found[:5]:
            out.print(_finding_line(finding), highlight=False)
    if sheets is not None:
        out.print(f"contact sheets in {escape(str(sheets))}", highlight=False)


def _finding_line(finding: Finding) -> str:
    items = ", ".join(
        f"{item.id} ({escape(item.identity)}, {item.distance:.3f})" for item in finding.items[:6]
    )
    more = (
        f" +{finding.size - len(finding.items)} more" if finding.size > len(finding.items) else ""
    )
    return f"{finding.kind.replace('_', ' ')} {finding.score:.3f}: {items}{more}"


def draw_sheets(report: AuditReport, folder: Path) -> dict[str, list[Path]]:
    """One PNG per listed finding, ``<kind>-<rank>.png``: the key item, then the others."""
    from siamese.evaluation.plots import plot_query_results
    from siamese.index import Match, QueryResult

    folder.mkdir(parents=True, exist_ok=True)
    drawn: dict[str, list[Path]] = {}
    for kind, found in report.findings.items():
        for rank, finding in enumerate(found, start=1):
            key, *others = finding.items
            result = QueryResult([Match(i.id, i.identity, i.path, i.distance) for i in others])
            path = plot_query_results(
                [key.path],
                [result],
                folder / f"{kind}-{rank:03d}.png",
                expected=[key.identity],
                k=len(others),
            )
            drawn.setdefault(kind, []).append(path)
    return drawn


def register(app: typer.Typer) -> None:
    """Add ``audit`` to the ``siamese index`` group."""
    app.command("audit", help=_HELP)(friendly_errors(index_audit))


__all__: list[str] = ["draw_sheets", "index_audit", "register"]
