"""Training a tower: resolve the recipe, build the job, run the loop, keep the best epoch.

Reads top to bottom: :func:`train` settles the recipe (training/recipes.py) and the device,
then a single-tower run builds its job here (the tower, P×K or seed-style batches, online
mining, validation on held-out identities) and hands it to the one training loop
(training/loop.py) with its run keeper; a pair run does the same with its own job
(training/pair_trainer.py).
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from siamese.core.errors import DataError
from siamese.training.augment import build_augmentation
from siamese.training.batches import flatten_views, make_loader, make_sampler, normalize_batch
from siamese.training.config import TrainConfig
from siamese.training.data import FolderLook, load_image_folder, split_identities
from siamese.training.distributed import (
    Ranks,
    broadcast_object,
    ranks_from_environment,
    run_record,
    teardown,
)
from siamese.training.distributed import setup as join_ranks
from siamese.training.loop import make_optimisation, run_job
from siamese.training.losses import create_criterion
from siamese.training.losses.instance import InstanceLoss
from siamese.training.pair_trainer import train_pair
from siamese.training.plots import plot_history
from siamese.training.recipes import apply_recipe
from siamese.training.run_dir import (
    BEST_WEIGHTS,
    LAST_WEIGHTS,
    LOSS_PLOT,
    save_weights,
    write_config,
)
from siamese.training.run_keeper import RunKeeper, TrainResult
from siamese.training.serving import EPOCH_PROJECTION_SAMPLE, embed_dataset, fit_projection
from siamese.training.setup import (
    autocast_for,
    input_spec_for,
    library_versions,
    prepare_run_dir,
    resolve_device,
    tower_options,
)
from siamese.training.step import TrainingForward, step_loss
from siamese.training.sync_batchnorm import synchronise_batch_norm
from siamese.training.towers import EmbeddingTower, count_parameters, create_tower
from siamese.training.towers.weights import describe_pretrained
from siamese.training.validation import validation_metrics


def train(config: TrainConfig, *, progress: bool = False) -> TrainResult:
    """Train a tower (or a pair of towers) as configured and write the run directory.

    Under torchrun (RANK/WORLD_SIZE in the environment) every process calls this: they join one
    process group, train on their share of each global batch, and rank 0 alone validates, fits the
    served projection and writes the run directory; every rank returns the same result.

    Args:
        config: the run's options; those left open (None) are filled by its recipe.
        progress: show progress bars on stderr (rank 0 only).

    Returns:
        The run directory, per-epoch history, which epoch's weights were kept, and the recipe.

    Raises:
        DataError: unreadable or too small dataset.
        ConfigError: inconsistent options, an existing run without ``resume``, CUDA asked for but
            absent, pretrained weights that cannot be had.
    """
    ranks = ranks_from_environment()
    config, choice = apply_recipe(config, resolve_device(config.device).type == "cuda")
    if progress and ranks.is_main:  # before the minutes of training it explains
        print(choice.line(), file=sys.stderr, flush=True)
    # a query folder or captions make a pair: two towers (training/pair_trainer.py)
    run = train_pair if config.is_pair else _train
    device, joined = join_ranks(ranks, resolve_device(config.device), config.threads)
    try:
        result = run(config, ranks, device, progress and ranks.is_main)
    except BaseException:
        teardown(joined, finished=False)
        raise
    teardown(joined)
    return replace(result, recipe=choice.recipe, recipe_reason=choice.line())


def write_untrained_run(config: TrainConfig, seed: int) -> Path:
    """A run folder at ``config.out_dir`` holding the config's tower at its initial weights.

    For tests and benchmarks that need a real exportable model but not a trained one: the
    weights are fixed by ``seed``, drawn without disturbing the caller's random stream.
    """
    nothing_seen = FolderLook(images=0, longer_side=0, colour=False)  # grey, unless configured
    config = apply_recipe(config, cuda=False, look=nothing_seen)[0]
    run_dir = Path(config.out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = input_spec_for(config)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        tower = create_tower(
            str(config.tower), spec, tower_options(config), config.starting_weights
        ).eval()
    save_weights(tower, run_dir / BEST_WEIGHTS)
    write_config(
        run_dir,
        {
            "tower": _tower_record(config, tower),
            "input_spec": spec.to_dict(),
            "train": config.to_dict(),
        },
    )
    return run_dir


def write_features_run(config: TrainConfig) -> Path:
    """A run serving a pretrained backbone's pooled features as they are, unit length: nothing
    trained, so a gallery can be built from ImageNet features in minutes and fine-tuned later.

    The served projection keeps every feature (an identity basis, no centring).
    """
    config = apply_recipe(config, cuda=False, look=FolderLook(0, 0, colour=True))[0]
    probe = create_tower(str(config.tower), input_spec_for(config), {"embed_from": "head"})
    features = int(probe.head.linear.in_features)
    return write_untrained_run(replace(config, embed_from="features", head_dim=features), seed=0)


def _tower_record(config: TrainConfig, tower: nn.Module) -> dict[str, Any]:
    """config.json's ``tower`` section: what export rebuilds the tower from."""
    record = {
        "name": config.tower,
        "options": tower_options(config),
        "parameters": count_parameters(tower),
        "embedding_dim": tower.embedding_dim,
        "normalized": bool(tower.normalized),
    }
    pretrained = describe_pretrained(str(config.tower), config.starting_weights)
    if pretrained:
        record["pretrained"] = pretrained
    return record


class TowerJob:
    """A single tower learning from P×K (or seed-style) batches of one ImageFolder."""

    def __init__(
        self, config: TrainConfig, ranks: Ranks, device: torch.device, progress: bool
    ) -> None:
        self.config, self.ranks, self.device = config, ranks, device
        self.spec = input_spec_for(config)
        torch.manual_seed(config.seed)
        self.tower = create_tower(
            str(config.tower), self.spec, tower_options(config), config.starting_weights
        ).to(device)
        # Channels-last: tensor cores on CUDA; oneDNN's faster convolutions for the conv tower on
        # CPU (about 20% less time per training step at 96 px).
        self.channels_last = device.type == "cuda" or config.tower == "conv"
        if self.channels_last:
            self.tower.to(memory_format=torch.channels_last)
        self.criterion = create_criterion(
            config.loss,
            margin=config.margin,
            normalized=bool(self.tower.training_normalized),
            sampler=config.sampler,
            miner=config.miner,
        )
        self.config = replace(config, margin=self.criterion.margin, miner=self.criterion.miner_name)
        self.progress = progress

    def _load_data(self) -> None:
        config = self.config
        data = load_image_folder(config.data_dir, self.spec, progress=self.progress)
        self.data = data
        self.train_ids, self.val_ids = split_identities(
            data.identities, config.val_fraction, config.seed
        )
        self.train_set = data.subset(self.train_ids)
        self.val_set = data.subset(self.val_ids) if self.val_ids else None
        if np.bincount(self.train_set.labels).max() < 2:
            raise DataError(
                f"{config.data_dir}: every training identity has a single image; need two or "
                "more per identity"
            )

    def prepare(self) -> int:
        """Sampler, loader, instance term and DDP wrapper; returns the steps per epoch."""
        self._load_data()
        config, ranks = self.config, self.ranks
        if ranks.enabled:  # each rank augments its own images differently, reproducibly
            seed = np.random.SeedSequence([config.seed, ranks.rank]).generate_state(1)[0]
            torch.manual_seed(int(seed))
            self.tower = synchronise_batch_norm(self.tower, self.device)
        kind = self.criterion.tuple_kind if config.sampler == "random" else "batch"
        tuple_size = {"pairs": 2, "triplets": 3, "class-pair-triplets": 3}.get(kind)
        per_step = ranks.world * (
            tuple_size * config.batch_size
            if tuple_size
            else config.identities_per_batch * config.images_per_identity
        )
        steps = config.steps_per_epoch or max(
            config.min_steps_per_epoch, math.ceil(len(self.train_set) / per_step)
        )
        self.sampler = self._sampler(kind, steps)
        views = 2 if config.instance_weight > 0 else 1
        self.loader = make_loader(
            self.train_set,
            build_augmentation(config.augment, config.flip),
            self.sampler,
            config.workers,
            config.seed + ranks.rank,
            self.device.type == "cuda",
            views,
        )
        self.instance_loss = (
            _instance_loss(self.tower, config.instance_weight).to(self.device)
            if views == 2
            else None
        )
        self.forward: nn.Module = TrainingForward(self.tower, self.instance_loss)
        self.parameters = list(self.forward.parameters())
        backbone = getattr(self.tower, "backbone", None)
        self.backbone = list(backbone.parameters()) if backbone is not None else []
        self.autocast = autocast_for(self.device, config.amp)
        return steps

    def _sampler(self, kind: str, steps: int) -> Any:
        config = self.config
        try:
            return make_sampler(
                self.train_set.labels,
                config.sampler,
                kind,
                config.batch_size,
                config.identities_per_batch,
                config.images_per_identity,
                steps,
                config.seed,
                rank=self.ranks.rank,
                world=self.ranks.world,
            )
        except ValueError as exc:
            raise DataError(f"{config.data_dir}: {exc}") from None

    def wrap_for_ranks(self) -> None:
        if self.ranks.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = DistributedDataParallel(self.forward, device_ids=ids)

    def begin_epoch(self) -> None:
        self.forward.train()
        if self.config.starting_weights:  # small P×K batches would drift ImageNet's statistics
            _freeze_batch_norm(self.tower.backbone)

    def batches(self) -> Any:
        return self.loader

    def step(self, batch: Any) -> tuple[torch.Tensor, int]:
        images, labels, instances = flatten_views(*batch)
        pixels = normalize_batch(images.to(self.device, non_blocking=True), self.spec)
        if self.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        loss = step_loss(
            self.forward,
            self.criterion,
            self.instance_loss,
            pixels,
            labels.to(self.device),
            instances.to(self.device) if instances is not None else None,
            self.ranks,
            self.autocast,
        )
        return loss, len(pixels)

    def validate(self) -> dict[str, float]:
        """Refit the served projection, then measure retrieval on the held-out identities."""
        config = self.config
        fit_projection(
            self.tower,
            self.train_set,
            self.device,
            self.channels_last,
            config.seed,
            EPOCH_PROJECTION_SAMPLE,
        )
        if self.val_set is None:
            return {}
        embeddings = embed_dataset(self.tower, self.val_set, self.device, self.channels_last)
        found = validation_metrics(embeddings, self.val_set.labels, seed=config.seed)
        return {f"val_{k}": v for k, v in found.items()}

    def state(self) -> dict[str, Any]:
        state = {
            "model": self.tower.state_dict(),
            "sampler_rng": self.sampler.rng.bit_generator.state,
        }
        if self.instance_loss is not None:
            state["instance"] = self.instance_loss.state_dict()
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        self.tower.load_state_dict(state["model"])
        if self.instance_loss is not None and "instance" in state:
            self.instance_loss.load_state_dict(state["instance"])
        self.sampler.rng.bit_generator.state = state["sampler_rng"]

    def save_weights(self, best: bool) -> None:
        save_weights(
            self.tower, Path(self.config.out_dir) / (BEST_WEIGHTS if best else LAST_WEIGHTS)
        )

    def write_config(self, device: torch.device) -> None:
        """config.json of a new run (rank 0)."""
        config, data = self.config, self.data
        distributed = run_record(self.ranks)
        write_config(
            Path(config.out_dir),
            {
                "tower": _tower_record(config, self.tower),
                "input_spec": self.spec.to_dict(),
                "loss": self.criterion.describe(),
                "train": config.to_dict(),
                "data": {
                    "dir": str(Path(config.data_dir).resolve()),
                    "images": len(data),
                    "train_identities": self.train_ids,
                    "val_identities": self.val_ids,
                    "skipped": [{"path": p, "reason": r} for p, r in data.skipped],
                },
                "device": str(device),
                **distributed,
                "versions": library_versions(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
        )

    def refit_kept_projection(self) -> None:
        """Refit the kept epoch's served projection on every sampled training image."""
        best = Path(self.config.out_dir) / BEST_WEIGHTS
        if getattr(self.tower, "projection", None) is None or not best.is_file():
            return
        if len(self.train_set) <= EPOCH_PROJECTION_SAMPLE:
            return  # the epochs already saw every training image
        self.tower.load_state_dict(load_file(best, device=str(self.device)))
        fit_projection(
            self.tower, self.train_set, self.device, self.channels_last, self.config.seed
        )
        save_weights(self.tower, best)


def _train(config: TrainConfig, ranks: Ranks, device: torch.device, progress: bool) -> TrainResult:
    job = TowerJob(config, ranks, device, progress)
    config = job.config
    resumed = prepare_run_dir(config, ranks)
    steps = job.prepare()
    optimisation = make_optimisation(
        config, job.parameters, job.backbone, steps, device=device, distributed=ranks.enabled
    )
    metric = config.select_by if job.val_set is not None else "loss"
    run_dir = Path(config.out_dir)
    keeper = RunKeeper(run_dir, metric, config.patience, job.save_weights)

    def start() -> None:
        if ranks.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            job.write_config(device)

    assert config.epochs is not None
    stopped = run_job(
        job,
        optimisation,
        keeper,
        resumed,
        start=start,
        ready=job.wrap_for_ranks,
        epochs=config.epochs,
        steps=steps,
        ranks=ranks,
        progress=progress,
    )
    if ranks.is_main:
        job.refit_kept_projection()
        plot_history(keeper.history, run_dir / LOSS_PLOT)
    history, best_epoch, value = broadcast_object(
        ranks, (keeper.history, keeper.best_epoch, keeper.reported_value())
    )
    return TrainResult(run_dir, history, best_epoch, metric, value, job.data.skipped, stopped)


def _freeze_batch_norm(module: nn.Module) -> None:
    """Batch-norm layers use and keep their running statistics (their affine terms still learn)."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()


def _instance_loss(tower: nn.Module, weight: float) -> InstanceLoss:
    """The instance term: on the backbone's features through its own projector, if there is one."""
    in_features = tower.head.linear.in_features if isinstance(tower, EmbeddingTower) else None
    return InstanceLoss(weight, in_features=in_features)
