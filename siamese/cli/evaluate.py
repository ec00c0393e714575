"""`siamese eval`: identification and verification of a model on labelled images."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from siamese.cli.fields import config_from_options, with_config_options
from siamese.cli.support import friendly_errors as _friendly_errors
from siamese.cli.support import (
    out,
)
from siamese.cli.support import print_json as _print_json
from siamese.cli.support import report_skipped as _report_skipped
from siamese.evaluation.config import EvalConfig


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
