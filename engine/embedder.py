"""Batch embedding with onnxruntime from model.onnx alone.

Decode, preprocess and inference overlapped.

A thread pool decodes images into preallocated uint8 batch buffers a bounded number of batches
ahead (see pipeline.py) while onnxruntime embeds the current batch; the model normalises the
bytes inside its graph (format 2), or the host does it by the same definition for format-1
models, which take float32. Large images are decoded at reduced scale. The session is tuned
for sharing the cores with the decoders (runtime.py), its optimised graph is cached
(model_cache.py), and GPU providers run through IO binding with preallocated device buffers of
the model's input type (runner.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from PIL import Image

from siamese.contracts.model_card import INPUT_NAME, ModelCard, ModelInfo
from siamese.contracts.pair_card import PairInfo
from siamese.contracts.spec import normalize_pixels
from siamese.core.errors import ModelError
from siamese.core.files import sha256_file
from siamese.core.progress import progress_bar
from siamese.data.images import preprocess_images, to_tensor
from siamese.engine import model_cache
from siamese.engine.model_safety import check_external_data
from siamese.engine.pipeline import DEFAULT_PREFETCH, DecodePipeline, PreparedBatch
from siamese.engine.providers import NO_DRIVER, create_session, gpu_present
from siamese.engine.runner import make_runner
from siamese.engine.runtime import (
    RuntimeOptions,
    available_cores,
    provider_options,
    session_options,
)

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

Embeddings = NDArray[np.float32]
#: The onnxruntime type of the ``images`` input each metadata input_dtype requires.
_ORT_TYPES = {"uint8": "tensor(uint8)", "float32": "tensor(float)"}


@dataclass
class EmbedResult:
    """Embeddings of the files that decoded, in input order, and the files that did not.

    The record of a whole call (:meth:`Embedder.embed_paths`) and of each batch streamed by
    :meth:`Embedder.iter_embed_paths` alike.
    """

    embeddings: Embeddings
    paths: list[str]
    failures: list[tuple[str, str]] = field(default_factory=list)


class TowerFacts:
    """What every exported tower tells about itself: file fingerprint, dimension, pair.

    Shared by :class:`Embedder` and :class:`~siamese.engine.text_embedder.TextEmbedder`, whose
    ``model_path`` and ``info`` (the model card, either kind) it reads.
    """

    model_path: Path
    info: ModelCard

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the model file: what galleries record to refuse a different model."""
        return sha256_file(self.model_path)

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self.info.embedding_dim

    @property
    def pair(self) -> PairInfo | None:
        """The pseudo-siamese pair this tower belongs to (its card's, checked on load), or None."""
        return self.info.pair


class Embedder(TowerFacts):
    """Embeds images with an exported siamese model.

    Args:
        model_path: model.onnx written by ``siamese export`` (fp32, fp16 or int8 variant).
        device: "auto" (TensorRT › CUDA › CPU, first that works) or "cpu"/"cuda"/"tensorrt" to
            insist.
        batch_size: images per inference call.
        decode_threads: threads decoding images (default: one per available core).
        runtime: onnxruntime tuning (threads, spinning, optimisation, caches, TensorRT fp16,
            warm-up).
        reduce: decode images much larger than the input at reduced scale (JPEG draft mode).
        prefetch: batches decoded ahead of inference.

    Raises:
        ModelError: missing file, not ONNX, or not a siamese model.
        DeviceUnavailableError: the insisted-on device cannot run here.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        device: str = "auto",
        batch_size: int = 32,
        decode_threads: int | None = None,
        runtime: RuntimeOptions | None = None,
        reduce: bool = True,
        prefetch: int = DEFAULT_PREFETCH,
    ) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ModelError(
                f"{self.model_path}: model file not found (export one with `siamese export`)"
            )
        if batch_size < 1:
            raise ModelError(f"batch size must be at least 1, got {batch_size}")
        check_external_data(
            self.model_path
        )  # an untrusted model must not read files outside its folder
        self.batch_size = batch_size
        self.runtime = runtime or RuntimeOptions()
        self.decode_threads = decode_threads or available_cores()
        self.reduce = reduce
        self.prefetch = prefetch
        self.session, self.device, metadata = self._open_session(device)
        try:
            self.info = ModelInfo.from_metadata(metadata, str(self.model_path))
            self.spec = self.info.input_spec
            self._check_signature()
        except ModelError:
            if self._pending_cache is not None:
                self._pending_cache[1].unlink(missing_ok=True)  # never cache a model we refuse
            raise
        if self._pending_cache is not None:
            model_cache.publish(*self._pending_cache, metadata)
        # Format 1 models take float32 pixels normalised here; format 2 graphs normalise bytes.
        self._host_normalize = self.info.input_dtype == "float32"
        #: The element type of the model's input tensor (and of GPU input buffers).
        self.input_dtype: type[np.generic] = np.float32 if self._host_normalize else np.uint8
        self._run = make_runner(self.session, self.device, self.dim, self.input_dtype)
        self._pool: ThreadPoolExecutor | None = None
        if self.runtime.warmup:
            self.warmup()

    # ------------------------------------------------------------------ session
    def _open_session(self, device: str) -> tuple[ort.InferenceSession, str, dict[str, str]]:
        """Open the session, from the optimised-model cache when the CPU is the target."""
        self._pending_cache: tuple[model_cache.CacheEntry, Path] | None = None
        #: Under "auto", why each better device did not run (`siamese info --providers`).
        self.passed_over: dict[str, str] = {}
        cpu_only = device == "cpu" or (device == "auto" and not gpu_present())
        if device == "auto" and cpu_only:
            self.passed_over = {"tensorrt": NO_DRIVER, "cuda": NO_DRIVER}
        if cpu_only and self.runtime.cache:
            entry = model_cache.CacheEntry.for_model(self.runtime, self.fingerprint)
            cached = model_cache.load_cached(entry, self.runtime)
            if cached is not None:
                return cached[0], "cpu", cached[1]
            options, tmp = model_cache.optimizing_options(entry, self.runtime)
            session, _ = create_session(str(self.model_path), "cpu", options)
            self._pending_cache = (
                entry,
                tmp,
            )  # published once the metadata proves it a siamese model
            return session, "cpu", dict(session.get_modelmeta().custom_metadata_map)
        extra: dict[str, dict[str, Any]] = {}
        if not cpu_only:
            # GPU provider options need the input shape, which the model's metadata holds.
            probe, _ = create_session(
                str(self.model_path), "cpu", session_options(self.runtime, "disable")
            )  # ModelError if unloadable
            spec = ModelInfo.from_metadata(
                probe.get_modelmeta().custom_metadata_map, str(self.model_path)
            ).input_spec
            extra = {
                name: provider_options(name, self.runtime, spec, self.batch_size)
                for name in ("cuda", "tensorrt")
            }
        session, actual = create_session(
            str(self.model_path), device, session_options(self.runtime), extra, self.passed_over
        )
        return session, actual, dict(session.get_modelmeta().custom_metadata_map)

    def _check_signature(self) -> None:
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME or len(inputs[0].shape) != 4:
            raise ModelError(
                f"{self.model_path}: expected one input '{INPUT_NAME}' shaped [N, C, H, W]"
            )
        wanted = self.info.input_dtype
        if inputs[0].type != _ORT_TYPES[wanted]:
            raise ModelError(
                f"{self.model_path}: model format {self.info.format_version} takes {wanted} "
                f"'{INPUT_NAME}' but the graph's input is {inputs[0].type}; "
                "re-export it with `siamese export`"
            )

    def warmup(self, batch_sizes: Sequence[int] = (1,)) -> None:
        """Run zero batches so allocation, weight packing and TensorRT engine builds happen now."""
        for size in batch_sizes:
            self.embed_batch(np.zeros((size, *self.spec.shape), dtype=np.uint8))

    def settings(self) -> dict[str, Any]:
        """The effective engine settings (for benchmarks and `siamese info`)."""
        return {
            "device": self.device,
            "batch_size": self.batch_size,
            "decode_threads": self.decode_threads,
            "intra_op_threads": self.runtime.threads,
            "spinning": bool(self.runtime.spinning),
            "optimization": self.runtime.optimization,
            "reduced_decode": self.reduce,
            "prefetch_batches": self.prefetch,
            "precision": self.info.precision,
            "input_dtype": self.info.input_dtype,
        }

    # ---------------------------------------------------------------- lifecycle
    def _executor(self) -> ThreadPoolExecutor | None:
        if self.decode_threads <= 1:
            return None
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.decode_threads, thread_name_prefix="siamese-decode"
            )
        return self._pool

    def close(self) -> None:
        """Stop the decode threads (the embedder can still be used; they restart on demand)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    @property
    def kind(self) -> str:
        """What this model embeds: images."""
        return "image"

    # ---------------------------------------------------------------- embedding
    def embed_batch(self, images: NDArray[np.uint8]) -> Embeddings:
        """Embed a resized N×C×H×W uint8 batch (run in chunks of ``batch_size``).

        Raises:
            ValueError: the batch is not uint8 (float pixels would be normalised twice).
        """
        if images.dtype != np.uint8:
            raise ValueError(
                f"embed_batch takes uint8 pixels shaped N×C×H×W, got {images.dtype}; "
                "the model normalises them itself"
            )
        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        images = np.ascontiguousarray(images)
        if self._host_normalize:
            images = normalize_pixels(images, self.spec)
        if len(images) <= self.batch_size:
            return self._run(images)
        return np.concatenate(
            [
                self._run(images[i : i + self.batch_size])
                for i in range(0, len(images), self.batch_size)
            ]
        )

    def embed_pixels(self, pixels: NDArray[np.uint8]) -> Embeddings:
        """Embed resized uint8 pixels (N×H×W×C, as :func:`load_pixels` returns), in batches."""
        chunks = [
            self.embed_batch(to_tensor(pixels[i : i + self.batch_size]))
            for i in range(0, len(pixels), self.batch_size)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), dtype=np.float32)

    def embed_images(self, images: Sequence[Image.Image]) -> Embeddings:
        """Embed decoded Pillow images."""
        chunks = [
            self.embed_batch(preprocess_images(images[i : i + self.batch_size], self.spec))
            for i in range(0, len(images), self.batch_size)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), dtype=np.float32)

    def pipeline(self) -> DecodePipeline:
        """The decode pipeline this embedder feeds inference with."""
        return DecodePipeline(
            self.spec, self.batch_size, self._executor(), prefetch=self.prefetch, reduce=self.reduce
        )

    def iter_preprocessed(self, paths: Iterable[str | os.PathLike[str]]) -> Iterator[PreparedBatch]:
        """Decode files into uint8 batches, without inference (each batch valid until the next)."""
        return self.pipeline().iter_batches([os.fspath(p) for p in paths])

    def iter_embed_paths(self, paths: Iterable[str | os.PathLike[str]]) -> Iterator[EmbedResult]:
        """Embed files batch by batch; undecodable files are reported in the batch's failures."""
        for batch in self.iter_preprocessed(paths):
            yield EmbedResult(self.embed_batch(batch.images), batch.paths, batch.failures)

    def embed_paths(
        self, paths: Iterable[str | os.PathLike[str]], *, progress: bool = False
    ) -> EmbedResult:
        """Embed image files; files that cannot be decoded are skipped, listed in ``failures``."""
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
