"""Towers: the shared-weight encoders of a Siamese network, chosen by name from the registry.

Every tower but the classic one is a backbone (the conv tower, a timm or a torchvision network)
and an EmbeddingHead the loss trains (heads.py). The registry (registry.py) holds one entry per
name with its default input; build.py builds them with their starting weights (weights.py).
"""

from siamese.training.towers.build import count_parameters, create_tower
from siamese.training.towers.classic import ClassicTower
from siamese.training.towers.conv import conv_backbone
from siamese.training.towers.heads import EmbeddingHead, EmbeddingTower, FeatureProjection
from siamese.training.towers.registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    REGISTRY,
    TowerEntry,
    tower_entry,
)
from siamese.training.towers.state_files import read_state_dict
from siamese.training.towers.weights import load_pretrained

#: The classic tower's former name, for code written before the rename.
SeedTower = ClassicTower

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "REGISTRY",
    "ClassicTower",
    "EmbeddingHead",
    "EmbeddingTower",
    "FeatureProjection",
    "SeedTower",
    "TowerEntry",
    "conv_backbone",
    "count_parameters",
    "create_tower",
    "load_pretrained",
    "read_state_dict",
    "tower_entry",
]
