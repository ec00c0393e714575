"""The training loop: P×K (or seed-style) batches, online mining.

Adam with warm-up and cosine decay, validation on held-out identities every epoch, best-checkpoint
selection, early stopping, resume.

Reads top to bottom: resolve the config, load and split the data by identity, then for each epoch
train, validate, checkpoint, and stop early when validation stops improving.
"""

from __future__ import annotations

import contextlib
import math
import platform
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from siamese import __version__
from siamese.errors import ConfigError, DataError, SiameseError
from siamese.files import read_json, write_json_atomic
from siamese.progress import epoch_line, progress_bar
from siamese.spec import InputSpec
from siamese.training.augment import build_augmentation
from siamese.training.batches import flatten_views, make_loader, make_sampler, normalize_batch
from siamese.training.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from siamese.training.config import TrainConfig
from siamese.training.data import (
    ImageDataset,
    load_image_folder,
    split_identities,
    typical_image_size,
)
from siamese.training.distributed import (
    Ranks,
    broadcast_object,
    gather_objects,
    ranks_from_environment,
    setup,
    teardown,
)
from siamese.training.losses import Criterion, create_criterion
from siamese.training.losses.instance import InstanceLoss
from siamese.training.plots import plot_history
from siamese.training.run_dir import (
    BEST_WEIGHTS,
    CONFIG_FILE,
    HISTORY_FILE,
    LAST_WEIGHTS,
    LOSS_PLOT,
    save_weights,
    write_config,
)
from siamese.training.serving import EPOCH_PROJECTION_SAMPLE, embed_dataset, fit_projection
from siamese.training.step import TrainingForward, step_loss
from siamese.training.sync_batchnorm import synchronise_batch_norm
from siamese.training.towers import (
    DEFAULT_INPUT_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TORCHVISION_INPUT_SIZE,
    EmbeddingTower,
    count_parameters,
    create_tower,
    load_pretrained,
)
from siamese.training.validation import validation_metrics

#: Config fields that may change when resuming a run (everything else must match).
_RESUMABLE_CHANGES = {
    "out_dir",
    "epochs",
    "resume",
    "device",
    "workers",
    "threads",
    "patience",
    "amp",
}


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


def resolve_device(name: str) -> torch.device:
    """Map "auto" to CUDA when present; refuse "cuda" on a machine without it."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda was asked for, but PyTorch sees no CUDA device on this machine"
        )
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def default_input_size(config: TrainConfig) -> int:
    """The classic tower's fixed 100 px.

    For others the tower default, or the images' own size when smaller.

    Upscaling 28-px images to 64 px would cost 5× the compute and add no information.
    """
    default = DEFAULT_INPUT_SIZE.get(config.tower, TORCHVISION_INPUT_SIZE)
    if config.tower == "classic":
        return default
    native = typical_image_size(config.data_dir)
    return default if native <= 0 else int(min(default, max(32, -(-native // 8) * 8)))


def input_spec_for(config: TrainConfig) -> InputSpec:
    """The input spec a config implies: its size or the default.

    ImageNet statistics for pretrained backbones.
    """
    size = config.image_size or default_input_size(config)
    mean = std = None
    if config.weights:
        mean = IMAGENET_MEAN if config.channels == 3 else (float(np.mean(IMAGENET_MEAN)),)
        std = IMAGENET_STD if config.channels == 3 else (float(np.mean(IMAGENET_STD)),)
    return InputSpec.create(size, config.channels, mean=mean, std=std, resize=config.resize)


def tower_options(config: TrainConfig) -> dict[str, Any]:
    """The tower arguments a config sets explicitly (the rest keep the tower's defaults)."""
    options: dict[str, Any] = {}
    if config.head_dim is not None:
        options["head_dim"] = config.head_dim
    if config.tower != "classic":
        options["normalize"] = config.normalize
        options["embed_from"] = config.embed_from
        options["batch_norm"] = config.head_batch_norm
        if config.tower == "conv":
            options["grid"] = config.grid
            options["widths"] = list(
                config.widths
            )  # always recorded, so a changed default cannot change old runs
    return options


def write_untrained_run(config: TrainConfig, seed: int) -> Path:
    """A run folder at ``config.out_dir`` holding the config's tower at its initial weights.

    For tests and benchmarks that need a real exportable model but not a trained one: the
    weights are fixed by ``seed``, drawn without disturbing the caller's random stream.
    """
    run_dir = Path(config.out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = input_spec_for(config)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        tower = create_tower(config.tower, spec, tower_options(config)).eval()
    save_weights(tower, run_dir / BEST_WEIGHTS)
    write_config(
        run_dir,
        {
            "tower": {
                "name": config.tower,
                "options": tower_options(config),
                "embedding_dim": tower.embedding_dim,
                "normalized": bool(tower.normalized),
            },
            "input_spec": spec.to_dict(),
            "train": config.to_dict(),
        },
    )
    return run_dir


def _library_versions() -> dict[str, str]:
    import PIL
    import torchvision

    return {
        "siamese": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "python": platform.python_version(),
    }


def _schedule(config: TrainConfig, steps_per_epoch: int) -> Any:
    """Linear warm-up, then cosine decay to 1% of the learning rate (or constant); or one cycle."""
    total = config.epochs * steps_per_epoch
    warmup = int(config.warmup_epochs * steps_per_epoch)
    if config.schedule == "one-cycle":
        return _one_cycle(total)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _one_cycle(total: int, rise: float = 0.3) -> Any:
    """One cycle (Smith, 2018): from 1/25 of the learning rate up to it over the first 30% of the
    steps, then cosine down to 1/10,000 of it; its own warm-up, so ``warmup_epochs`` is unused.
    An option, not yet measured by the accuracy suite (issue 20)."""
    peak = max(1, int(rise * total))

    def factor(step: int) -> float:
        if step < peak:
            return 0.04 + 0.96 * step / peak
        progress = min(1.0, (step - peak) / max(1, total - peak))
        return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _autocast(device: torch.device, enabled: bool) -> Any:
    """bfloat16 (or float16) autocast on CUDA; nothing on CPU, where it would not pay."""
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return lambda: torch.autocast("cuda", dtype=dtype)


def _check_resumable(run_dir: Path, config: TrainConfig) -> None:
    saved = TrainConfig.from_dict(read_json(run_dir / CONFIG_FILE)["train"]).to_dict()
    changed = sorted(
        k for k, v in config.to_dict().items() if k not in _RESUMABLE_CHANGES and saved.get(k) != v
    )
    if changed:
        raise ConfigError(
            f"{run_dir}: cannot resume with different settings ({', '.join(changed)}); use the "
            "original ones or a new --out"
        )


def train(config: TrainConfig, *, progress: bool = False) -> TrainResult:
    """Train a tower as configured and write the run directory.

    Under torchrun (RANK/WORLD_SIZE in the environment) every process calls this: they join one
    process group, train on their share of each global batch, and rank 0 alone validates, fits the
    served projection and writes the run directory; every rank returns the same result.

    Args:
        config: the run's options.
        progress: show progress bars on stderr (rank 0 only).

    Returns:
        The run directory, per-epoch history and which epoch's weights were kept.

    Raises:
        DataError: unreadable or too small dataset.
        ConfigError: inconsistent options, an existing run without ``resume``, CUDA asked for but
            absent.
    """
    ranks = ranks_from_environment()
    if config.is_pair:  # --query-data or --captions: two towers (training/pair_trainer.py)
        if ranks.enabled:
            raise ConfigError("pair runs (--query-data, --captions) train in one process")
        from siamese.training.pair_trainer import train_pair

        return train_pair(config, progress=progress)
    device, joined = setup(ranks, resolve_device(config.device), config.threads)
    try:
        return _train(config, ranks, device, progress and ranks.is_main)
    finally:
        teardown(joined)


def _prepare_run_dir(config: TrainConfig, ranks: Ranks) -> dict[str, Any] | None:
    """Rank 0 checks the run directory (and reads the checkpoint to resume).

    Every rank gets the outcome.

    Agreeing first means a refused run stops every rank with rank 0's message instead of leaving
    the others waiting for it.
    """
    outcome: tuple[dict[str, Any] | None, SiameseError | None] = (None, None)
    if ranks.is_main:
        try:
            outcome = (check_run_dir(config, ranks), None)
        except SiameseError as exc:
            outcome = (None, exc)
    state, error = broadcast_object(ranks, outcome)
    if error is not None:
        if not ranks.is_main:
            error.reported_by_rank0 = True  # the CLI prints it once, from rank 0
        raise error
    return state


def check_run_dir(config: TrainConfig, ranks: Ranks) -> dict[str, Any] | None:
    """Refuse an existing run without ``resume``, or a resume that cannot continue.

    Return the checkpoint to resume.
    """
    run_dir = Path(config.out_dir)
    if (run_dir / CHECKPOINT_FILE).exists() and not config.resume:
        raise ConfigError(
            f"{run_dir}: already holds a training run; pass --resume to continue it or choose "
            "another --out"
        )
    if not config.resume:
        return None
    _check_resumable(run_dir, config)
    state = load_checkpoint(run_dir)
    written_by = int(state.get("world_size", 1))
    if written_by != ranks.world:
        raise ConfigError(
            f"{run_dir / CHECKPOINT_FILE}: written by {written_by} training process(es); resume it "
            f"with {written_by} (--nproc {written_by}, or torchrun's --nproc-per-node × --nnodes), "
            f"not {ranks.world}"
        )
    return state


def _train(config: TrainConfig, ranks: Ranks, device: torch.device, progress: bool) -> TrainResult:
    spec = input_spec_for(config)
    run_dir = Path(config.out_dir)
    torch.manual_seed(config.seed)

    tower = create_tower(config.tower, spec, tower_options(config))
    if config.weights:
        load_pretrained(tower, config.weights, config.tower)
    tower.to(device)
    # Channels-last: tensor cores on CUDA; oneDNN's faster convolutions for the conv tower on CPU
    # (about 20% less time per training step at 96 px, issue 20).
    channels_last = device.type == "cuda" or config.tower == "conv"
    if channels_last:
        tower.to(memory_format=torch.channels_last)
    normalized = bool(tower.normalized)
    criterion = create_criterion(
        config.loss,
        margin=config.margin,
        normalized=bool(tower.training_normalized),
        sampler=config.sampler,
        miner=config.miner,
    )
    config = replace(config, margin=criterion.margin, miner=criterion.miner_name)
    augmentation = build_augmentation(config.augment, config.flip)
    resumed = _prepare_run_dir(config, ranks)
    if ranks.enabled:  # each rank augments its own images differently, reproducibly
        torch.manual_seed(
            int(np.random.SeedSequence([config.seed, ranks.rank]).generate_state(1)[0])
        )
        tower = synchronise_batch_norm(tower, device)

    data = load_image_folder(config.data_dir, spec, progress=progress)
    train_ids, val_ids = split_identities(data.identities, config.val_fraction, config.seed)
    train_set, val_set = data.subset(train_ids), (data.subset(val_ids) if val_ids else None)
    if np.bincount(train_set.labels).max() < 2:
        raise DataError(
            f"{config.data_dir}: every training identity has a single image; need two or more per "
            "identity"
        )

    kind = criterion.tuple_kind if config.sampler == "random" else "batch"
    tuple_size = {"pairs": 2, "triplets": 3, "class-pair-triplets": 3}.get(kind)
    images_per_step = ranks.world * (
        tuple_size * config.batch_size
        if tuple_size
        else config.identities_per_batch * config.images_per_identity
    )
    steps = config.steps_per_epoch or max(
        config.min_steps_per_epoch, math.ceil(len(train_set) / images_per_step)
    )
    try:
        sampler = make_sampler(
            train_set.labels,
            config.sampler,
            kind,
            config.batch_size,
            config.identities_per_batch,
            config.images_per_identity,
            steps,
            config.seed,
            rank=ranks.rank,
            world=ranks.world,
        )
    except ValueError as exc:
        raise DataError(f"{config.data_dir}: {exc}") from None
    views = 2 if config.instance_weight > 0 else 1
    loader = make_loader(
        train_set,
        augmentation,
        sampler,
        config.workers,
        config.seed + ranks.rank,
        device.type == "cuda",
        views,
    )
    instance_loss = _instance_loss(tower, config.instance_weight).to(device) if views == 2 else None
    forward: nn.Module = TrainingForward(tower, instance_loss)
    trained = list(forward.parameters())

    optimizer = torch.optim.Adam(trained, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config, steps))
    autocast = _autocast(device, config.amp)
    scaler = torch.amp.GradScaler(
        "cuda", enabled=device.type == "cuda" and config.amp and not torch.cuda.is_bf16_supported()
    )

    metric = config.select_by if val_set is not None else "loss"
    history: list[dict[str, Any]] = []
    best_epoch, best_value, since_best, start_epoch = 0, -math.inf, 0, 1
    if resumed is not None:
        state = resumed
        tower.load_state_dict(state["model"])
        if instance_loss is not None and "instance" in state:
            instance_loss.load_state_dict(state["instance"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        sampler.rng.bit_generator.state = state["sampler_rng"]
        torch.set_rng_state(state.get("torch_rng_ranks", [state["torch_rng"]])[ranks.rank])
        history, best_epoch, best_value, since_best = (
            state["history"],
            state["best_epoch"],
            state["best_value"],
            state["since_best"],
        )
        start_epoch = state["epoch"] + 1
    elif ranks.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(
            run_dir,
            {
                "tower": {
                    "name": config.tower,
                    "options": tower_options(config),
                    "parameters": count_parameters(tower),
                    "embedding_dim": tower.embedding_dim,
                    "normalized": normalized,
                },
                "input_spec": spec.to_dict(),
                "loss": criterion.describe(),
                "train": config.to_dict(),
                "data": {
                    "dir": str(Path(config.data_dir).resolve()),
                    "images": len(data),
                    "train_identities": train_ids,
                    "val_identities": val_ids,
                    "skipped": [{"path": p, "reason": r} for p, r in data.skipped],
                },
                "device": str(device),
                **(
                    {"distributed": {"world_size": ranks.world, "backend": dist.get_backend()}}
                    if ranks.enabled
                    else {}
                ),
                "versions": _library_versions(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
        )
    if ranks.enabled:
        forward = DistributedDataParallel(
            forward, device_ids=[device.index] if device.type == "cuda" else None
        )

    stopped_early = False
    with progress_bar(f"epoch {start_epoch}/{config.epochs}", steps, progress) as ticker:
        for epoch in range(start_epoch, config.epochs + 1):
            started = time.perf_counter()
            ticker.reset(steps, f"epoch {epoch}/{config.epochs}")
            loss, images = _train_epoch(
                forward,
                criterion,
                instance_loss,
                loader,
                optimizer,
                scheduler,
                scaler,
                autocast,
                spec,
                device,
                channels_last,
                ticker,
                ranks,
            )
            train_seconds = time.perf_counter() - started
            torch_rngs = gather_objects(ranks, torch.get_rng_state())
            if ranks.is_main:
                fit_projection(
                    tower, train_set, device, channels_last, config.seed, EPOCH_PROJECTION_SAMPLE
                )
                row: dict[str, Any] = {
                    "epoch": epoch,
                    "loss": loss,
                    "lr": scheduler.get_last_lr()[0],
                }
                if val_set is not None:
                    embeddings = embed_dataset(tower, val_set, device, channels_last)
                    row.update(
                        {
                            f"val_{k}": v
                            for k, v in validation_metrics(
                                embeddings, val_set.labels, seed=config.seed
                            ).items()
                        }
                    )
                row["seconds"] = round(time.perf_counter() - started, 3)
                row["train_seconds"] = round(train_seconds, 3)
                row["images"] = images
                history.append(row)
                epoch_line(row, config.epochs, progress)

                value = row[f"val_{metric}"] if val_set is not None else -loss
                if value > best_value + 1e-6:
                    best_epoch, best_value, since_best = epoch, value, 0
                    save_weights(tower, run_dir / BEST_WEIGHTS)
                else:
                    since_best += 1
                save_weights(tower, run_dir / LAST_WEIGHTS)
                write_json_atomic(
                    run_dir / HISTORY_FILE,
                    {"metric": metric, "best_epoch": best_epoch, "epochs": history},
                )
                save_checkpoint(
                    run_dir,
                    {
                        "epoch": epoch,
                        "model": tower.state_dict(),
                        **(
                            {"instance": instance_loss.state_dict()}
                            if instance_loss is not None
                            else {}
                        ),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "sampler_rng": sampler.rng.bit_generator.state,
                        "torch_rng": torch_rngs[0],
                        **({"torch_rng_ranks": torch_rngs} if ranks.enabled else {}),
                        "world_size": ranks.world,
                        "history": history,
                        "best_epoch": best_epoch,
                        "best_value": best_value,
                        "since_best": since_best,
                    },
                )
                stopped_early = (
                    config.patience is not None
                    and val_set is not None
                    and since_best >= config.patience
                )
            # rank 0 decides; every rank must hear it, or the others would wait for a step forever
            if broadcast_object(ranks, stopped_early):
                stopped_early = True
                break

    if ranks.is_main:
        _refit_kept_projection(tower, train_set, device, channels_last, config.seed, run_dir)
        plot_history(history, run_dir / LOSS_PLOT)
    history, best_epoch, best_value = broadcast_object(ranks, (history, best_epoch, best_value))
    reported = best_value if val_set is not None else -best_value
    return TrainResult(run_dir, history, best_epoch, metric, reported, data.skipped, stopped_early)


def _refit_kept_projection(
    tower: nn.Module,
    train_set: ImageDataset,
    device: torch.device,
    channels_last: bool,
    seed: int,
    run_dir: Path,
) -> None:
    """Refit the kept epoch's served projection on the full sample (epochs fit a smaller one)."""
    best = run_dir / BEST_WEIGHTS
    if getattr(tower, "projection", None) is None or not best.is_file():
        return
    if len(train_set) <= EPOCH_PROJECTION_SAMPLE:
        return  # the epochs already saw every training image
    tower.load_state_dict(load_file(best, device=str(device)))
    fit_projection(tower, train_set, device, channels_last, seed)
    save_weights(tower, best)


def _instance_loss(tower: nn.Module, weight: float) -> InstanceLoss:
    """The instance term: on the backbone's features through its own projector, if there is one."""
    in_features = tower.head.linear.in_features if isinstance(tower, EmbeddingTower) else None
    return InstanceLoss(weight, in_features=in_features)


def _train_epoch(
    forward: nn.Module,
    criterion: Criterion,
    instance_loss: InstanceLoss | None,
    loader,
    optimizer,
    scheduler,
    scaler,
    autocast,
    spec: InputSpec,
    device: torch.device,
    channels_last: bool,
    ticker,
    ranks: Ranks,
) -> tuple[float, int]:
    """One pass over the epoch's batches.

    Returns the mean loss and the images trained on (all ranks).
    """
    forward.train()
    losses, images_seen = [], 0
    for images, labels in loader:
        images, labels, instances = flatten_views(images, labels)
        batch = normalize_batch(images.to(device, non_blocking=True), spec)
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        loss = step_loss(
            forward,
            criterion,
            instance_loss,
            batch,
            labels.to(device),
            instances.to(device) if instances is not None else None,
            ranks,
            autocast,
        )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        losses.append(loss.item())
        images_seen += len(batch) * ranks.world
        ticker.advance()
        ticker.describe(f"loss {np.mean(losses):.4f}")
    return float(np.mean(losses)), images_seen
