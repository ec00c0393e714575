"""Parity between the PyTorch tower and its ONNX export, over several batch sizes.

Both sides get the same uint8 pixels: PyTorch normalises them with training's own normaliser,
the ONNX graph with its built-in first layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from siamese.contracts.model_card import INPUT_NAME
from siamese.contracts.spec import InputSpec
from siamese.training.pixels import PixelInputTower

#: Default tolerances: float32 kernels differ in summation order, nothing more.
ATOL = 1e-4
RTOL = 1e-3
MIN_COSINE = 0.9999


@dataclass(frozen=True)
class ParityReport:
    """Worst-case differences between PyTorch and onnxruntime outputs."""

    batch_sizes: tuple[int, ...]
    max_abs_diff: float
    min_cosine: float
    output_scale: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    def summary(self) -> str:
        """One human line."""
        verdict = "ok" if self.passed else "FAILED"
        return (
            f"parity {verdict}: max |torch - onnx| = {self.max_abs_diff:.2e} "
            f"(output scale {self.output_scale:.2e}), min cosine = {self.min_cosine:.7f} "
            f"over batch sizes {', '.join(map(str, self.batch_sizes))}"
        )


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)


def _compare(
    batch_sizes: Sequence[int], outputs: Iterable[tuple[np.ndarray, np.ndarray]]
) -> ParityReport:
    """Compare (PyTorch, ONNX) outputs batch by batch; a shape mismatch fails at once."""
    max_diff, min_cos, scale = 0.0, 1.0, 0.0
    for expected, actual in outputs:
        if actual.shape != expected.shape:
            return ParityReport(tuple(batch_sizes), float("inf"), -1.0, scale, False)
        max_diff = max(max_diff, float(np.abs(actual - expected).max()))
        min_cos = min(min_cos, float(_cosines(actual, expected).min()))
        scale = max(scale, float(np.abs(expected).max()))
    passed = max_diff <= ATOL + RTOL * scale and min_cos >= MIN_COSINE
    return ParityReport(tuple(batch_sizes), max_diff, min_cos, scale, passed)


@torch.no_grad()
def check_parity(
    tower: nn.Module,
    onnx_path: str | Path,
    spec: InputSpec,
    batch_sizes: Sequence[int] = (1, 2, 7, 32),
    seed: int = 0,
) -> ParityReport:
    """Run the same random uint8 images through both and compare (CPU: deterministic results)."""
    model = PixelInputTower(tower.eval().cpu(), spec).eval()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)

    def outputs() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for size in batch_sizes:
            pixels = rng.integers(0, 256, size=(size, *spec.shape), dtype=np.uint8)
            yield (
                model(torch.from_numpy(pixels)).numpy(),
                session.run(None, {INPUT_NAME: pixels})[0],
            )

    return _compare(batch_sizes, outputs())


@torch.no_grad()
def check_text_parity(
    tower: nn.Module,
    onnx_path: str | Path,
    max_length: int,
    vocab_size: int,
    batch_sizes: Sequence[int] = (1, 2, 7, 32),
    seed: int = 0,
) -> ParityReport:
    """The same random token ids and masks (every length from 1 to max_length) through both."""
    from siamese.contracts.model_card import TEXT_INPUTS

    tower = tower.eval().cpu()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)

    def outputs() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for size in batch_sizes:
            lengths = rng.integers(1, max_length + 1, size=size)
            mask = (np.arange(max_length)[None, :] < lengths[:, None]).astype(np.int64)
            ids = rng.integers(1, vocab_size, size=(size, max_length)).astype(np.int64) * mask
            expected = tower(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
            yield expected, session.run(None, dict(zip(TEXT_INPUTS, (ids, mask))))[0]

    return _compare(batch_sizes, outputs())
