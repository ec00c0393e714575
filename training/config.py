"""TrainConfig: every choice a training run makes, frozen and written into the run's config.json.

Each field declares its command-line option too (:func:`siamese.core.config_fields.setting`): help
text, names and aliases here; type, default and closed choices (``Literal``) from the field.
``siamese train`` is generated from these fields, so this is the one place a training option is
defined.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Literal, get_args

from siamese.contracts.spec import ResizeRule
from siamese.core.config_fields import check_choices, setting
from siamese.core.errors import ConfigError, named

TowerName = Literal[
    "conv",
    "classic",
    "tf_efficientnet_lite0",
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenetv3_large_100",
    "vit_tiny_patch16_224",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "seed",
]
#: Former tower names, still accepted (runs and commands written before the rename).
TOWER_ALIASES = {"seed": "classic"}
TOWERS = tuple(name for name in get_args(TowerName) if name not in TOWER_ALIASES)
EmbedFrom = Literal["both", "features", "head"]
LossName = Literal["multi-similarity", "contrastive", "triplet", "triplet-softmax"]
MinerName = Literal[
    "hard-pairs", "all-pairs", "batch-hard", "semi-hard", "batch-all", "builtin", "none"
]
SamplerName = Literal["pk", "random"]
Schedule = Literal["cosine", "constant", "one-cycle"]
Augmentation = Literal["none", "light", "medium", "strong"]
Flip = Literal["none", "horizontal", "vertical", "both"]
SelectBy = Literal["map_at_r", "recall_at_1", "recall_at_5", "roc_auc"]
TrainDevice = Literal["auto", "cpu", "cuda"]
PairLoss = Literal["symmetric-ce", "contrastive", "triplet"]

RecipeName = Literal["auto", "conv", "photo"]

SELECT_BY = get_args(SelectBy)
SCHEDULES = get_args(Schedule)

#: The conv tower's stage widths before runs recorded them; still the recipe's default.
FIRST_CONV_WIDTHS = (16, 32, 64, 128)

#: What runs written before a field existed (or with it unset) trained with.
_BEFORE_THE_FIELD = {
    "embed_from": "head",
    "grid": 1,
    "widths": FIRST_CONV_WIDTHS,
    "freeze_epochs": 0.0,
    "backbone_lr": 1.0,
}
#: Keys of config.json's "train" section that were renamed: old name → field.
_RENAMED = {"embedding_dim": "head_dim", "weights": "pretrained"}


def parse_widths(text: str) -> tuple[int, ...]:
    """``"16,32,64,128"`` → (16, 32, 64, 128); anything else is a clear error, not a traceback."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(
            f"the conv tower's widths ({named('widths')}) are comma-separated whole numbers "
            f"such as 16,32,64,128, got {text!r}"
        ) from None


def show_widths(widths: tuple[int, ...] | None) -> str:
    return ",".join(map(str, widths or ()))


@dataclass(frozen=True)
class TrainConfig:
    """Options of ``siamese train``: the command's options are generated from these fields.

    The defaults are the recipe: conv tower with stage widths 16-32-64-128 at up to 64 px, pooled to
    a 4 × 4 grid, a batch-norm head, P×K batches (16 identities × 4 images), multi-similarity loss,
    Adam with warm-up and cosine decay, medium augmentation (light plus random erasing), the
    checkpoint with the best mAP@R on held-out identities, and a served embedding that puts the
    trained head's output beside the principal components of the backbone's features
    (``embed_from="both"``, towers.FeatureProjection): the head is what separates the training
    identities, the components keep what it collapses, which new identities need
    (benchmarks/accuracy.py compares recipes). ``head_dim`` is the head's size; the served
    embedding has twice as many numbers with ``embed_from="both"``.

    ``instance_weight > 0`` adds instance discrimination (:mod:`siamese.training.losses.instance`):
    every image is augmented twice and each view must find the other, which costs twice the compute.

    Several processes (torchrun, or ``siamese train --nproc``; training/distributed.py): P and
    ``batch_size`` are per process, so a step's global batch is world × P identities × K images;
    ``threads=None`` gives each process an equal share of the machine's cores.

    ``image_size=None`` takes the tower's default (or the images' size when smaller, in steps of 8
    px, at least 32); ``steps_per_epoch=None`` makes one epoch about one pass over the training
    images (at least ``min_steps_per_epoch`` steps).

    ``tower="seed"`` (the classic network's former name) is read as ``"classic"``.
    """

    #: ``siamese train --help`` groups the options in these panels (the sections below).
    PANELS: ClassVar[dict[str, tuple[str, ...]]] = {
        "Recipe and tower": (
            "recipe",
            "tower",
            "head_dim",
            "normalize",
            "head_batch_norm",
            "embed_from",
            "widths",
            "grid",
            "pretrained",
            "freeze_epochs",
            "backbone_lr",
        ),
        "Input": ("image_size", "channels", "resize"),
        "Objective": (
            "loss",
            "miner",
            "sampler",
            "margin",
            "identities_per_batch",
            "images_per_identity",
            "batch_size",
            "instance_weight",
        ),
        "Optimisation": (
            "epochs",
            "steps_per_epoch",
            "min_steps_per_epoch",
            "lr",
            "weight_decay",
            "warmup_epochs",
            "schedule",
            "augment",
            "flip",
        ),
        "Validation and checkpoints": ("val_fraction", "select_by", "patience"),
        "Pseudo-siamese pair": (
            "query_data",
            "captions",
            "share_weights",
            "query_tower",
            "query_image_size",
            "query_channels",
            "pair_loss",
            "temperature",
            "text_max_length",
            "text_vocab_size",
            "text_layers",
        ),
        "Machinery": ("seed", "device", "workers", "threads", "amp", "resume"),
    }

    data_dir: str = setting(
        help="ImageFolder: one sub-folder of images per identity.", argument=True
    )
    out_dir: str = setting(help="Run directory to write.", names=("--out", "-o"))
    # recipe and tower
    recipe: RecipeName = setting(
        "auto",
        "auto: chosen from the data (colour photographs: photo; otherwise conv) and printed; "
        "conv: the conv tower from scratch; photo: a pretrained ImageNet backbone fine-tuned. "
        "Options given explicitly override the recipe's.",
    )
    tower: TowerName | None = setting(
        None,
        "Tower (default: the recipe's). conv; classic (100×100 grey; 'seed' is its former "
        "name); timm backbones tf_efficientnet_lite0, resnet18/34/50, mobilenetv3_large_100, "
        "vit_tiny_patch16_224; torchvision mobilenet_v3_small/large, efficientnet_b0.",
    )
    head_dim: int | None = setting(
        None,
        "Size of the trained embedding head (default: 5 for classic, 128 otherwise). The served "
        "embedding is twice as long with --embed-from both.",
        min=1,
        aliases=("--embedding-dim",),
    )
    normalize: bool = setting(True, "L2-normalise the head's output.")
    head_batch_norm: bool = setting(True, "Batch-norm in the embedding head.")
    embed_from: EmbedFrom = setting(
        "both",
        "both: serve the trained head's output and principal components of the backbone's "
        "features, side by side (twice --head-dim numbers); head: the head alone; features: the "
        "components alone.",
    )
    widths: tuple[int, ...] | None = setting(
        FIRST_CONV_WIDTHS,
        "conv tower: channels of each stage, comma-separated (each stage halves the resolution). "
        "24,48,96,192 transfers better from few classes at 2.24× the compute.",
        parse=parse_widths,
        show=show_widths,
    )
    grid: int = setting(
        4,
        "conv tower: average-pool the last feature map to GRID × GRID (4 keeps where features "
        "are; 1 is one global average, for images where identities move around).",
        min=1,
    )
    pretrained: str | None = setting(
        None,
        "Backbone's starting weights (default: the recipe's): imagenet (the weights a package "
        "ships when installed, else timm's download), hub (timm's download), packaged, none, "
        "or a local state-dict / .safetensors file.",
        aliases=("--weights",),
    )
    freeze_epochs: float | None = setting(
        None,
        "Epochs with the backbone frozen (only the head learns) before fine-tuning it all "
        "(default: the recipe's: 0 from scratch, 1.5 for a pretrained backbone).",
        min=0.0,
    )
    backbone_lr: float | None = setting(
        None,
        "The backbone's learning rate as a fraction of --lr (default: 0.1 for a pretrained "
        "backbone, 1 otherwise).",
        min=0.0,
    )
    # input
    image_size: int | None = setting(
        None,
        "Input size in pixels (default: the recipe's: up to 64 for conv, or the images' own "
        "size when smaller; 100 for classic; 128 for the photo recipe on a CPU, the "
        "backbone's own 224 on a GPU).",
        aliases=("--size",),
    )
    channels: Literal[1, 3] | None = setting(
        None,
        "1 = grey, 3 = RGB (default: 3 when the training images are colour, else 1; "
        "pretrained backbones always 3).",
    )
    resize: ResizeRule | None = setting(
        None,
        "stretch, or fit-crop (keep aspect ratio, crop the centre) (default: fit-crop for "
        "timm backbones, stretch otherwise).",
    )
    # objective
    loss: LossName = setting(
        "multi-similarity",
        "multi-similarity, contrastive, triplet (margin), or triplet-softmax (Hoffer and Ailon, "
        "2015: no margin; with --sampler random, its class-pair triplets).",
    )
    miner: MinerName | None = setting(
        None,
        "Mining in P×K batches: hard-pairs/all-pairs (contrastive), "
        "batch-hard/semi-hard/batch-all (triplet); none with --sampler random.",
    )
    sampler: SamplerName = setting(
        "pk",
        "pk: P identities × K images per batch; random: the classic recipe's random "
        "pairs/triplets.",
    )
    margin: float | None = setting(None, "Loss margin (default depends on loss and normalisation).")
    identities_per_batch: int = setting(
        16, "P: identities per batch (per process).", min=1, aliases=("--p",)
    )
    images_per_identity: int = setting(
        4, "K: images per identity in a batch.", min=1, aliases=("--k",)
    )
    batch_size: int = setting(64, "Pairs or triplets per step with --sampler random.", min=2)
    instance_weight: float = setting(
        0.0,
        "Weight of an instance-discrimination term (two augmented views of each image must "
        "match; twice the compute per step).",
        min=0.0,
    )
    # optimisation
    epochs: int | None = setting(
        None, "Training epochs (default: the recipe's: 30 conv, 8 photo).", min=1
    )
    steps_per_epoch: int | None = setting(
        None,
        "Steps per epoch (default: about one pass over the images, at least "
        "--min-steps-per-epoch).",
        min=1,
    )
    min_steps_per_epoch: int = setting(
        20, "Fewest steps an epoch takes when --steps-per-epoch is not given.", min=1
    )
    lr: float = setting(1e-3, "Adam learning rate.")
    weight_decay: float = setting(0.0, "Adam weight decay.", min=0.0)
    warmup_epochs: float = setting(1.0, "Linear learning-rate warm-up, in epochs.", min=0.0)
    schedule: Schedule = setting(
        "cosine",
        "cosine (after --warmup-epochs), constant, or one-cycle (rise to --lr over 30% of the "
        "steps, then cosine down; not yet measured by the accuracy suite).",
    )
    augment: Augmentation = setting(
        "medium", "none, light, medium (light plus random erasing) or strong."
    )
    flip: Flip = setting(
        "none",
        "none, horizontal, vertical or both (flips change identity for text and signatures).",
    )
    # validation and checkpoints
    val_fraction: float = setting(
        0.2, "Share of identities held out for validation.", min=0.0, max=1.0
    )
    select_by: SelectBy = setting("map_at_r", "Validation metric that picks the kept epoch.")
    patience: int | None = setting(
        10, "Stop after this many epochs without validation improvement.", min=1
    )
    # pseudo-siamese pair (training/pair_trainer.py): a query tower and a gallery tower
    query_data: str | None = setting(
        None,
        "Pseudo-siamese pair: ImageFolder of the query domain (sketches, scans…) whose identity "
        "folders match DATA_DIR's, the gallery side. Trains a query tower and a gallery tower.",
    )
    captions: str | None = setting(
        None,
        "Pseudo-siamese pair with text queries: CSV or JSONL captions of DATA_DIR's identities "
        "(columns identity or path, and text). Trains a text tower and an image tower.",
    )
    share_weights: bool = setting(
        False, "With --query-data: one tower for both sides (the Siamese special case)."
    )
    query_tower: TowerName | None = setting(
        None, "The query side's image tower (default: --tower)."
    )
    query_image_size: int | None = setting(
        None, "The query side's input size (default: as --image-size would choose).", min=8
    )
    query_channels: Literal[1, 3] | None = setting(
        None, "The query side's channels (default: --channels)."
    )
    pair_loss: PairLoss = setting(
        "symmetric-ce",
        "Loss across the sides: symmetric-ce (the dual-encoder loss over the batch's query × "
        "gallery similarities), contrastive (--margin), triplet (query anchors; --miner "
        "batch-hard or batch-all).",
    )
    temperature: float | None = setting(
        None, "symmetric-ce: a fixed temperature (default: learnt, from 0.07).", min=1e-4
    )
    text_max_length: int = setting(32, "Text tower: tokens per text (longer ones are cut).", min=4)
    text_vocab_size: int = setting(
        1000, "Text tower: WordPiece vocabulary learnt from the captions (at most).", min=32
    )
    text_layers: int = setting(2, "Text tower: transformer blocks.", min=1)
    # machinery
    seed: int = setting(0, "Random seed (runs are deterministic for a given seed).")
    device: TrainDevice = setting("auto", "Where to train: auto (CUDA when present), cpu or cuda.")
    workers: int = setting(0, "DataLoader worker processes for augmentation.", min=0)
    threads: int | None = setting(
        None,
        "Threads per training process (default: PyTorch's, or an equal share of the cores per "
        "process).",
        min=1,
    )
    amp: bool = setting(True, "Mixed precision on CUDA.")
    resume: bool = setting(False, "Continue the run in --out from its last checkpoint.")

    def __post_init__(self) -> None:
        if self.tower in TOWER_ALIASES:  # a run or command from before the rename
            object.__setattr__(self, "tower", TOWER_ALIASES[self.tower])
        if self.widths is not None and not isinstance(self.widths, tuple):
            object.__setattr__(self, "widths", tuple(self.widths))
        checks = [
            (
                self.epochs is None or self.epochs >= 1,
                f"epochs must be at least 1, got {self.epochs}",
            ),
            (self.batch_size >= 2, f"batch size must be at least 2, got {self.batch_size}"),
            (self.lr > 0, f"learning rate must be positive, got {self.lr}"),
            (self.head_dim is None or self.head_dim >= 1, "head dim must be positive"),
            (
                self.tower not in (None, "conv") or bool(self.widths) and min(self.widths) >= 1,
                f"conv tower widths must be one or more positive numbers, got {self.widths}",
            ),
            (
                self.steps_per_epoch is None or self.steps_per_epoch >= 1,
                "steps per epoch must be positive",
            ),
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
                f"the instance term needs P×K batches ({named('sampler')} pk)",
            ),
            (
                self.instance_weight == 0 or self.augment != "none",
                (
                    "the instance term compares two augmented views: it needs augmentation "
                    f"({named('augment')} light, medium or strong)"
                ),
            ),
        ]
        checks += self._pair_checks()
        wrong_choice = check_choices(self)  # every Literal field: tower, loss, device, channels…
        if wrong_choice:
            checks.insert(0, (False, wrong_choice))
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def starting_weights(self) -> str | None:
        """The backbone's starting weights: None when it starts from random ones."""
        return None if self.pretrained in (None, "none") else self.pretrained

    @property
    def is_pair(self) -> bool:
        """A pseudo-siamese run: a query side from --query-data or --captions."""
        return self.query_data is not None or self.captions is not None

    def _pair_checks(self) -> list[tuple[bool, str]]:
        if not self.is_pair:
            shared = f"shared weights ({named('share_weights')}) need query images"
            return [(not self.share_weights, f"{shared} ({named('query_data')})")]
        return [
            (
                self.query_data is None or self.captions is None,
                (
                    f"give query images ({named('query_data')}) or captions "
                    f"({named('captions')}) as the query side, not both"
                ),
            ),
            (not self.share_weights or self.captions is None, "a text tower cannot share weights"),
            (
                "classic" not in (self.tower, self.query_tower),
                "pair runs need normalised embeddings: use the conv or a torchvision tower",
            ),
            (
                self.temperature is None or self.temperature > 0,
                f"temperature must be positive, got {self.temperature}",
            ),
        ]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        data = asdict(self)
        data["widths"] = list(self.widths) if self.widths is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild a config from :meth:`to_dict` output (renamed keys read, others' ignored)."""
        data = dict(data)
        for old, new in _RENAMED.items():
            if old in data and new not in data:
                data[new] = data.pop(old)
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        for name, former in _BEFORE_THE_FIELD.items():  # runs older than the field trained as this
            if values.get(name) is None:
                values[name] = former
        if values.get("widths") is not None:
            values["widths"] = tuple(values["widths"])
        return cls(**values)
