"""Readers in one process, a writer publishing in another.

Every reader sees one whole generation, never a mix.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from siamese.index import Gallery, GalleryWriter

DIM = 8


def vector(n: int) -> np.ndarray:
    """Item n's vector: unique, and recognisable from the item's path "vec/n"."""
    return np.concatenate([[float(n)], np.random.default_rng(n).normal(size=DIM - 1)]).astype(
        np.float32
    )


WRITER = """
import sys, numpy as np
from siamese.index import GalleryWriter
sys.path.insert(0, {here!r})
from test_concurrency import vector
with GalleryWriter.open({gallery!r}) as writer:
    n = 100
    for generation in range({generations}):
        fresh = range(n, n + 20)
        writer.stage_embeddings(
            np.stack([vector(i) for i in fresh]),
            [f"vec/{{i}}" for i in fresh],
            [f"id{{i % 5}}" for i in fresh],
        )
        rows = writer.items._db.execute(
            "SELECT id FROM items WHERE removed_gen IS NULL AND added_gen IS NOT NULL"
        )
        ids = [item_id for item_id, in rows]
        writer.publish(removed=ids[generation % 7 :: 9])
        n += 20
print("done", flush=True)
"""


def test_readers_see_old_or_new_never_a_mix(tmp_path: Path) -> None:
    gallery = tmp_path / "g"
    with GalleryWriter.create(
        gallery, dimension=DIM, model_fingerprint="0" * 64, model_path="m", index_type="Flat"
    ) as writer:
        writer.stage_embeddings(
            np.stack([vector(n) for n in range(100)]),
            [f"vec/{n}" for n in range(100)],
            [f"id{n % 5}" for n in range(100)],
        )
        writer.publish()
    long_lived = Gallery.open(gallery)
    held_paths = {item.path for item in long_lived.items.all_items()}
    code = WRITER.format(here=str(Path(__file__).parent), gallery=str(gallery), generations=40)
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen, checks = set(), 0
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            with Gallery.open(gallery) as reader:  # checks count = index = rows at one generation
                seen.add(reader.manifest.generation)
                items = reader.items.all_items()
                picks = [
                    items[i] for i in np.random.default_rng(checks).integers(0, len(items), 20)
                ]
                numbers = [int(item.path.split("/")[1]) for item in picks]
                distances, ids = reader.nearest(np.stack([vector(n) for n in numbers]), k=1)
                found = reader.items.get(ids[:, 0].tolist())
                for n, distance, item_id in zip(numbers, distances[:, 0], ids[:, 0]):
                    assert found[int(item_id)].path == f"vec/{n}" and distance < 1e-4
                checks += 1
    finally:
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0 and "done" in out, err
    print(f"\nconcurrency: {checks} reader checks across {len(seen)} generations")
    assert len(seen) >= 3 and checks >= 3, (seen, checks)
    # a reader opened before every one of those generations still answers from its own, whole
    results = long_lived.search(np.stack([vector(n) for n in range(100)]), k=3)
    assert all(r.matches[0].path == f"vec/{n}" for n, r in enumerate(results))
    assert {m.path for r in results for m in r.matches} <= held_paths
    long_lived.close()
    with Gallery.open(gallery) as final:
        assert final.manifest.generation == 41 and Gallery.verify(gallery, check_files=False).ok
