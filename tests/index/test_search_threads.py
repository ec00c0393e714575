"""Small searches run on one OpenMP thread with unchanged results.

See faiss_index.SINGLE_THREAD_BELOW.
"""

from __future__ import annotations

import faiss
import numpy as np

from siamese.index.faiss_index import SINGLE_THREAD_BELOW, add_vectors, new_index, search


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
