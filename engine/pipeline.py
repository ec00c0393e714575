"""The decode pipeline: files → uint8 N×C×H×W batches, decoded by a thread pool ahead of use.

Pillow releases the GIL while it decodes and resizes, so a few threads keep every core busy.
Each batch is written into one of a small ring of preallocated uint8 N×C×H×W buffers: workers
decode a slice of the batch each and copy the bytes straight into their rows (the model
normalises inside its graph), so nothing is stacked, converted or normalised per image
afterwards, and a batch is a quarter of the float32 size. At most ``prefetch`` batches are
decoded ahead of the consumer, which bounds memory and leaves the cores to inference once
decoding is ahead.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from siamese.contracts.spec import InputSpec
from siamese.core.errors import ImageDecodeError
from siamese.data.images import load_pixels

#: Batches decoded ahead of the one being embedded.
DEFAULT_PREFETCH = 2
#: Images per decode task: large enough that task overhead vanishes, small enough to balance
#: threads.
_TASK_IMAGES = 8


@dataclass
class PreparedBatch:
    """One batch ready for inference.

    ``images`` may be a view of a reused buffer: it is valid until the next batch is requested.
    """

    images: NDArray[np.uint8]
    paths: list[str]
    failures: list[tuple[str, str]]


def _decode_into(
    paths: Sequence[str],
    rows: NDArray[np.uint8],
    spec: InputSpec,
    reduce: bool,
) -> list[tuple[int, ImageDecodeError]]:
    """Decode ``paths`` into consecutive rows.

    Return (position, error) for the files that failed.
    """
    failed = []
    for position, path in enumerate(paths):
        try:
            np.copyto(rows[position], load_pixels(path, spec, reduce=reduce).transpose(2, 0, 1))
        except ImageDecodeError as exc:
            failed.append((position, exc))
    return failed


class DecodePipeline:
    """Turns file paths into preprocessed batches, decoding ahead on an executor.

    Args:
        spec: the model's input spec.
        batch_size: images per batch.
        executor: the thread pool that decodes (None: decode in the calling thread).
        prefetch: batches decoded ahead of the consumer.
        reduce: decode large images at reduced scale (see reduced_decode).
    """

    def __init__(
        self,
        spec: InputSpec,
        batch_size: int,
        executor: Executor | None,
        *,
        prefetch: int = DEFAULT_PREFETCH,
        reduce: bool = True,
    ) -> None:
        self.spec = spec
        self.batch_size = batch_size
        self.executor = executor
        self.prefetch = max(1, prefetch)
        self.reduce = reduce

    def _buffers(self, count: int, size: int) -> list[NDArray[np.uint8]]:
        return [np.empty((size, *self.spec.shape), dtype=np.uint8) for _ in range(count)]

    def iter_batches(self, paths: Sequence[str | os.PathLike[str]]) -> Iterator[PreparedBatch]:
        """Yield batches in input order; undecodable files are listed in each batch's failures."""
        names = [os.fspath(p) for p in paths]
        if not names:
            return
        starts = range(0, len(names), self.batch_size)
        if self.executor is None or len(names) <= _TASK_IMAGES:
            # Tiny jobs (a single query) decode inline: a thread hop would only add latency.
            (buffer,) = self._buffers(1, min(self.batch_size, len(names)))
            for start in starts:
                chunk = names[start : start + self.batch_size]
                failed = _decode_into(chunk, buffer, self.spec, self.reduce)
                yield self._finish(chunk, buffer, failed)
            return
        ring = self._buffers(self.prefetch + 1, min(self.batch_size, len(names)))
        pending: deque[tuple[list[str], NDArray[np.uint8], list[Future]]] = deque()

        def submit(batch: int) -> None:
            if batch >= len(starts):
                return
            chunk = names[starts[batch] : starts[batch] + self.batch_size]
            buffer = ring[batch % len(ring)]
            tasks = [
                self.executor.submit(
                    _decode_into,
                    chunk[i : i + _TASK_IMAGES],
                    buffer[i : i + _TASK_IMAGES],
                    self.spec,
                    self.reduce,
                )
                for i in range(0, len(chunk), _TASK_IMAGES)
            ]
            pending.append((chunk, buffer, tasks))

        for batch in range(self.prefetch):
            submit(batch)
        try:
            for batch in range(len(starts)):
                chunk, buffer, tasks = pending.popleft()
                # The buffer this submits into was last yielded prefetch+1 batches ago: free by now.
                submit(batch + self.prefetch)
                failed = [
                    (offset + position, exc)
                    for offset, task in zip(range(0, len(chunk), _TASK_IMAGES), tasks)
                    for position, exc in task.result()
                ]
                yield self._finish(chunk, buffer, failed)
        finally:
            for _, _, tasks in pending:  # consumer stopped early: do not leave work queued
                for task in tasks:
                    task.cancel()

    def _finish(
        self,
        chunk: list[str],
        buffer: NDArray[np.uint8],
        failed: list[tuple[int, ImageDecodeError]],
    ) -> PreparedBatch:
        if not failed:
            return PreparedBatch(buffer[: len(chunk)], chunk, [])
        bad = {position for position, _ in failed}
        keep = [i for i in range(len(chunk)) if i not in bad]
        return PreparedBatch(
            buffer[keep], [chunk[i] for i in keep], [(exc.path, exc.reason) for _, exc in failed]
        )
