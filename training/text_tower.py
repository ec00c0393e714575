"""The text tower of a pseudo-siamese pair: a small transformer encoder over WordPiece tokens.

Token and learnt position embeddings, ``layers`` pre-norm transformer blocks whose attention
ignores padding, a masked mean over the tokens, and a linear head to the image tower's embedding
size, L2-normalised. Attention is written out with plain matrix products (no fused kernels), so
the ONNX export is the same arithmetic onnxruntime can run anywhere. Inputs are ``input_ids`` and
``attention_mask``, both int64 N × max_length, as :func:`siamese.data.text.encode_texts` makes them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from siamese.core.errors import ConfigError

TEXT_TOWER = "text"
_OPTIONS = {"vocab_size", "max_length", "width", "layers", "heads", "head_dim"}


class _Block(nn.Module):
    """Pre-norm transformer block: masked multi-head self-attention, then a GELU MLP."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width)
        )

    def forward(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        n, length, width = x.shape
        head = width // self.heads
        q, k, v = self.qkv(self.norm1(x)).reshape(n, length, 3, self.heads, head).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # N × heads × L × head
        scores = q @ k.transpose(-1, -2) * (1.0 / math.sqrt(head)) + padding[:, None, None, :]
        attended = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, length, width)
        x = x + self.out(attended)
        return x + self.mlp(self.norm2(x))


class TextTower(nn.Module):
    """Token ids → unit-length embedding of ``head_dim`` numbers (see the module docstring)."""

    normalized = training_normalized = True

    def __init__(
        self,
        vocab_size: int,
        max_length: int = 32,
        width: int = 128,
        layers: int = 2,
        heads: int = 4,
        head_dim: int = 128,
    ) -> None:
        super().__init__()
        if width % heads:
            raise ConfigError(f"text tower width {width} is not a multiple of its {heads} heads")
        self.max_length = max_length
        self.embedding_dim = head_dim
        self.tokens = nn.Embedding(vocab_size, width, padding_idx=0)
        self.positions = nn.Parameter(torch.randn(1, max_length, width) * 0.02)
        self.blocks = nn.ModuleList(_Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, head_dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.to(torch.float32)
        x = self.tokens(input_ids) + self.positions
        padding = (1.0 - mask) * -1e4  # added to attention scores: padding gets no weight
        for block in self.blocks:
            x = block(x, padding)
        x = self.norm(x)
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        return F.normalize(self.head(pooled), dim=1)

    def training_embedding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        """What the loss sees: the served embedding."""
        return self(input_ids, attention_mask)


def create_text_tower(options: dict[str, Any]) -> TextTower:
    """A text tower from the options a run recorded.

    Raises:
        ConfigError: an unknown option.
    """
    unknown = set(options) - _OPTIONS
    if unknown:
        raise ConfigError(f"the text tower does not take option(s): {', '.join(sorted(unknown))}")
    return TextTower(**{k: int(v) for k, v in options.items()})
