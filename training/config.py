"""TrainConfig: every choice a training run makes, frozen and written into the run's config.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from siamese.errors import ConfigError
from siamese.spec import RESIZE_RULES

SELECT_BY = ("map_at_r", "recall_at_1", "recall_at_5", "roc_auc")
SCHEDULES = ("cosine", "constant", "one-cycle")

#: The conv tower's stage widths before runs recorded them; still the recipe's default.
FIRST_CONV_WIDTHS = (16, 32, 64, 128)

#: What runs written before a field existed (or with it unset) trained with.
_BEFORE_THE_FIELD = {"embed_from": "head", "grid": 1, "widths": FIRST_CONV_WIDTHS}


@dataclass(frozen=True)
class TrainConfig:
    """Options of ``siamese train``; the CLI maps its flags one-to-one onto these fields.

    The defaults are the recipe: conv tower with stage widths 16-32-64-128 at up to 96 px, pooled to
    a 4 × 4 grid, a batch-norm head, P×K batches (16 identities × 4 images), multi-similarity loss,
    Adam with warm-up and cosine decay, medium augmentation (light plus random erasing), the
    checkpoint with the best mAP@R on held-out identities, and a served embedding that puts the
    trained head's output beside the principal components of the backbone's features
    (``embed_from="both"``, towers.FeatureProjection): the head is what separates the training
    identities, the components keep what it collapses, which new identities need
    (benchmarks/accuracy.py compares recipes).

    ``instance_weight > 0`` adds instance discrimination (:mod:`siamese.training.losses.instance`):
    every image is augmented twice and each view must find the other, which costs twice the compute.

    Several processes (torchrun, or ``siamese train --nproc``; training/distributed.py): P and
    ``batch_size`` are per process, so a step's global batch is world × P identities × K images;
    ``threads=None`` gives each process an equal share of the machine's cores.

    ``image_size=None`` takes the tower's default (or the images' size when smaller, in steps of 8 px,
    at least 32); ``steps_per_epoch=None`` makes one epoch about one
    pass over the training images (at least ``min_steps_per_epoch`` steps).
    """

    data_dir: str
    out_dir: str
    # tower
    tower: str = "conv"
    embedding_dim: int | None = None
    normalize: bool = True
    head_batch_norm: bool = True
    embed_from: str = "both"
    widths: tuple[int, ...] | None = FIRST_CONV_WIDTHS  # conv tower only
    grid: int = 4  # conv tower only
    weights: str | None = None
    # input
    image_size: int | None = None
    channels: int = 1
    resize: str = "stretch"
    # objective
    loss: str = "multi-similarity"
    miner: str | None = None
    sampler: str = "pk"
    margin: float | None = None
    identities_per_batch: int = 16
    images_per_identity: int = 4
    batch_size: int = 64
    instance_weight: float = 0.0
    # optimisation
    epochs: int = 30
    steps_per_epoch: int | None = None
    min_steps_per_epoch: int = 20
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_epochs: float = 1.0
    schedule: str = "cosine"
    augment: str = "medium"
    flip: str = "none"
    # validation and checkpoints
    val_fraction: float = 0.2
    select_by: str = "map_at_r"
    patience: int | None = 10
    # machinery
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    threads: int | None = (
        None  # per process; None: PyTorch's default, or a share of the cores per rank
    )
    amp: bool = True
    resume: bool = False

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 2, f"batch size must be at least 2, got {self.batch_size}"),
            (self.lr > 0, f"learning rate must be positive, got {self.lr}"),
            (self.channels in (1, 3), f"channels must be 1 or 3, got {self.channels}"),
            (self.resize in RESIZE_RULES, f"resize must be one of {', '.join(RESIZE_RULES)}"),
            (
                self.device in ("auto", "cpu", "cuda"),
                f"device must be auto, cpu or cuda, got {self.device!r}",
            ),
            (
                self.embedding_dim is None or self.embedding_dim >= 1,
                "embedding dim must be positive",
            ),
            (
                self.tower != "conv" or bool(self.widths) and min(self.widths) >= 1,
                f"conv tower widths must be one or more positive numbers, got {self.widths}",
            ),
            (
                self.steps_per_epoch is None or self.steps_per_epoch >= 1,
                "steps per epoch must be positive",
            ),
            (
                self.schedule in SCHEDULES,
                f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}",
            ),
            (self.select_by in SELECT_BY, f"select-by must be one of {', '.join(SELECT_BY)}"),
            (self.patience is None or self.patience >= 1, "patience must be at least 1 epoch"),
            (self.workers >= 0, "workers cannot be negative"),
            (self.threads is None or self.threads >= 1, "threads must be at least 1"),
            (self.warmup_epochs >= 0, "warm-up cannot be negative"),
            (
                self.instance_weight >= 0,
                f"instance weight cannot be negative, got {self.instance_weight}",
            ),
            (
                self.instance_weight == 0 or self.sampler == "pk",
                "the instance term needs P×K batches (--sampler pk)",
            ),
            (
                self.instance_weight == 0 or self.augment != "none",
                "the instance term compares two augmented views: it needs --augment light, medium or strong",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        data = asdict(self)
        data["widths"] = list(self.widths) if self.widths is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild a config from :meth:`to_dict` output (ignoring keys of other versions)."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        for name, former in _BEFORE_THE_FIELD.items():  # runs older than the field trained as this
            if values.get(name) is None:
                values[name] = former
        if values.get("widths") is not None:
            values["widths"] = tuple(values["widths"])
        return cls(**values)
