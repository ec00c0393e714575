"""Training a pseudo-siamese pair: a query tower and a gallery tower that meet in one space.

The towers may differ in kind (image/image, or text/image) and in input (grey 64 px sketches
against RGB 96 px photos): each side has its own tower, input spec or tokenizer, and
augmentation. Every step draws P training identities with K items on each side
(pair_data.PairSampler), embeds the query items with the query tower and the gallery items with
the gallery tower, and applies a cross-domain loss (losses/cross_domain.py) that compares queries
with gallery items only. ``--share-weights`` uses one tower for both sides (the Siamese special
case on the same data); its run directory is then an ordinary single-tower run, exported as one
model.onnx.

Validation embeds the held-out identities' query items with the query tower and their gallery
items (plus gallery-only identities as distractors) with the gallery tower and measures
cross-domain retrieval (recall@1/5, mAP@R, siamese.metrics); the best epoch's weights are kept,
as the single-tower trainer does, with the same optimiser, schedule, run-dir files and plots.

Run directory of an unshared pair (the contract with export/pair_export.py, read back by
:mod:`siamese.training.pair_run`): config.json with a ``pair`` section (``query`` and
``gallery``: kind, tower name/options, input spec or tokenizer file, weights file),
query.safetensors and gallery.safetensors (best epoch), their ``.last`` twins, tokenizer.json
for a text tower, history.json, loss.png and checkpoint.pt.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from siamese.errors import ConfigError
from siamese.files import write_bytes_atomic, write_json_atomic
from siamese.progress import epoch_line, progress_bar
from siamese.spec import InputSpec
from siamese.text import encode_texts, train_tokenizer
from siamese.training.augment import BatchAugmentation, build_augmentation
from siamese.training.batches import normalize_batch
from siamese.training.checkpoint import save_checkpoint
from siamese.training.config import TrainConfig
from siamese.training.data import ImageDataset
from siamese.training.distributed import ranks_from_environment
from siamese.training.losses.cross_domain import create_cross_loss
from siamese.training.pair_data import PairData, PairSampler, TextDataset, load_pair_data
from siamese.training.plots import plot_history
from siamese.training.run_dir import (
    BEST_WEIGHTS,
    HISTORY_FILE,
    LAST_WEIGHTS,
    LOSS_PLOT,
    save_weights,
    write_config,
)
from siamese.training.text_tower import TEXT_TOWER, create_text_tower
from siamese.training.towers import count_parameters, create_tower
from siamese.training.trainer import (
    TrainResult,
    _library_versions,
    _schedule,
    check_run_dir,
    input_spec_for,
    resolve_device,
    tower_options,
)

#: Weight files of an unshared pair's run directory, by role: (best, last).
PAIR_WEIGHTS = {
    "query": ("query.safetensors", "query.last.safetensors"),
    "gallery": ("gallery.safetensors", "gallery.last.safetensors"),
}
TOKENIZER_FILE = "tokenizer.json"
_EVAL_BATCH = 256


@dataclass
class Side:
    """One side of the pair: its tower and how it reads its input."""

    role: str
    tower: nn.Module
    spec: InputSpec | None = None
    augmentation: BatchAugmentation | None = None
    tokenizer: Any = None

    @property
    def kind(self) -> str:
        return "text" if self.spec is None else "image"

    def embed(self, data: ImageDataset | TextDataset, rows: np.ndarray, device: torch.device):
        """Embeddings of ``data``'s ``rows`` as the loss sees them (augmented in training mode)."""
        if isinstance(data, TextDataset):
            ids, mask = encode_texts(self.tokenizer, [data.texts[i] for i in rows])
            return self.tower(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
        pixels = torch.from_numpy(data.pixels[rows]).permute(0, 3, 1, 2)
        if self.tower.training and self.augmentation is not None:
            pixels = self.augmentation(pixels)
        assert self.spec is not None
        return self.tower.training_embedding(normalize_batch(pixels.to(device), self.spec))

    @torch.no_grad()
    def embed_all(self, data: ImageDataset | TextDataset, device: torch.device) -> np.ndarray:
        """Every item's served embedding, in eval mode (the mode is restored)."""
        was_training = self.tower.training
        self.tower.eval()
        chunks = []
        for start in range(0, len(data), _EVAL_BATCH):
            rows = np.arange(start, min(start + _EVAL_BATCH, len(data)))
            if isinstance(data, TextDataset):
                chunks.append(self.embed(data, rows, device).float().cpu().numpy())
            else:
                pixels = torch.from_numpy(data.pixels[rows]).permute(0, 3, 1, 2).to(device)
                assert self.spec is not None
                chunks.append(self.tower(normalize_batch(pixels, self.spec)).float().cpu().numpy())
        self.tower.train(was_training)
        return np.concatenate(chunks)

    def record(self, options: dict[str, Any], weights: str) -> dict[str, Any]:
        """This side in config.json's ``pair`` section."""
        record: dict[str, Any] = {
            "kind": self.kind,
            "tower": {
                "name": TEXT_TOWER if self.kind == "text" else options.pop("_name"),
                "options": options,
                "parameters": count_parameters(self.tower),
                "embedding_dim": int(self.tower.embedding_dim),
                "normalized": bool(self.tower.normalized),
            },
            "weights": weights,
        }
        if self.spec is not None:
            record["input_spec"] = self.spec.to_dict()
        else:
            record["tokenizer"] = TOKENIZER_FILE
        return record


def _image_options(config: TrainConfig, name: str) -> dict[str, Any]:
    """A pair's image tower serves its trained head: a feature projection fitted to one side's
    images would not share the other side's space."""
    options = tower_options(replace(config, tower=name, embed_from="head"))
    return {**options, "embed_from": "head"}


def _query_spec(config: TrainConfig) -> InputSpec:
    assert config.query_data is not None
    return input_spec_for(
        replace(
            config,
            data_dir=config.query_data,
            tower=config.query_tower or config.tower,
            image_size=config.query_image_size,
            channels=config.query_channels or config.channels,
            weights=None,
        )
    )


def train_pair(config: TrainConfig, *, progress: bool = False) -> TrainResult:
    """Train the query and gallery towers of ``config`` jointly and write the run directory.

    Raises:
        DataError: unreadable data, or too few identities on both sides.
        ConfigError: inconsistent options, an existing run, or CUDA asked for but absent.
    """
    if not config.is_pair:
        raise ConfigError("train_pair needs --query-data or --captions")
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    run_dir = Path(config.out_dir)
    check_run_dir(config, ranks_from_environment())

    gallery_spec = input_spec_for(config)
    shared = config.share_weights
    query_spec = gallery_spec if shared else (_query_spec(config) if config.query_data else None)
    data = load_pair_data(
        config.data_dir,
        gallery_spec,
        query_dir=config.query_data,
        query_spec=query_spec,
        captions=config.captions,
        val_fraction=config.val_fraction,
        seed=config.seed,
        progress=progress,
    )
    gallery_options = {**_image_options(config, config.tower), "_name": config.tower}
    gallery_tower = create_tower(config.tower, gallery_spec, _image_options(config, config.tower))
    gallery = Side("gallery", gallery_tower.to(device), gallery_spec)
    gallery.augmentation = build_augmentation(config.augment, config.flip)
    query, query_options = _query_side(config, data, query_spec, gallery_tower, device)

    miner = config.miner if config.miner in ("batch-hard", "batch-all") else None
    if config.pair_loss == "triplet" and config.miner not in (None, "batch-hard", "batch-all"):
        raise ConfigError(f"cross-domain triplets mine batch-hard or batch-all, not {config.miner}")
    criterion = create_cross_loss(config.pair_loss, config.margin, config.temperature, miner)
    criterion.to(device)
    config = replace(config, margin=getattr(criterion, "margin", None), miner=miner)

    sampler = PairSampler(
        data.train_query.labels,
        data.train_gallery.labels,
        config.identities_per_batch,
        config.images_per_identity,
        config.seed,
    )
    per_step = config.identities_per_batch * config.images_per_identity
    steps = config.steps_per_epoch or max(
        config.min_steps_per_epoch, math.ceil(len(data.train_gallery) / per_step)
    )
    towers = [gallery.tower] if shared else [query.tower, gallery.tower]
    parameters = [p for t in towers for p in t.parameters()] + list(criterion.parameters())
    optimizer = torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config, steps))

    run_dir.mkdir(parents=True, exist_ok=True)
    if query.tokenizer is not None:
        write_bytes_atomic(run_dir / TOKENIZER_FILE, query.tokenizer.to_str(pretty=True).encode())
    _write_pair_config(
        config, run_dir, data, query, query_options, gallery, gallery_options, criterion, device
    )

    metric = config.select_by if data.val_query is not None else "loss"
    if metric == "roc_auc":
        metric = "map_at_r"  # cross-domain selection ranks retrieval (README: Pairs)
    history: list[dict[str, Any]] = []
    best_epoch, best_value, since_best, stopped_early = 0, -math.inf, 0, False
    with progress_bar(f"epoch 1/{config.epochs}", steps, progress) as ticker:
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            ticker.reset(steps, f"epoch {epoch}/{config.epochs}")
            losses = []
            for tower in towers:
                tower.train()
            for _ in range(steps):
                query_rows, gallery_rows = sampler.batch()
                loss = criterion(
                    query.embed(data.train_query, query_rows, device),
                    torch.from_numpy(data.train_query.labels[query_rows]).to(device),
                    gallery.embed(data.train_gallery, gallery_rows, device),
                    torch.from_numpy(data.train_gallery.labels[gallery_rows]).to(device),
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                ticker.advance()
                ticker.describe(f"loss {np.mean(losses):.4f}")
            row: dict[str, Any] = {
                "epoch": epoch,
                "loss": float(np.mean(losses)),
                "lr": scheduler.get_last_lr()[0],
            }
            if hasattr(criterion, "temperature"):
                row["temperature"] = criterion.temperature
            if data.val_query is not None and data.val_gallery is not None:
                row.update(_validate(query, gallery, data, device))
            row["seconds"] = round(time.perf_counter() - started, 3)
            history.append(row)
            epoch_line(row, config.epochs, progress)
            value = row[f"val_{metric}"] if metric != "loss" else -row["loss"]
            if value > best_value + 1e-6:
                best_epoch, best_value, since_best = epoch, value, 0
                _save(query, gallery, run_dir, shared, best=True)
            else:
                since_best += 1
            _save(query, gallery, run_dir, shared, best=False)
            write_json_atomic(
                run_dir / HISTORY_FILE,
                {"metric": metric, "best_epoch": best_epoch, "epochs": history},
            )
            save_checkpoint(
                run_dir,
                {
                    "epoch": epoch,
                    "query": query.tower.state_dict(),
                    "gallery": gallery.tower.state_dict(),
                    "loss": criterion.state_dict(),
                    "history": history,
                    "best_epoch": best_epoch,
                },
            )
            if config.patience and metric != "loss" and since_best >= config.patience:
                stopped_early = True
                break
    plot_history(history, run_dir / LOSS_PLOT)
    reported = best_value if metric != "loss" else -best_value
    return TrainResult(run_dir, history, best_epoch, metric, reported, data.skipped, stopped_early)


def _query_side(
    config: TrainConfig,
    data: PairData,
    query_spec: InputSpec | None,
    gallery_tower: nn.Module,
    device: torch.device,
) -> tuple[Side, dict[str, Any]]:
    """The query side: the gallery's own tower (shared), another image tower, or a text tower."""
    if config.share_weights:
        assert query_spec is not None
        side = Side("query", gallery_tower, query_spec)
        side.augmentation = build_augmentation(config.augment, config.flip)
        return side, {}
    if query_spec is not None:
        name = config.query_tower or config.tower
        options = _image_options(config, name)
        tower = create_tower(name, query_spec, options).to(device)
        side = Side("query", tower, query_spec)
        side.augmentation = build_augmentation(config.augment, config.flip)
        return side, {**options, "_name": name}
    texts = data.train_query.texts  # the tokenizer learns the training captions only
    assert isinstance(data.train_query, TextDataset)
    tokenizer = train_tokenizer(texts, config.text_vocab_size, config.text_max_length)
    options = {
        "vocab_size": tokenizer.get_vocab_size(),
        "max_length": config.text_max_length,
        "layers": config.text_layers,
        "head_dim": int(gallery_tower.embedding_dim),
    }
    return Side("query", create_text_tower(options).to(device), tokenizer=tokenizer), options


def _validate(query: Side, gallery: Side, data: PairData, device: torch.device) -> dict[str, float]:
    """Cross-domain retrieval of held-out identities: query side against gallery side."""
    from siamese.metrics import retrieval_metrics

    assert data.val_query is not None and data.val_gallery is not None
    queries = query.embed_all(data.val_query, device)
    items = gallery.embed_all(data.val_gallery, device)
    found = retrieval_metrics(
        queries, data.val_query.labels, items, data.val_gallery.labels, (1, 5)
    )
    return {f"val_{k}": float(found[k]) for k in ("recall_at_1", "recall_at_5", "map_at_r")}


def _save(query: Side, gallery: Side, run_dir: Path, shared: bool, *, best: bool) -> None:
    if shared:
        save_weights(gallery.tower, run_dir / (BEST_WEIGHTS if best else LAST_WEIGHTS))
        return
    for side in (query, gallery):
        save_weights(side.tower, run_dir / PAIR_WEIGHTS[side.role][0 if best else 1])


def _write_pair_config(
    config: TrainConfig,
    run_dir: Path,
    data: PairData,
    query: Side,
    query_options: dict[str, Any],
    gallery: Side,
    gallery_options: dict[str, Any],
    criterion: nn.Module,
    device: torch.device,
) -> None:
    """config.json: the ``pair`` section, and for a shared tower the single-tower keys too."""
    loss = {"name": config.pair_loss, "margin": config.margin}
    if hasattr(criterion, "temperature"):
        loss.update(temperature=config.temperature, learnt=config.temperature is None)
    if config.pair_loss == "triplet":
        loss["miner"] = config.miner or "batch-hard"
    pair: dict[str, Any] = {"shared": config.share_weights, "loss": loss}
    single: dict[str, Any] = {}
    if config.share_weights:
        record = gallery.record(dict(gallery_options), BEST_WEIGHTS)
        single = {"tower": record["tower"], "input_spec": record["input_spec"]}
    else:
        pair["query"] = query.record(dict(query_options), PAIR_WEIGHTS["query"][0])
        pair["gallery"] = gallery.record(dict(gallery_options), PAIR_WEIGHTS["gallery"][0])
    write_config(
        run_dir,
        {
            **single,
            "pair": pair,
            "loss": loss,
            "train": config.to_dict(),
            "data": {
                "gallery_dir": str(Path(config.data_dir).resolve()),
                "query": str(Path(config.query_data or config.captions or "").resolve()),
                "images": data.images,
                "train_identities": data.train_identities,
                "val_identities": data.val_identities,
                "gallery_only_identities": data.gallery_only,
                "skipped": [{"path": p, "reason": r} for p, r in data.skipped],
            },
            "device": str(device),
            "versions": _library_versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )
