"""Small searches run on one OpenMP thread, or split a long IVF scan over the cores, with
unchanged results.

See faiss_index.SINGLE_THREAD_BELOW and SPLIT_PROBES_FROM_CODES.
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from siamese.index.search.faiss_index import (
    SINGLE_THREAD_BELOW,
    SPLIT_PROBES_FROM_CODES,
    add_vectors,
    new_index,
    probe_split,
    search,
    search_parameters,
    train,
)

LISTS = 16


@pytest.fixture(scope="module")
def ivf_index() -> tuple[faiss.Index, np.ndarray]:
    """An IVF index whose full probe scans just over SPLIT_PROBES_FROM_CODES codes a query."""
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((SPLIT_PROBES_FROM_CODES + 2000, 16)).astype(np.float32)
    index = new_index(16, f"IVF{LISTS},SQ8")
    train(index, vectors)
    add_vectors(index, vectors, np.arange(len(vectors), dtype=np.int64) * 7)
    return index, vectors


def test_small_searches_match_and_restore_the_thread_setting() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2000, 16)).astype(np.float32)
    index = new_index(16)
    add_vectors(index, vectors, np.arange(2000, dtype=np.int64))
    queries = vectors[: SINGLE_THREAD_BELOW + 5] + 0.01
    before = faiss.omp_get_max_threads()
    many_d, many_i = search(index, queries, 5)
    one_d, one_i = search(index, queries[:1], 5)
    assert faiss.omp_get_max_threads() == before
    np.testing.assert_array_equal(one_i[0], many_i[0])
    np.testing.assert_allclose(one_d[0], many_d[0], rtol=1e-5)
    assert one_i[0, 0] == 0


def test_a_long_single_scan_splits_its_lists_with_the_same_neighbours(ivf_index) -> None:
    index, vectors = ivf_index
    everything = search_parameters(index, {"nprobe": LISTS})
    queries = vectors[:3] + 0.05
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        assert probe_split(index, everything)
        split_d, split_i = search(index, queries, 10, everything)
        assert faiss.extract_index_ivf(index).parallel_mode == 1  # the split really ran
        one_d, one_i = search(index, queries, 10, everything, threads=1)
        assert faiss.extract_index_ivf(index).parallel_mode == 0
        assert faiss.omp_get_max_threads() == 2
    finally:
        faiss.omp_set_num_threads(before)
    np.testing.assert_array_equal(split_i, one_i)
    np.testing.assert_allclose(split_d, one_d, rtol=1e-5)
    assert list(split_i[:, 0]) == [0, 7, 14]


def test_only_long_ivf_scans_on_several_cores_are_split(ivf_index) -> None:
    index, vectors = ivf_index
    flat = new_index(16)
    add_vectors(flat, vectors, np.arange(len(vectors), dtype=np.int64))
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        assert not probe_split(flat)
        # One list in 16 scans a sixteenth of the codes: below the threshold.
        assert not probe_split(index, search_parameters(index, {"nprobe": 1}))
        assert probe_split(index, search_parameters(index, {"nprobe": LISTS}))
        faiss.omp_set_num_threads(1)
        assert not probe_split(index, search_parameters(index, {"nprobe": LISTS}))
    finally:
        faiss.omp_set_num_threads(before)
