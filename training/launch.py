"""`siamese train --nproc N`: torchrun's elastic agent for one machine, started from Python.

The agent (torch.distributed.launcher, the library torchrun itself runs) starts N worker
processes with the rendezvous environment set, watches them, and stops them all when one fails;
each worker calls :func:`siamese.training.train`, which joins the group. Several machines use
torchrun directly (docs/guide/distributed.md).
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, record

from siamese.core.errors import ConfigError, SiameseError, named
from siamese.core.files import read_json
from siamese.training.config import TrainConfig
from siamese.training.distributed import Ranks
from siamese.training.run_dir import HISTORY_FILE
from siamese.training.run_keeper import TrainResult
from siamese.training.setup import check_run_dir
from siamese.training.trainer import train


class TrainingFailed(SiameseError):
    """A training process died or raised; the agent stopped the others."""


@record  # writes the worker's exception where the agent reads the root cause
def _worker(config: TrainConfig, progress: bool) -> TrainResult:
    try:
        return train(config, progress=progress)
    except SiameseError as exc:
        exc.args = (exc.template,)  # the agent records str(exc): keep its settings marked
        raise


def launch(config: TrainConfig, nproc: int, *, progress: bool = False) -> TrainResult:
    """Train with ``nproc`` processes on this machine and return rank 0's result.

    Raises:
        ConfigError: ``nproc`` below 1, or called inside a job torchrun already started.
        TrainingFailed: a process failed; the message names its rank and why, and how to resume.
    """
    if nproc < 1:
        raise ConfigError(
            f"the number of training processes ({named('nproc')}) must be at least 1, got {nproc}"
        )
    if nproc == 1:
        return train(config, progress=progress)
    if "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(
            f"siamese starts its own training processes ({named('nproc')}) only outside "
            "torchrun; under torchrun leave it out (torchrun's --nproc-per-node says how many)"
        )
    if not config.resume:  # refuse an existing run before starting processes, not after
        check_run_dir(config, Ranks(world=nproc))
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    launch_config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # torchrun --standalone: a free port on this machine
        max_restarts=0,
        monitor_interval=0.5,
        start_method="spawn",
    )
    # the agent logs a failure as a traceback and each process it stops; we report it in one line
    logs = [logging.getLogger(n) for n in ("torch.distributed.elastic", "torch.multiprocessing")]
    levels = [log.level for log in logs]
    for log in logs:
        log.setLevel(logging.CRITICAL)
    try:
        results = elastic_launch(launch_config, _worker)(config, progress)
    except ChildFailedError as exc:
        raise TrainingFailed(describe_failure(exc, Path(config.out_dir))) from None
    finally:
        for log, level in zip(logs, levels):
            log.setLevel(level)
    return results[0]


def describe_failure(exc: ChildFailedError, run_dir: Path) -> str:
    """One line: which rank failed and why, and how to go on.

    Rank 0's error comes first: on a refused run the other ranks only echo it. A user error (a
    SiameseError: bad data, an existing run) is its own message; a crash or a killed process
    names the rank, the cause, and the checkpoint ``--resume`` continues from.
    """
    rank = 0 if 0 in exc.failures else exc.get_first_failure()[0]
    failure = exc.failures[rank]
    message: Any = failure.message
    if isinstance(message, dict):
        message = message.get("message", "")
    lines = str(message).strip().splitlines()
    message = lines[0] if lines else ""
    kind, _, text = message.partition(": ")
    if failure.exitcode > 0 and text and kind in _error_names(SiameseError):
        return text if rank == 0 else f"rank {rank}: {text}"
    if failure.exitcode < 0:
        why = f"killed by signal {failure.signal_name()}"
    elif text and not message.startswith("To enable traceback"):
        why = message
    else:
        why = f"exit code {failure.exitcode}"
    return (
        f"training process rank {rank} failed ({why}); the other processes were stopped. "
        + _resume_hint(run_dir)
    )


def _error_names(cls: type) -> set[str]:
    return {cls.__name__}.union(*(_error_names(sub) for sub in cls.__subclasses__()))


def _resume_hint(run_dir: Path) -> str:
    try:
        epochs = read_json(run_dir / HISTORY_FILE)["epochs"]
    except (OSError, KeyError, TypeError, ValueError):
        return "No epoch had finished, so there is no checkpoint to resume."
    if not epochs:
        return "No epoch had finished, so there is no checkpoint to resume."
    return (
        f"Epoch {epochs[-1]['epoch']} is checkpointed in {run_dir}: resume the run "
        f"({named('resume')}) to continue."
    )
