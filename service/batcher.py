"""Dynamic micro-batching: images of requests arriving together are embedded in one inference call.

A request hands over its preprocessed rows (N×C×H×W) with a context (the service's: its k) and
awaits a future. One loop task takes the oldest waiting request, then gathers more until
``max_batch`` rows or until ``max_wait`` has passed since it started gathering, runs the batch
function once on a single worker thread (the event loop stays free to accept uploads meanwhile)
— the service's embeds the rows and searches them in one FAISS call — and resolves every
request's future with its own result.

The batcher waits for companions only while more requests are known to be on their way (their
uploads are being decoded, see :meth:`incoming`): waiting for requests that are not coming would
only leave the cores idle. While inference runs, newcomers queue up and form the next batch at
once, so under load batches fill by themselves; alone, a request is embedded without delay.
``max_batch=1`` turns batching off (one request per call), which the load test compares against.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

Rows = NDArray[np.float32]
T = TypeVar("T")
#: The batch function: all rows of the batch, and (row count, context) per request, in order → one
#: result per request.
BatchFunction = Callable[[Rows, Sequence[tuple[int, Any]]], Sequence[T]]


@dataclass
class _Waiting(Generic[T]):
    rows: Rows
    context: Any
    future: asyncio.Future[T]


@dataclass
class BatchStats:
    """Counters for gallery info and the load test: how full the batches were."""

    batches: int = 0
    images: int = 0
    largest: int = 0
    inference_seconds: float = 0.0

    def record(self, size: int, seconds: float) -> None:
        """Count one batch function call of ``size`` rows that took ``seconds``."""
        self.batches += 1
        self.images += size
        self.largest = max(self.largest, size)
        self.inference_seconds += seconds

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary."""
        mean = self.images / self.batches if self.batches else 0.0
        return {
            "batches": self.batches,
            "images": self.images,
            "mean_batch": round(mean, 2),
            "largest_batch": self.largest,
            "inference_seconds": round(self.inference_seconds, 3),
        }


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel a background task and wait until it really stops (its cancellation is expected)."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def split_rows(embed: Callable[[Rows], Rows]) -> BatchFunction[Rows]:
    """A batch function that embeds the rows and gives each request its own rows of the result."""

    def run(rows: Rows, requests: Sequence[tuple[int, Any]]) -> list[Rows]:
        embeddings = embed(rows)
        bounds = np.cumsum([0, *(count for count, _ in requests)])
        return [embeddings[start:end] for start, end in pairwise(bounds)]

    return run


class MicroBatcher(Generic[T]):
    """Batches concurrent requests into one call of a batch function.

    Start it inside the running event loop.

    Args:
        run: the batch function (called on the batcher's own worker thread).
        max_batch: rows per call at most (a single request larger than this runs alone).
        max_wait_s: how long the oldest waiting request may wait for requests still being decoded.
    """

    def __init__(
        self, run: BatchFunction[T], *, max_batch: int = 32, max_wait_s: float = 0.005
    ) -> None:
        self._incoming = 0
        self._run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.stats = BatchStats()
        self._waiting: deque[_Waiting[T]] = deque()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # One thread: inference calls never overlap, and onnxruntime's own threads use the cores.
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="siamese-infer")

    def start(self) -> None:
        """Start the gathering loop in the running event loop."""
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="siamese-batcher")

    async def stop(self) -> None:
        """Stop gathering, fail whatever still waits, and release the worker thread."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        while self._waiting:
            waiting = self._waiting.popleft()
            if not waiting.future.done():
                waiting.future.set_exception(RuntimeError("the service is shutting down"))
        self._worker.shutdown(wait=True)

    @property
    def running(self) -> bool:
        """Whether the loop is alive (readiness)."""
        return self._task is not None and not self._task.done()

    @property
    def queued(self) -> int:
        """Requests submitted and waiting for a batch (the queue depth /metrics shows)."""
        return sum(1 for waiting in self._waiting if not waiting.future.done())

    @property
    def announced(self) -> int:
        """Requests announced by :meth:`incoming` and still being decoded."""
        return self._incoming

    @contextmanager
    def incoming(self) -> Iterator[None]:
        """Announce a request that will be submitted soon, so a gathering batch waits for it.

        Wrap the request's decoding in it.
        """
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1
            if self._arrived is not None:
                self._arrived.set()  # a gathering batch re-checks whether anyone is still coming

    async def submit(self, rows: Rows, context: Any = None) -> T:
        """Run ``rows`` (N×C×H×W) together with whatever other requests are waiting.

        Returns this request's result.
        """
        if self._arrived is None or not self.running:
            raise RuntimeError("the batcher is not running")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(rows, context, future))
        self._arrived.set()
        return await future  # cancelled (timeout, client gone): the loop skips it

    # ---------------------------------------------------------------- the loop
    def _take(self, batch: list[_Waiting[T]], size: int) -> int:
        """Move waiting requests into ``batch`` while they fit; return the new row count."""
        while self._waiting:
            head = self._waiting[0]
            if head.future.done():  # cancelled while waiting
                self._waiting.popleft()
                continue
            if batch and size + len(head.rows) > self.max_batch:
                break
            batch.append(self._waiting.popleft())
            size += len(head.rows)
        return size

    async def _gather(self) -> list[_Waiting[T]]:
        """Await a first request, then announced ones until the batch is full or time is up."""
        assert self._arrived is not None
        batch: list[_Waiting[T]] = []
        size = 0
        while not batch:
            self._arrived.clear()
            size = self._take(batch, 0)
            if not batch:
                await self._arrived.wait()
        deadline = time.perf_counter() + self.max_wait_s
        while size < self.max_batch and self._incoming > 0:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass
            size = self._take(batch, size)
            if self._waiting and not self._waiting[0].future.done():
                break  # the next request does not fit: this batch is as full as it gets
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            rows = batch[0].rows if len(batch) == 1 else np.concatenate([w.rows for w in batch])
            requests = [(len(w.rows), w.context) for w in batch]
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._worker, self._run, rows, requests)
            except Exception as exc:  # noqa: BLE001 (a deliberate boundary, see below)
                # Whatever the model or search raised, every request of the batch hears it rather
                # than waiting forever, and the loop lives on to serve the next batch.
                for waiting in batch:
                    if not waiting.future.done():
                        waiting.future.set_exception(exc)
                continue
            self.stats.record(len(rows), time.perf_counter() - started)
            for waiting, result in zip(batch, results):
                if not waiting.future.done():
                    waiting.future.set_result(result)
