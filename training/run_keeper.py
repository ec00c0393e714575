"""The run keeper: what a training run remembers between epochs and across a restart.

It owns the history, the best epoch and its metric, patience, the best and last weights and the
checkpoint, for single-tower and pair runs alike; the loop (training/loop.py) hands it each
epoch's row and the job's state, and it decides whether to stop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siamese.core.files import write_json_atomic
from siamese.training.checkpoint import save_checkpoint
from siamese.training.run_dir import HISTORY_FILE


@dataclass
class RunKeeper:
    """History, best epoch, patience, weights and checkpoint of one run.

    Attributes:
        metric: the validation metric that picks the kept epoch ("loss" when nothing is
            validated: the lowest training loss is kept).
        save_weights: writes the job's weights, ``best=True`` as the kept epoch's.
    """

    run_dir: Path
    metric: str
    patience: int | None
    save_weights: Callable[[bool], None]
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_value: float = -math.inf
    since_best: int = 0

    @property
    def validated(self) -> bool:
        return self.metric != "loss"

    def restore(self, state: dict[str, Any]) -> int:
        """Take the history back from a checkpoint; returns the epoch to continue from."""
        self.history = list(state["history"])
        self.best_epoch = int(state["best_epoch"])
        self.best_value = float(state.get("best_value", -math.inf))
        self.since_best = int(state.get("since_best", 0))
        return int(state["epoch"]) + 1

    def end_epoch(self, row: dict[str, Any], state: dict[str, Any]) -> bool:
        """Record the epoch, keep its weights if best, checkpoint; True when patience ran out."""
        self.history.append(row)
        value = row[f"val_{self.metric}"] if self.validated else -row["loss"]
        if value > self.best_value + 1e-6:
            self.best_epoch, self.best_value, self.since_best = row["epoch"], value, 0
            self.save_weights(True)
        else:
            self.since_best += 1
        self.save_weights(False)
        write_json_atomic(
            self.run_dir / HISTORY_FILE,
            {"metric": self.metric, "best_epoch": self.best_epoch, "epochs": self.history},
        )
        save_checkpoint(self.run_dir, {**state, **self.remembered(row["epoch"])})
        return bool(self.patience and self.validated and self.since_best >= self.patience)

    def remembered(self, epoch: int) -> dict[str, Any]:
        """What a checkpoint keeps of the keeper."""
        return {
            "epoch": epoch,
            "history": self.history,
            "best_epoch": self.best_epoch,
            "best_value": self.best_value,
            "since_best": self.since_best,
        }

    def reported_value(self) -> float:
        """The kept epoch's metric as users read it (the loss itself, not its negative)."""
        return self.best_value if self.validated else -self.best_value


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    history: list[dict[str, Any]]
    best_epoch: int
    best_metric: str
    best_value: float
    skipped: list[tuple[str, str]]
    stopped_early: bool = False
    recipe: str = ""
    recipe_reason: str = ""
