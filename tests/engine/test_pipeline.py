"""The decode pipeline: exactly the bytes of load_pixels, in order, across batches and failures."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest

from siamese.contracts.spec import InputSpec
from siamese.data.image_folder import scan_image_folder
from siamese.data.images import load_pixels, to_tensor
from siamese.engine.pipeline import DecodePipeline

SPEC = InputSpec.create(24, 1, mean=(0.5,), std=(0.25,))


def _paths(folder: Path) -> list[Path]:
    return [item.path for item in scan_image_folder(folder)]


@pytest.mark.parametrize("threads", [0, 2])
def test_batches_hold_exactly_the_decoded_bytes(
    unseen_dataset: Path, tmp_path: Path, threads: int
) -> None:
    paths = _paths(unseen_dataset)[:21]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    mixed = [*paths[:9], broken, *paths[9:]]
    with ThreadPoolExecutor(threads) if threads else nullcontext() as pool:
        batches = [
            (b.images.copy(), b.paths, b.failures)
            for b in DecodePipeline(SPEC, 8, pool, prefetch=2).iter_batches(mixed)
        ]
    assert [len(p) + len(f) for _, p, f in batches] == [8, 8, 6]
    assert [p for _, paths_, _ in batches for p in paths_] == [str(p) for p in paths]
    assert [f[0] for _, _, failures in batches for f in failures] == [str(broken)]
    expected = to_tensor(np.stack([load_pixels(p, SPEC) for p in paths]))
    assert all(images.dtype == np.uint8 for images, _, _ in batches)  # the ring holds bytes
    np.testing.assert_array_equal(np.concatenate([images for images, _, _ in batches]), expected)


def test_stopping_early_leaves_nothing_running(unseen_dataset: Path) -> None:
    paths = _paths(unseen_dataset)
    with ThreadPoolExecutor(2) as pool:
        iterator = DecodePipeline(SPEC, 4, pool, prefetch=3).iter_batches(paths)
        first = next(iterator)
        assert first.images.shape == (4, 1, 24, 24)
        iterator.close()  # cancels queued work; the pool shuts down without waiting on it


def test_buffers_are_reused_between_batches(unseen_dataset: Path) -> None:
    """Preallocated ring: no new batch array per batch once the pipeline runs."""
    paths = _paths(unseen_dataset)
    with ThreadPoolExecutor(2) as pool:
        bases = {
            id(batch.images.base)
            for batch in DecodePipeline(SPEC, 4, pool, prefetch=1).iter_batches(paths)
        }
    assert len(bases) == 2  # prefetch + 1 buffers serve all len(paths)/4 batches


def test_single_image_decodes_inline(unseen_dataset: Path) -> None:
    path = _paths(unseen_dataset)[0]
    (batch,) = DecodePipeline(SPEC, 32, executor=None).iter_batches([path])
    assert batch.images.dtype == np.uint8
    np.testing.assert_array_equal(batch.images[0], to_tensor(load_pixels(path, SPEC)))
