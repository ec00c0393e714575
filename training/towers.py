"""Tower networks: the shared-weight encoder of a Siamese network, chosen by name from TOWERS.

Every tower but the classic one is a backbone (image → pooled features) and an EmbeddingHead that
the loss trains (linear, optional batch-norm, optional L2 normalisation). What a gallery stores is
the head's output, a FeatureProjection fitted to the training images' features, or (the recipe's
default, ``embed_from="both"``) the two side by side.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import torch
import torch.nn.functional as F
from torch import nn

from siamese.errors import ConfigError
from siamese.spec import InputSpec
from siamese.training.config import FIRST_CONV_WIDTHS, TOWER_ALIASES, TOWERS, EmbedFrom


class ClassicTower(nn.Module):
    """The classic Siamese network of the tutorials, layer for layer: three padded 3×3 conv blocks
    and a 3-layer MLP (tower ``classic``; ``seed``, the project's first network, is its old name).

    It flattens full-resolution feature maps, so it only accepts the input size it was built for
    (100×100 grey by default), and its embeddings are not normalised. Its last layer is its head:
    ``head_dim`` is also the size it serves.
    """

    normalized = training_normalized = False

    def __init__(
        self, in_channels: int = 1, height: int = 100, width: int = 100, head_dim: int = 5
    ) -> None:
        super().__init__()
        self.embedding_dim = head_dim  # served size
        self.cnn1 = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(in_channels, 4, kernel_size=3),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(4),
            nn.ReflectionPad2d(1),
            nn.Conv2d(4, 8, kernel_size=3),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(8),
            nn.ReflectionPad2d(1),
            nn.Conv2d(8, 8, kernel_size=3),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(8),
        )
        self.fc1 = nn.Sequential(
            nn.Linear(8 * height * width, 500),
            nn.ReLU(inplace=True),
            nn.Linear(500, 500),
            nn.ReLU(inplace=True),
            nn.Linear(500, head_dim),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.cnn1(images)
        return self.fc1(features.reshape(features.size(0), -1))

    def training_embedding(self, images: torch.Tensor) -> torch.Tensor:
        """What the loss sees: the same embedding the tower serves."""
        return self(images)


#: The classic tower's former name, for code written before the rename.
SeedTower = ClassicTower


class EmbeddingHead(nn.Module):
    """Features → embedding: linear projection, optional batch-norm, optional L2 normalisation.

    Unit-length embeddings put every distance in [0, 2], so margins mean the same on any dataset.
    """

    def __init__(
        self,
        in_features: int,
        head_dim: int = 128,
        batch_norm: bool = False,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, head_dim)
        self.bn = nn.BatchNorm1d(head_dim) if batch_norm else nn.Identity()
        self.normalize = normalize

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        embedding = self.bn(self.linear(features))
        return F.normalize(embedding, dim=1) if self.normalize else embedding


class FeatureProjection(nn.Module):
    """Pooled features → unit-length embedding by PCA of the training images' features.

    Why not the trained head: a loss sees only the training identities, so the head it trains keeps
    what separates those and collapses the rest, the detail that tells identities it never saw apart
    (the lesson of SimCLR's projection head). The backbone's features keep that detail; their
    principal components fit them into ``dim`` numbers. Fitted (:meth:`fit`), not trained: the
    buffers are saved with the weights and the projection is one matrix product in the exported
    graph.
    """

    def __init__(self, in_features: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer(
            "basis", torch.eye(in_features, dim)
        )  # until fitted: the first `dim` features

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> None:
        """Set the mean and the top principal directions of ``features`` (N × in_features)."""
        features = features.float().to(self.mean.device)
        mean = features.mean(0)
        _, _, directions = torch.linalg.svd(features - mean, full_matrices=False)
        basis = torch.zeros_like(self.basis)
        kept = min(basis.shape[1], directions.shape[0])
        basis[:, :kept] = directions[:kept].T
        self.mean.copy_(mean)
        self.basis.copy_(basis)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize((features - self.mean) @ self.basis, dim=1)


EMBED_FROM = get_args(EmbedFrom)


class EmbeddingTower(nn.Module):
    """A backbone producing pooled features, a head the loss trains, and the embedding it serves.

    ``embed_from="head"`` (the class default, which older runs load with): the served embedding is
    the trained head's output. ``"features"``: the FeatureProjection of the backbone's features,
    refitted by the trainer after every epoch. ``"both"`` (the training recipe's default): the two,
    each unit length, side by side and scaled to unit length (twice ``head_dim`` numbers). The
    head separates the training identities best; the components keep what it collapsed, which
    identities it never saw need. A distance is then the mean of the two parts' squared distances.
    """

    def __init__(
        self,
        backbone: nn.Module,
        features: int,
        head_dim: int = 128,
        batch_norm: bool = False,
        normalize: bool = True,
        embed_from: str = "head",
    ) -> None:
        super().__init__()
        if embed_from not in EMBED_FROM:
            raise ConfigError(
                f"embed-from must be one of {', '.join(EMBED_FROM)}, got {embed_from!r}"
            )
        self.backbone = backbone
        self.head = EmbeddingHead(features, head_dim, batch_norm, normalize)
        self.projection = FeatureProjection(features, head_dim) if embed_from != "head" else None
        self.embed_from = embed_from
        self.embedding_dim = 2 * head_dim if embed_from == "both" else head_dim  # served
        self.training_normalized = normalize  # the head's output, which the loss's margins assume
        self.normalized = normalize or self.projection is not None  # the served embedding

    def training_embedding(self, images: torch.Tensor) -> torch.Tensor:
        """What the loss sees: the head's output."""
        return self.head(self.backbone(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        if self.embed_from == "head":
            return self.head(features)
        if self.embed_from == "features":
            return self.projection(features)
        head = F.normalize(
            self.head(features), dim=1
        )  # both halves unit length, so each weighs the same
        return torch.cat([head, self.projection(features)], dim=1) * (0.5**0.5)


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


def conv_backbone(
    in_channels: int = 1, widths: tuple[int, ...] = FIRST_CONV_WIDTHS, grid: int = 1
) -> tuple[nn.Module, int]:
    """Compact VGG-style stages (two 3×3 convs, 2×2 max-pool), average-pooled to a grid × grid map.

    Any input size is accepted.

    ``grid=1`` is global average pooling. A larger grid keeps where a feature sits, which is part of
    an identity in centred or aligned images (a boot's shaft, a face's eyes): on Fashion-MNIST's
    held-out classes a 4 × 4 grid lifted the backbone features' mAP@R from 0.54 to 0.62 (6-epoch
    probes).

    The defaults are what runs that did not record ``widths`` or ``grid`` were trained with, so they
    still load; the training recipe's own values live in TrainConfig and are always recorded.
    Wider stages transfer better from few classes at 2.24× the multiply-adds for 24-48-96-192
    (README, Accuracy), which makes fp32 CPU embedding inference-bound; hence not the default.
    """
    if not widths:
        raise ConfigError("conv tower needs at least one stage width")
    if grid < 1:
        raise ConfigError(f"conv tower grid must be at least 1, got {grid}")
    layers: list[nn.Module] = []
    cin = in_channels
    for stage, width in enumerate(widths):
        layers += _conv_bn_relu(cin, width) + _conv_bn_relu(width, width)
        if stage < len(widths) - 1:
            layers.append(nn.MaxPool2d(2))
        cin = width
    layers += [nn.AdaptiveAvgPool2d(grid), nn.Flatten()]
    return nn.Sequential(*layers), cin * grid * grid


def _first_conv_path(name: str) -> str:
    return "conv1" if name.startswith("resnet") else "features.0.0"


def _torchvision_backbone(name: str) -> Callable[[int], tuple[nn.Module, int]]:
    """A torchvision classification network as a backbone.

    Its classifier is removed and its first conv fitted to the channels.
    """

    def build(in_channels: int) -> tuple[nn.Module, int]:
        import torchvision

        model = getattr(torchvision.models, name)(weights=None)
        if name.startswith("resnet"):
            features = model.fc.in_features
            model.fc = nn.Identity()
        else:
            features = next(m for m in model.classifier if isinstance(m, nn.Linear)).in_features
            model.classifier = nn.Identity()
        if in_channels != 3:
            _replace_first_conv(model, _first_conv_path(name), in_channels)
        return model, features

    return build


def _replace_first_conv(model: nn.Module, path: str, in_channels: int) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    old: nn.Conv2d = getattr(parent, attr)
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        old.kernel_size,
        old.stride,
        old.padding,
        bias=old.bias is not None,
    )
    setattr(parent, attr, new)


BACKBONES: dict[str, Callable[..., tuple[nn.Module, int]]] = {
    "conv": conv_backbone,
    **{
        name: _torchvision_backbone(name)
        for name in (
            "resnet18",
            "resnet34",
            "resnet50",
            "mobilenet_v3_small",
            "mobilenet_v3_large",
            "efficientnet_b0",
        )
    },
}
if set(TOWERS) != {"classic", *BACKBONES}:  # the names TrainConfig offers are the towers built here
    raise ImportError(f"TrainConfig's towers {TOWERS} differ from training/towers.py's")

#: Input size each tower trains at unless told otherwise.
#: The conv tower's 64 px (not 96): 2.25× fewer FLOPs per image, the same recall over the accuracy
#: suite's datasets within the spread of runs (issue 20, README "Accuracy").
DEFAULT_INPUT_SIZE = {"classic": 100, "conv": 64}
TORCHVISION_INPUT_SIZE = 112
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def create_tower(name: str, spec: InputSpec, options: dict[str, Any] | None = None) -> nn.Module:
    """Build a tower by name for the given input spec.

    Args:
        name: "classic" ("seed", its old name, too), "conv" or a torchvision backbone
            (resnet18/34/50, mobilenet_v3_small/large, efficientnet_b0).
        spec: the input spec (channels, and for the classic tower the exact size).
        options: head_dim (``embedding_dim`` in runs written before the rename), normalize,
            batch_norm (head), embed_from ("both", "features" or "head"), widths and grid (conv).

    Raises:
        ConfigError: unknown tower or unknown option.
    """
    name = TOWER_ALIASES.get(name, name)
    if name not in TOWERS:
        raise ConfigError(f"unknown tower {name!r}; choose one of: {', '.join(TOWERS)}")
    options = dict(options or {})
    if "embedding_dim" in options and "head_dim" not in options:  # the option's former name
        options["head_dim"] = options.pop("embedding_dim")
    allowed = (
        {"head_dim"}
        if name == "classic"
        else {"head_dim", "normalize", "batch_norm", "embed_from"}
        | ({"widths", "grid"} if name == "conv" else set())
    )
    unknown = set(options) - allowed
    if unknown:
        raise ConfigError(f"tower {name!r} does not take option(s): {', '.join(sorted(unknown))}")
    if name == "classic":
        return ClassicTower(spec.channels, spec.height, spec.width, **options)
    backbone_args = (
        {"widths": tuple(int(w) for w in options.pop("widths"))} if "widths" in options else {}
    )
    if "grid" in options:
        backbone_args["grid"] = int(options.pop("grid"))
    backbone, features = BACKBONES[name](spec.channels, **backbone_args)
    return EmbeddingTower(backbone, features, **options)


def load_pretrained(tower: nn.Module, path: str | os.PathLike[str], tower_name: str) -> list[str]:
    """Initialise a torchvision tower's backbone from a local state-dict file (nothing downloaded).

    Accepts safetensors or a torch file loaded with ``weights_only=True`` (never unpickling code).
    3-channel first-conv weights are summed to fit grey input. Returns the backbone keys the file
    lacked.

    Raises:
        ConfigError: unreadable file, a non-torchvision tower, or weights that do not fit the
            backbone.
    """
    if tower_name not in BACKBONES or tower_name == "conv" or not isinstance(tower, EmbeddingTower):
        raise ConfigError(
            f"--weights initialises torchvision backbones only, not the {tower_name!r} tower"
        )
    path = Path(path)
    state = _read_state_dict(path)
    backbone = tower.backbone
    first = _first_conv_path(tower_name) + ".weight"
    target = backbone.state_dict()
    if first in state and first in target and state[first].shape[1] != target[first].shape[1]:
        state[first] = state[first].sum(dim=1, keepdim=True).expand_as(target[first]).clone()
    usable = {k: v for k, v in state.items() if k in target}
    mismatched = [k for k, v in usable.items() if v.shape != target[k].shape]
    if mismatched or not usable:
        raise ConfigError(
            f"{path}: weights do not fit {tower_name} "
            f"({'shape mismatch at ' + mismatched[0] if mismatched else 'no matching keys'})"
        )
    backbone.load_state_dict(usable, strict=False)
    return sorted(set(target) - set(usable))


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(path))
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (
        Exception
    ) as exc:  # corrupt file, or a pickle needing code execution (refused by weights_only)
        raise ConfigError(
            f"{path}: cannot load weights safely ({str(exc).strip().splitlines()[0]})"
        ) from exc
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path}: not a state dict of tensors")
    return dict(state)


def count_parameters(tower: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in tower.parameters() if p.requires_grad)
