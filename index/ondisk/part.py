"""One part of an on-disk index build: add a slice of the gallery's vectors to the trained index.

Run in a worker process (``python -c WORKER_SCRIPT '[trained, vectors, ids, dim, start, stop,
out, threads]'``), it prints the part's record as JSON with the worker's peak resident memory;
a Ray task calls :func:`fill_part` itself.
Every argument is a path or a number, so a part can run on any machine sharing the folder.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from siamese.index.ondisk.files import checksum_file
from siamese.index.search.faiss_index import add_vectors

#: What a worker process runs (not ``-m``: runpy would warn that the package imported it first).
WORKER_SCRIPT = "import sys; from siamese.index.ondisk.part import main; main(sys.argv[1])"
#: Vectors added at a time: a part's memory is its index plus one batch.
_BATCH_ROWS = 65_536


def fill_part(
    trained: str, vectors: str, ids: str, dim: int, start: int, stop: int, out: str, threads: int
) -> dict[str, Any]:
    """Add vectors[start:stop] with their ids to the trained index in ``trained``; write ``out``.

    Returns the part's record: file name, item count, sha256 and size.
    """
    faiss.omp_set_num_threads(max(1, int(threads)))
    index = faiss.read_index(trained)
    table = np.load(ids, mmap_mode="r", allow_pickle=False)
    matrix = np.memmap(vectors, dtype=np.float32, mode="r", shape=(int(table.shape[0]), int(dim)))
    for begin in range(int(start), int(stop), _BATCH_ROWS):
        end = min(begin + _BATCH_ROWS, int(stop))
        add_vectors(index, np.asarray(matrix[begin:end]), np.asarray(table[begin:end]))
    faiss.write_index(index, out)
    digest, size, _ = checksum_file(Path(out))
    return {
        "name": Path(out).name,
        "count": int(stop) - int(start),
        "sha256": digest,
        "bytes": size,
    }


def main(job: str) -> None:
    """Fill the part a JSON job describes; print its record and this process's peak memory."""
    done = fill_part(*json.loads(job))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # this worker's alone
    sys.stdout.write(json.dumps({**done, "peak_rss_mib": round(peak_kib / 1024, 1)}) + "\n")
