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
cross-domain retrieval (recall@1/5, mAP@R, siamese.core.metrics); the best epoch's weights are kept,
as the single-tower trainer does, with the same optimiser, schedule, run-dir files and plots.

Run directory of an unshared pair (the contract with export/pair_export.py, read back by
:mod:`siamese.training.pair_run`): config.json with a ``pair`` section (``query`` and
``gallery``: kind, tower name/options, input spec or tokenizer file, weights file),
query.safetensors and gallery.safetensors (best epoch), their ``.last`` twins, tokenizer.json
for a text tower, history.json, loss.png and checkpoint.pt.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from siamese.contracts.spec import InputSpec
from siamese.core.errors import ConfigError, DataError
from siamese.core.files import write_bytes_atomic
from siamese.data.text import encode_texts, train_tokenizer
from siamese.training.augment import BatchAugmentation, build_augmentation
from siamese.training.batches import normalize_batch
from siamese.training.config import TrainConfig
from siamese.training.data import ImageDataset, look_at_folder
from siamese.training.distributed import Ranks, broadcast_object, gather_batch, run_record
from siamese.training.loop import make_optimisation, run_job
from siamese.training.losses.cross_domain import create_cross_loss
from siamese.training.pair_data import PairData, PairSampler, TextDataset, load_pair_data
from siamese.training.plots import plot_history
from siamese.training.run_dir import (
    BEST_WEIGHTS,
    LAST_WEIGHTS,
    LOSS_PLOT,
    save_weights,
    write_config,
)
from siamese.training.run_keeper import RunKeeper, TrainResult
from siamese.training.setup import (
    autocast_for,
    check_run_dir,
    input_spec_for,
    library_versions,
    tower_options,
)
from siamese.training.sync_batchnorm import synchronise_batch_norm
from siamese.training.text_tower import TEXT_TOWER, create_text_tower
from siamese.training.towers import count_parameters, create_tower

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

    def inputs(
        self, data: ImageDataset | TextDataset, rows: np.ndarray, device: torch.device
    ) -> tuple[torch.Tensor, ...]:
        """What the tower takes for ``data``'s ``rows``: token ids and mask, or normalised pixels
        (augmented in training mode)."""
        if isinstance(data, TextDataset):
            ids, mask = encode_texts(self.tokenizer, [data.texts[i] for i in rows])
            return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)
        pixels = torch.from_numpy(data.pixels[rows]).permute(0, 3, 1, 2)
        if self.tower.training and self.augmentation is not None:
            pixels = self.augmentation(pixels)
        assert self.spec is not None
        return (normalize_batch(pixels.to(device), self.spec),)

    @torch.no_grad()
    def embed_all(self, data: ImageDataset | TextDataset, device: torch.device) -> np.ndarray:
        """Every item's served embedding, in eval mode (the mode is restored)."""
        was_training = self.tower.training
        self.tower.eval()
        chunks = []
        for start in range(0, len(data), _EVAL_BATCH):
            rows = np.arange(start, min(start + _EVAL_BATCH, len(data)))
            chunks.append(self.tower(*self.inputs(data, rows, device)).float().cpu().numpy())
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


class PairForward(nn.Module):
    """Both towers' training forward pass, the module DDP wraps; it holds the cross-domain loss
    too, so a learnt temperature is averaged over the ranks like the towers' weights."""

    def __init__(self, query: Side, gallery: Side, criterion: nn.Module) -> None:
        super().__init__()
        self.query_tower, self.gallery_tower, self.criterion = query.tower, gallery.tower, criterion

    def forward(
        self, query_inputs: tuple[torch.Tensor, ...], gallery_inputs: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(query embeddings, gallery embeddings) as the loss sees them."""
        return (
            self.query_tower.training_embedding(*query_inputs),
            self.gallery_tower.training_embedding(*gallery_inputs),
        )


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
            channels=config.query_channels or _channels_of(config.query_data),
            pretrained=None,
        )
    )


def _channels_of(folder: str) -> int:
    """A query side's channels when not given: as its own images are (sketches are grey)."""
    return 3 if look_at_folder(folder).colour else 1


def train_pair(
    config: TrainConfig, ranks: Ranks, device: torch.device, progress: bool
) -> TrainResult:
    """Train the query and gallery towers of a resolved ``config`` jointly; write the run dir.

    Under torchrun every rank calls this in the process group training/distributed.py joined;
    rank 0 alone validates and writes, and every rank returns the same result.

    Raises:
        DataError: unreadable data, or too few identities on both sides.
        ConfigError: inconsistent options, an existing run, or CUDA asked for but absent.
    """
    if not config.is_pair:
        raise ConfigError("train_pair needs a query folder (query_data) or captions")
    resumed = check_run_dir(config, ranks)
    job = PairJob(config, ranks, device, progress)
    config, run_dir = job.config, Path(config.out_dir)
    steps = job.steps()
    optimisation = make_optimisation(
        config, job.parameters(), [], steps, device=device, distributed=ranks.enabled
    )
    metric = config.select_by if job.data.val_query is not None else "loss"
    if metric == "roc_auc":
        metric = "map_at_r"  # cross-domain selection ranks retrieval (docs/guide/pairs.md)
    keeper = RunKeeper(run_dir, metric, config.patience, job.save_weights)
    assert config.epochs is not None
    stopped = run_job(
        job,
        optimisation,
        keeper,
        resumed,
        start=job.write_run_files,
        ready=job.wrap_for_ranks,
        epochs=config.epochs,
        steps=steps,
        ranks=ranks,
        progress=progress,
    )
    if ranks.is_main:
        plot_history(keeper.history, run_dir / LOSS_PLOT)
    history, best_epoch, value = broadcast_object(
        ranks, (keeper.history, keeper.best_epoch, keeper.reported_value())
    )
    return TrainResult(run_dir, history, best_epoch, metric, value, job.data.skipped, stopped)


class PairJob:
    """A query tower and a gallery tower learning one space from paired P×K batches."""

    def __init__(
        self, config: TrainConfig, ranks: Ranks, device: torch.device, progress: bool
    ) -> None:
        torch.manual_seed(config.seed)
        self.ranks, self.device = ranks, device
        gallery_spec = input_spec_for(config)
        shared = config.share_weights
        query_spec = (
            gallery_spec if shared else (_query_spec(config) if config.query_data else None)
        )
        self.data = load_pair_data(
            config.data_dir,
            gallery_spec,
            query_dir=config.query_data,
            query_spec=query_spec,
            captions=config.captions,
            val_fraction=config.val_fraction,
            seed=config.seed,
            progress=progress,
        )
        self.gallery_options = {**_image_options(config, str(config.tower)), "_name": config.tower}
        gallery_tower = create_tower(
            str(config.tower), gallery_spec, _image_options(config, str(config.tower))
        )
        self.gallery = Side("gallery", gallery_tower.to(device), gallery_spec)
        self.gallery.augmentation = build_augmentation(config.augment, config.flip)
        self.query, self.query_options = _query_side(
            config, self.data, query_spec, gallery_tower, device
        )
        if ranks.enabled:
            self._spread_over_ranks(config.seed, shared)
        self.towers = [self.gallery.tower] if shared else [self.query.tower, self.gallery.tower]
        miner = config.miner if config.miner in ("batch-hard", "batch-all") else None
        if config.pair_loss == "triplet" and config.miner not in (None, "batch-hard", "batch-all"):
            raise ConfigError(
                f"cross-domain triplets mine batch-hard or batch-all, not {config.miner}"
            )
        self.criterion = create_cross_loss(
            config.pair_loss, config.margin, config.temperature, miner
        ).to(device)
        self.config = replace(config, margin=getattr(self.criterion, "margin", None), miner=miner)
        self.sampler = self._sampler()
        self.forward: nn.Module = PairForward(self.query, self.gallery, self.criterion)
        self.autocast = autocast_for(device, config.amp)

    def _spread_over_ranks(self, seed: int, shared: bool) -> None:
        """Each rank augments its own items differently, reproducibly; batch-norm layers see the
        global batch, as one process would."""
        own_seed = np.random.SeedSequence([seed, self.ranks.rank]).generate_state(1)[0]
        torch.manual_seed(int(own_seed))
        self.gallery.tower = synchronise_batch_norm(self.gallery.tower, self.device)
        if shared:
            self.query.tower = self.gallery.tower
        else:
            self.query.tower = synchronise_batch_norm(self.query.tower, self.device)

    def _sampler(self) -> PairSampler:
        config = self.config
        try:
            return PairSampler(
                self.data.train_query.labels,
                self.data.train_gallery.labels,
                config.identities_per_batch,
                config.images_per_identity,
                config.seed,
                rank=self.ranks.rank,
                world=self.ranks.world,
            )
        except ValueError as exc:
            raise DataError(f"{config.data_dir}: {exc}") from None

    def steps(self) -> int:
        config = self.config
        per_step = self.ranks.world * config.identities_per_batch * config.images_per_identity
        return config.steps_per_epoch or max(
            config.min_steps_per_epoch, -(-len(self.data.train_gallery) // per_step)
        )

    def parameters(self) -> list[nn.Parameter]:
        return list(self.forward.parameters())

    def wrap_for_ranks(self) -> None:
        if self.ranks.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = DistributedDataParallel(self.forward, device_ids=ids)

    def begin_epoch(self) -> None:
        for tower in self.towers:
            tower.train()

    def batches(self) -> Any:
        return (self.sampler.batch() for _ in range(self.steps()))

    def step(self, batch: Any) -> tuple[torch.Tensor, int]:
        """The cross-domain loss of the global batch (every rank's share, gathered)."""
        query_rows, gallery_rows = batch
        data, device, ranks = self.data, self.device, self.ranks
        query_inputs = self.query.inputs(data.train_query, query_rows, device)
        gallery_inputs = self.gallery.inputs(data.train_gallery, gallery_rows, device)
        with self.autocast():
            queries, items = self.forward(query_inputs, gallery_inputs)
        query_labels = torch.from_numpy(data.train_query.labels[query_rows]).to(device)
        item_labels = torch.from_numpy(data.train_gallery.labels[gallery_rows]).to(device)
        queries, query_labels, _, _ = gather_batch(ranks, queries.float(), query_labels)
        items, item_labels, _, _ = gather_batch(ranks, items.float(), item_labels)
        with self.autocast():
            loss = self.criterion(queries, query_labels, ref=items, ref_labels=item_labels)
        return loss, len(query_rows) + len(gallery_rows)

    def validate(self) -> dict[str, float]:
        row: dict[str, float] = {}
        if hasattr(self.criterion, "temperature"):
            row["temperature"] = self.criterion.temperature
        if self.data.val_query is not None and self.data.val_gallery is not None:
            row.update(_validate(self.query, self.gallery, self.data, self.device))
        return row

    def state(self) -> dict[str, Any]:
        return {
            "query": self.query.tower.state_dict(),
            "gallery": self.gallery.tower.state_dict(),
            "loss": self.criterion.state_dict(),
            "sampler_rng": self.sampler.rng.bit_generator.state,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.query.tower.load_state_dict(state["query"])
        self.gallery.tower.load_state_dict(state["gallery"])
        self.criterion.load_state_dict(state["loss"])
        self.sampler.rng.bit_generator.state = state["sampler_rng"]

    def save_weights(self, best: bool) -> None:
        _save(
            self.query,
            self.gallery,
            Path(self.config.out_dir),
            self.config.share_weights,
            best=best,
        )

    def write_run_files(self) -> None:
        """The run folder of a new run: config.json, and the tokenizer of a text tower."""
        if not self.ranks.is_main:
            return
        run_dir = Path(self.config.out_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        if self.query.tokenizer is not None:
            tokenizer = self.query.tokenizer.to_str(pretty=True).encode()
            write_bytes_atomic(run_dir / TOKENIZER_FILE, tokenizer)
        _write_pair_config(
            self.config,
            run_dir,
            self.data,
            self.query,
            self.query_options,
            self.gallery,
            self.gallery_options,
            self.criterion,
            self.device,
            self.ranks,
        )


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
    from siamese.core.metrics import retrieval_metrics

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
    ranks: Ranks,
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
            **run_record(ranks),
            "versions": library_versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )
