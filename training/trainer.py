"""The training loop: sample pairs or triplets, update the tower with Adam, keep the best weights.

Reads top to bottom: resolve the config, load and split the data by identity, then for each
epoch train on sampled tuples, measure recall@1 on held-out identities, and checkpoint.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from siamese import __version__
from siamese.engine.image import normalize
from siamese.errors import ConfigError, DataError
from siamese.io import write_json_atomic
from siamese.progress import progress_bar
from siamese.spec import InputSpec
from siamese.training.config import TrainConfig
from siamese.training.data import ImageDataset, load_image_folder, split_identities
from siamese.training.losses import create_loss
from siamese.training.plots import plot_history
from siamese.training.run_dir import BEST_WEIGHTS, HISTORY_FILE, LAST_WEIGHTS, LOSS_PLOT, save_weights, write_config
from siamese.training.samplers import sample_pairs, sample_triplets
from siamese.training.towers import DEFAULT_INPUT_SIZE, count_parameters, create_tower

_EVAL_BATCH = 256


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    history: list[dict[str, Any]]
    best_epoch: int
    best_metric: str
    best_value: float
    skipped: list[tuple[str, str]]


def resolve_device(name: str) -> torch.device:
    """Map "auto" to CUDA when present; refuse "cuda" on a machine without it."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but PyTorch sees no CUDA device on this machine")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def input_spec_for(config: TrainConfig) -> InputSpec:
    """The input spec a config implies (tower default size when none is given)."""
    size = config.image_size or DEFAULT_INPUT_SIZE.get(config.tower, 96)
    return InputSpec.create(size, config.channels, resize=config.resize)


def tower_options(config: TrainConfig) -> dict[str, Any]:
    """The tower arguments a config sets explicitly (the rest keep the tower's defaults)."""
    options: dict[str, Any] = {}
    if config.embedding_dim is not None:
        options["embedding_dim"] = config.embedding_dim
    if config.tower != "seed":
        options["normalize"] = config.normalize
        if config.widths is not None:
            options["widths"] = list(config.widths)
    return options


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


def _batch_tensor(dataset: ImageDataset, indices: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(normalize(dataset.pixels[indices], dataset.spec)).to(device, non_blocking=True)


@torch.no_grad()
def embed_dataset(tower: nn.Module, dataset: ImageDataset, device: torch.device) -> torch.Tensor:
    """Embed every image of a dataset with the tower in eval mode (restores the previous mode)."""
    was_training = tower.training
    tower.eval()
    chunks = [
        tower(_batch_tensor(dataset, np.arange(start, min(start + _EVAL_BATCH, len(dataset))), device)).float()
        for start in range(0, len(dataset), _EVAL_BATCH)
    ]
    tower.train(was_training)
    return torch.cat(chunks)


def recall_at_1(embeddings: torch.Tensor, labels: torch.Tensor) -> float:
    """Leave-one-out recall@1: the share of images whose nearest other image has the same identity."""
    distances = torch.cdist(embeddings, embeddings)
    distances.fill_diagonal_(float("inf"))
    nearest = distances.argmin(dim=1)
    return float((labels[nearest] == labels).float().mean())


def _sample(loss: nn.Module, labels: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    if loss.sampling == "pairs":
        return list(sample_pairs(labels, count, rng))
    return list(sample_triplets(labels, count, rng))


def _train_step(tower: nn.Module, loss_fn: nn.Module, dataset: ImageDataset, batch: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """One forward pass of all tuple members at once (the towers share weights), returning the loss."""
    if loss_fn.sampling == "pairs":
        first, second, target = batch
        out = tower(_batch_tensor(dataset, np.concatenate([first, second]), device))
        a, b = out.split(len(first))
        return loss_fn(a, b, torch.from_numpy(target).to(device))
    out = tower(_batch_tensor(dataset, np.concatenate(batch), device))
    return loss_fn(*out.split(len(batch[0])))


def train(config: TrainConfig, *, progress: bool = False) -> TrainResult:
    """Train a tower as configured and write the run directory.

    Args:
        config: the run's options.
        progress: show progress bars on stderr.

    Returns:
        The run directory, per-epoch history and which epoch's weights were kept.

    Raises:
        DataError: unreadable or too small dataset.
        ConfigError: inconsistent options (unknown tower or loss, CUDA asked for but absent).
    """
    spec = input_spec_for(config)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)

    tower = create_tower(config.tower, spec, tower_options(config)).to(device)
    normalized = bool(getattr(tower, "normalized", False))
    loss_fn = create_loss(config.loss, config.margin, normalized)
    config = replace(config, margin=loss_fn.margin)

    data = load_image_folder(config.data_dir, spec, progress=progress)
    train_ids, val_ids = split_identities(data.identities, config.val_fraction, config.seed)
    train_set, val_set = data.subset(train_ids), data.subset(val_ids) if val_ids else None
    if np.bincount(train_set.labels).max() < 2:
        raise DataError(f"{config.data_dir}: every training identity has a single image; need two or more per identity")

    run_dir = Path(config.out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(
        run_dir,
        {
            "tower": {"name": config.tower, "options": tower_options(config), "parameters": count_parameters(tower),
                      "embedding_dim": tower.embedding_dim, "normalized": normalized},
            "input_spec": spec.to_dict(),
            "loss": {"name": config.loss, "margin": loss_fn.margin},
            "train": config.to_dict(),
            "data": {
                "dir": str(Path(config.data_dir).resolve()),
                "images": len(data),
                "train_identities": train_ids,
                "val_identities": val_ids,
                "skipped": [{"path": p, "reason": r} for p, r in data.skipped],
            },
            "device": str(device),
            "versions": _library_versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )

    optimizer = torch.optim.Adam(tower.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    samples = config.samples_per_epoch or len(train_set)
    steps = max(1, samples // config.batch_size)
    val_labels = torch.from_numpy(val_set.labels).to(device) if val_set else None
    history: list[dict[str, Any]] = []
    best_epoch, best_value = 0, -float("inf")
    metric = "val_recall_at_1" if val_set else "loss"

    with progress_bar(f"epoch 1/{config.epochs}", steps, progress) as ticker:
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            tower.train()
            ticker.reset(steps, f"epoch {epoch}/{config.epochs}")
            tuples = _sample(loss_fn, train_set.labels, steps * config.batch_size, rng)
            losses = []
            for step in range(steps):
                window = slice(step * config.batch_size, (step + 1) * config.batch_size)
                loss = _train_step(tower, loss_fn, train_set, [t[window] for t in tuples], device)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                ticker.advance()
                ticker.describe(f"epoch {epoch}/{config.epochs} loss {np.mean(losses):.4f}")
            row: dict[str, Any] = {"epoch": epoch, "loss": float(np.mean(losses))}
            if val_set is not None:
                row["val_recall_at_1"] = recall_at_1(embed_dataset(tower, val_set, device), val_labels)
            row["seconds"] = round(time.perf_counter() - started, 3)
            history.append(row)

            value = row[metric] if val_set is not None else -row["loss"]
            if value > best_value:
                best_epoch, best_value = epoch, value
                save_weights(tower, run_dir / BEST_WEIGHTS)
            save_weights(tower, run_dir / LAST_WEIGHTS)
            write_json_atomic(run_dir / HISTORY_FILE, {"metric": metric, "best_epoch": best_epoch, "epochs": history})

    plot_history(history, run_dir / LOSS_PLOT)
    reported = best_value if val_set is not None else -best_value
    return TrainResult(run_dir, history, best_epoch, metric, reported, data.skipped)
