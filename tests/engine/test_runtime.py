"""onnxruntime tuning: thread settings applied, caches used and repaired, IO binding.

GPU paths skip cleanly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from siamese.contracts.spec import InputSpec
from siamese.data.image_folder import scan_image_folder
from siamese.data.images import load_pixels, to_tensor
from siamese.engine import Embedder
from siamese.engine.model_cache import CacheEntry
from siamese.engine.providers import gpu_present
from siamese.engine.runner import BindingRunner, SessionRunner
from siamese.engine.runtime import (
    RuntimeOptions,
    available_cores,
    provider_options,
    session_options,
)


def _batch(embedder: Embedder, folder: Path, count: int = 5) -> np.ndarray:
    paths = [item.path for item in scan_image_folder(folder)][:count]
    return to_tensor(np.stack([load_pixels(p, embedder.spec) for p in paths]))


def test_thread_and_spinning_settings_are_applied(tiny_model_path: Path, tmp_path: Path) -> None:
    options = session_options(RuntimeOptions(intra_op_threads=1, optimization="extended"))
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert (
        options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    )  # decoders share the cores
    assert (
        session_options(RuntimeOptions(spinning=True)).get_session_config_entry(
            "session.intra_op.allow_spinning"
        )
        == "1"
    )
    embedder = Embedder(
        tiny_model_path,
        runtime=RuntimeOptions(intra_op_threads=1, cache_dir=tmp_path),
        decode_threads=3,
    )
    assert embedder.session.get_session_options().intra_op_num_threads == 1
    settings = embedder.settings()
    assert (
        settings["intra_op_threads"] == 1
        and settings["decode_threads"] == 3
        and settings["precision"] == "fp32"
    )
    assert Embedder(tiny_model_path).settings()["intra_op_threads"] == available_cores()


def test_optimised_model_cache_is_written_reused_and_repaired(
    tiny_model_path: Path, unseen_dataset: Path, tmp_path: Path
) -> None:
    runtime = RuntimeOptions(cache_dir=tmp_path / "cache")
    reference = Embedder(tiny_model_path, device="cpu", runtime=RuntimeOptions(cache=False))
    images = _batch(reference, unseen_dataset)
    first = Embedder(tiny_model_path, device="cpu", runtime=runtime)
    entry = CacheEntry.for_model(runtime, first.fingerprint)
    assert entry.exists() and not list(entry.model.parent.glob(".*.tmp"))
    second = Embedder(
        tiny_model_path, device="cpu", runtime=runtime
    )  # opened from the cache: metadata from the JSON
    assert second.info == reference.info
    np.testing.assert_allclose(second.embed_batch(images), reference.embed_batch(images), atol=1e-5)
    entry.model.write_bytes(b"damaged")
    repaired = Embedder(tiny_model_path, device="cpu", runtime=runtime)
    np.testing.assert_allclose(
        repaired.embed_batch(images), reference.embed_batch(images), atol=1e-5
    )
    assert entry.exists() and entry.model.read_bytes() != b"damaged"


def test_binding_runner_matches_plain_runs(tiny_model_path: Path, unseen_dataset: Path) -> None:
    """The GPU path's IO binding, exercised with CPU buffers.

    Same outputs, outputs never aliased.
    """
    embedder = Embedder(tiny_model_path, device="cpu")
    plain, bound = (
        SessionRunner(embedder.session),
        BindingRunner(embedder.session, embedder.dim, device="cpu"),
    )
    images = _batch(embedder, unseen_dataset, 7)
    first = bound(images[:4])
    np.testing.assert_allclose(first, plain(images[:4]), atol=1e-6)
    np.testing.assert_allclose(bound(images), plain(images), atol=1e-6)
    kept = first.copy()
    bound(images[3:7])  # same shape: reuses the buffers
    np.testing.assert_array_equal(first, kept)


def test_tensorrt_options_cache_and_profile(tmp_path: Path) -> None:
    spec = InputSpec.create(32, 1)
    options = provider_options(
        "tensorrt", RuntimeOptions(cache_dir=tmp_path, fp16=True), spec, max_batch=64
    )
    assert options["trt_fp16_enable"] is True
    assert (
        options["trt_engine_cache_path"]
        == options["trt_timing_cache_path"]
        == str(tmp_path / "tensorrt")
    )
    assert options["trt_profile_min_shapes"] == "images:1x1x32x32"
    assert (
        options["trt_profile_max_shapes"]
        == options["trt_profile_opt_shapes"]
        == "images:64x1x32x32"
    )
    assert provider_options("cpu", RuntimeOptions(), spec, 8) == {}
    assert provider_options("cuda", RuntimeOptions(), spec, 8)["device_id"] == 0


def test_embed_batch_splits_large_batches(tiny_model_path: Path, unseen_dataset: Path) -> None:
    small = Embedder(tiny_model_path, batch_size=2)
    images = _batch(small, unseen_dataset, 5)
    np.testing.assert_allclose(
        small.embed_batch(images), Embedder(tiny_model_path).embed_batch(images), atol=1e-5
    )


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_present(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_gpu_providers_match_the_cpu(
    tiny_model_path: Path, unseen_dataset: Path, device: str, tmp_path: Path
) -> None:
    cpu = Embedder(tiny_model_path, device="cpu")
    gpu = Embedder(tiny_model_path, device=device, runtime=RuntimeOptions(cache_dir=tmp_path))
    assert isinstance(gpu._run, BindingRunner)
    images = _batch(cpu, unseen_dataset)
    np.testing.assert_allclose(gpu.embed_batch(images), cpu.embed_batch(images), atol=1e-3)
