"""TrainConfig: every choice a training run makes, frozen and written into the run's config.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from siamese.errors import ConfigError
from siamese.spec import RESIZE_RULES


@dataclass(frozen=True)
class TrainConfig:
    """Options of ``siamese train``; the CLI maps its flags one-to-one onto these fields.

    ``image_size=None`` takes the tower's default (100 for the seed tower, 96 for conv);
    ``samples_per_epoch=None`` draws one pair or triplet per training image per epoch, as the seed.
    """

    data_dir: str
    out_dir: str
    tower: str = "conv"
    embedding_dim: int | None = None
    normalize: bool = True
    widths: tuple[int, ...] | None = None
    image_size: int | None = None
    channels: int = 1
    resize: str = "stretch"
    loss: str = "triplet"
    margin: float | None = None
    epochs: int = 20
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.0
    samples_per_epoch: int | None = None
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 2, f"batch size must be at least 2, got {self.batch_size}"),
            (self.lr > 0, f"learning rate must be positive, got {self.lr}"),
            (self.channels in (1, 3), f"channels must be 1 or 3, got {self.channels}"),
            (self.resize in RESIZE_RULES, f"resize must be one of {', '.join(RESIZE_RULES)}"),
            (self.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {self.device!r}"),
            (self.embedding_dim is None or self.embedding_dim >= 1, "embedding dim must be positive"),
            (self.samples_per_epoch is None or self.samples_per_epoch >= 1, "samples per epoch must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        data = asdict(self)
        data["widths"] = list(self.widths) if self.widths is not None else None
        return data
