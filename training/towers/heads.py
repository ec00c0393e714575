"""What every tower but the classic one puts on its backbone: the embedding head the loss trains,
the feature projection fitted to the training images, and the tower that serves them.

What a gallery stores is the head's output, a FeatureProjection fitted to the training images'
features, or (the recipe's default, ``embed_from="both"``) the two side by side.
"""

from __future__ import annotations

from typing import get_args

import torch
import torch.nn.functional as F
from torch import nn

from siamese.core.errors import ConfigError, named
from siamese.training.config import EmbedFrom


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
                f"{named('embed_from')} must be one of {', '.join(EMBED_FROM)}, got {embed_from!r}"
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
