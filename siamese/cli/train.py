"""`siamese train`: train a tower (or a pair) in this process, under torchrun, or with --nproc."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from siamese.cli.fields import config_from_options, with_config_options
from siamese.cli.support import (
    EXIT_ERROR,
    out,
)
from siamese.cli.support import friendly_errors as _friendly_errors
from siamese.cli.support import print_json as _print_json
from siamese.cli.support import report_skipped as _report_skipped
from siamese.core.errors import SiameseError
from siamese.training.config import TrainConfig


@_friendly_errors
@with_config_options(TrainConfig)
def train(
    nproc: Annotated[
        int,
        typer.Option(
            min=1,
            help="Training processes on this machine (torchrun's elastic agent; one per GPU). "
            "--identities-per-batch and --batch-size are per process. Several machines: torchrun "
            "(docs/guide/distributed.md).",
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
        raise SiameseError(f"rank {ranks.rank}: {exc.template}") from None  # settings kept
    return result if ranks.is_main else None
