"""Training stage: learn a Siamese tower on an ImageFolder with contrastive or triplet loss."""

from siamese.training.config import TrainConfig
from siamese.training.run_dir import LoadedRun, load_run
from siamese.training.towers import TOWERS, ConvTower, SeedTower, create_tower
from siamese.training.trainer import TrainResult, train

__all__ = ["TOWERS", "ConvTower", "LoadedRun", "SeedTower", "TrainConfig", "TrainResult", "create_tower", "load_run", "train"]
