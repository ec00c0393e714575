"""Training stage: learn a Siamese tower on an ImageFolder with metric-learning losses."""

from siamese.training.config import TrainConfig
from siamese.training.run_dir import LoadedRun, load_run
from siamese.training.towers import TOWERS, EmbeddingTower, SeedTower, create_tower
from siamese.training.trainer import TrainResult, train

__all__ = [
    "TOWERS",
    "EmbeddingTower",
    "LoadedRun",
    "SeedTower",
    "TrainConfig",
    "TrainResult",
    "create_tower",
    "load_run",
    "train",
]
