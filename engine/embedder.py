"""Batch embedding with onnxruntime from model.onnx alone: decode, preprocess and inference overlapped.

Decoding runs in a thread pool (Pillow releases the GIL) a few batches ahead of inference, so the
CPU decodes the next batch while onnxruntime embeds the current one.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from PIL import Image

from siamese.engine.image import load_pixels, normalize, preprocess_images
from siamese.engine.model_info import INPUT_NAME, ModelInfo
from siamese.engine.model_safety import check_external_data
from siamese.engine.providers import create_session
from siamese.errors import ImageDecodeError, ModelError
from siamese.io import sha256_file
from siamese.progress import progress_bar

Embeddings = NDArray[np.float32]
_PREFETCH_BATCHES = 2


@dataclass
class EmbedResult:
    """Embeddings of the files that decoded, in input order, and the files that did not."""

    embeddings: Embeddings
    paths: list[str]
    failures: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class EmbeddedBatch:
    """One batch as produced by :meth:`Embedder.iter_embed_paths`."""

    embeddings: Embeddings
    paths: list[str]
    failures: list[tuple[str, str]]


def _load_or_error(path: str, spec) -> NDArray[np.uint8] | ImageDecodeError:
    try:
        return load_pixels(path, spec)
    except ImageDecodeError as exc:
        return exc


class Embedder:
    """Embeds images with an exported siamese model.

    Args:
        model_path: model.onnx written by ``siamese export``.
        device: "auto" (TensorRT › CUDA › CPU, first that works) or "cpu"/"cuda"/"tensorrt" to insist.
        batch_size: images per inference call.
        decode_threads: threads decoding images (default: one per core).

    Raises:
        ModelError: missing file, not ONNX, or not a siamese model.
        DeviceUnavailableError: the insisted-on device cannot run here.
    """

    def __init__(self, model_path: str | os.PathLike[str], *, device: str = "auto", batch_size: int = 32, decode_threads: int | None = None) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ModelError(f"{self.model_path}: model file not found (export one with `siamese export`)")
        if batch_size < 1:
            raise ModelError(f"batch size must be at least 1, got {batch_size}")
        check_external_data(self.model_path)  # an untrusted model must not read files outside its folder
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session, self.device = create_session(str(self.model_path), device, options)
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.info = ModelInfo.from_metadata(metadata, str(self.model_path))
        self.spec = self.info.input_spec
        self._check_signature()
        self.batch_size = batch_size
        self.decode_threads = decode_threads or max(1, os.cpu_count() or 1)

    def _check_signature(self) -> None:
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME or len(inputs[0].shape) != 4:
            raise ModelError(f"{self.model_path}: expected one input '{INPUT_NAME}' shaped [N, C, H, W]")

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the model file: what galleries record to refuse a different model."""
        return sha256_file(self.model_path)

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self.info.embedding_dim

    def embed_batch(self, images: NDArray[np.float32]) -> Embeddings:
        """Embed an already preprocessed N×C×H×W float32 batch."""
        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.session.run(None, {INPUT_NAME: np.ascontiguousarray(images, dtype=np.float32)})[0]

    def embed_pixels(self, pixels: NDArray[np.uint8]) -> Embeddings:
        """Embed resized uint8 pixels (N×H×W×C, as :func:`load_pixels` returns), in batches."""
        chunks = [self.embed_batch(normalize(pixels[i : i + self.batch_size], self.spec)) for i in range(0, len(pixels), self.batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), dtype=np.float32)

    def embed_images(self, images: Sequence[Image.Image]) -> Embeddings:
        """Embed decoded Pillow images."""
        chunks = [self.embed_batch(preprocess_images(images[i : i + self.batch_size], self.spec)) for i in range(0, len(images), self.batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), dtype=np.float32)

    def iter_embed_paths(self, paths: Iterable[str | os.PathLike[str]]) -> Iterator[EmbeddedBatch]:
        """Embed files batch by batch; undecodable files are reported in the batch's failures."""
        names = [os.fspath(p) for p in paths]
        chunks = [names[i : i + self.batch_size] for i in range(0, len(names), self.batch_size)]
        with ThreadPoolExecutor(self.decode_threads, thread_name_prefix="siamese-decode") as pool:
            pending: deque[tuple[list[str], list[Future]]] = deque()

            def submit(index: int) -> None:
                if index < len(chunks):
                    pending.append((chunks[index], [pool.submit(_load_or_error, p, self.spec) for p in chunks[index]]))

            for index in range(_PREFETCH_BATCHES):
                submit(index)
            for index in range(len(chunks)):
                chunk, futures = pending.popleft()
                submit(index + _PREFETCH_BATCHES)  # keep the decoders busy while this batch runs
                results = [f.result() for f in futures]
                good = [(p, r) for p, r in zip(chunk, results) if not isinstance(r, ImageDecodeError)]
                failures = [(e.path, e.reason) for e in results if isinstance(e, ImageDecodeError)]
                pixels = np.stack([r for _, r in good]) if good else np.zeros((0, self.spec.height, self.spec.width, self.spec.channels), np.uint8)
                yield EmbeddedBatch(self.embed_batch(normalize(pixels, self.spec)), [p for p, _ in good], failures)

    def embed_paths(self, paths: Iterable[str | os.PathLike[str]], *, progress: bool = False) -> EmbedResult:
        """Embed image files; files that cannot be decoded are skipped and listed in ``failures``."""
        names = [os.fspath(p) for p in paths]
        embedded: list[Embeddings] = []
        result = EmbedResult(np.zeros((0, self.dim), np.float32), [], [])
        with progress_bar("embedding", len(names), progress) as ticker:
            for batch in self.iter_embed_paths(names):
                embedded.append(batch.embeddings)
                result.paths.extend(batch.paths)
                result.failures.extend(batch.failures)
                ticker.advance(len(batch.paths) + len(batch.failures))
        if embedded:
            result.embeddings = np.concatenate(embedded)
        return result
