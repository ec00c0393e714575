"""The training loop, one for every kind of run: epochs of steps, then validate and keep.

A job (a single tower on P×K batches, or a query and a gallery tower on paired batches) says
how to draw a step's batch, what its loss is, how to validate and what to save; the loop runs
the optimiser, the schedule and the epochs, and the run keeper (run_keeper.py) keeps the
history, the best weights and the checkpoint. Under torchrun every rank runs the loop; rank 0
alone validates and writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from siamese.core.progress import epoch_line, progress_bar
from siamese.training.config import TrainConfig
from siamese.training.distributed import Ranks, broadcast_object, gather_objects
from siamese.training.run_keeper import RunKeeper
from siamese.training.setup import backbone_schedule, lr_schedule


class TrainingJob(Protocol):
    """What the loop needs of a kind of run."""

    def begin_epoch(self) -> None:
        """Put the towers in training mode (batch-norm statistics of a pretrained backbone
        stay frozen)."""

    def batches(self) -> Iterable[Any]:
        """This epoch's batches (for this rank)."""

    def step(self, batch: Any) -> tuple[torch.Tensor, int]:
        """The batch's loss and how many images (or texts) this rank embedded for it."""

    def validate(self) -> dict[str, float]:
        """Metrics of the epoch's towers on held-out identities (rank 0 only)."""

    def state(self) -> dict[str, Any]:
        """The job's part of a checkpoint: weights, sampler state."""

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's job part."""

    def save_weights(self, best: bool) -> None:
        """Write the towers' weights, as the kept epoch's when ``best``."""


@dataclass
class Optimisation:
    """Adam with the run's schedule; a pretrained backbone in a group of its own, frozen first."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    backbone: list[nn.Parameter]
    frozen_steps: int
    toggle_grads: bool  # not under DDP, which must see the same parameters learn at every step

    def before_step(self) -> None:
        """A frozen backbone computes no gradients: a frozen step costs its forward pass only."""
        if self.toggle_grads and self.backbone:
            learning = self.scheduler.last_epoch >= self.frozen_steps
            for parameter in self.backbone:
                parameter.requires_grad_(learning)

    def state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


def make_optimisation(
    config: TrainConfig,
    parameters: list[nn.Parameter],
    backbone: list[nn.Parameter],
    steps_per_epoch: int,
    *,
    device: torch.device,
    distributed: bool = False,
) -> Optimisation:
    """The run's optimiser over ``parameters``; ``backbone`` (a subset) gets its own rate.

    Without a separate rate or freeze (training from scratch) there is one group, as always.
    """
    own = {id(p) for p in backbone}
    frozen = int((config.freeze_epochs or 0.0) * steps_per_epoch)
    separate = bool(backbone) and (config.backbone_lr not in (None, 1.0) or frozen > 0)
    head = [p for p in parameters if id(p) not in own] if separate else parameters
    groups: list[dict[str, Any]] = [{"params": head, "lr": config.lr}]
    schedules = [lr_schedule(config, steps_per_epoch)]
    if separate:
        groups.append({"params": backbone, "lr": config.lr * (config.backbone_lr or 1.0)})
        schedules.append(backbone_schedule(config, steps_per_epoch))
    optimizer = torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedules)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and config.amp and not bf16)
    return Optimisation(
        optimizer, scheduler, scaler, backbone if separate else [], frozen, not distributed
    )


def fit(
    job: TrainingJob,
    keeper: RunKeeper,
    optimisation: Optimisation,
    *,
    epochs: int,
    start_epoch: int,
    steps: int,
    ranks: Ranks,
    progress: bool,
) -> bool:
    """Train epochs ``start_epoch``..``epochs``; True when patience stopped the run early."""
    with progress_bar(f"epoch {start_epoch}/{epochs}", steps, progress) as ticker:
        for epoch in range(start_epoch, epochs + 1):
            started = time.perf_counter()
            ticker.reset(steps, f"epoch {epoch}/{epochs}")
            loss, images = _train_epoch(job, optimisation, ticker, ranks)
            train_seconds = time.perf_counter() - started
            torch_rngs = gather_objects(ranks, torch.get_rng_state())
            stop = False
            if ranks.is_main:
                lr = optimisation.scheduler.get_last_lr()[0]
                row: dict[str, Any] = {"epoch": epoch, "loss": loss, "lr": lr, **job.validate()}
                row["seconds"] = round(time.perf_counter() - started, 3)
                row["train_seconds"] = round(train_seconds, 3)
                row["images"] = images
                epoch_line(row, epochs, progress)
                rng = {"torch_rng": torch_rngs[0], "world_size": ranks.world}
                if ranks.enabled:
                    rng["torch_rng_ranks"] = torch_rngs
                stop = keeper.end_epoch(row, {**job.state(), **optimisation.state(), **rng})
            # rank 0 decides; every rank must hear it, or the others would wait for a step forever
            if broadcast_object(ranks, stop):
                return True
    return False


def run_job(
    job: TrainingJob,
    optimisation: Optimisation,
    keeper: RunKeeper,
    resumed: dict[str, Any] | None,
    *,
    start: Callable[[], None],
    ready: Callable[[], None] | None = None,
    epochs: int,
    steps: int,
    ranks: Ranks,
    progress: bool,
) -> bool:
    """Continue a checkpoint (``resumed``) or ``start`` a new run, then train every epoch left.

    ``ready`` runs once the weights are in place, before the first step (DDP wraps the tower
    there). Returns True when patience stopped the run early.
    """
    start_epoch = 1
    if resumed is not None:
        start_epoch = resume(job, keeper, optimisation, resumed, ranks)
    else:
        start()
    if ready is not None:
        ready()
    return fit(
        job,
        keeper,
        optimisation,
        epochs=epochs,
        start_epoch=start_epoch,
        steps=steps,
        ranks=ranks,
        progress=progress,
    )


def resume(
    job: TrainingJob,
    keeper: RunKeeper,
    optimisation: Optimisation,
    state: dict[str, Any],
    ranks: Ranks,
) -> int:
    """Continue from a checkpoint: job, optimiser, this rank's random stream, history.

    Returns the first epoch still to train.
    """
    job.load_state(state)
    optimisation.load_state(state)
    torch.set_rng_state(state.get("torch_rng_ranks", [state["torch_rng"]])[ranks.rank])
    return keeper.restore(state)


def _train_epoch(
    job: TrainingJob, optimisation: Optimisation, ticker: Any, ranks: Ranks
) -> tuple[float, int]:
    """One pass over the epoch's batches: the mean loss and the images trained on (all ranks)."""
    job.begin_epoch()
    losses, seen = [], 0
    for batch in job.batches():
        optimisation.before_step()
        loss, images = job.step(batch)
        optimisation.optimizer.zero_grad(set_to_none=True)
        optimisation.scaler.scale(loss).backward()
        optimisation.scaler.step(optimisation.optimizer)
        optimisation.scaler.update()
        optimisation.scheduler.step()
        losses.append(loss.item())
        seen += images * ranks.world
        ticker.advance()
        ticker.describe(f"loss {np.mean(losses):.4f}")
    return float(np.mean(losses)), seen
