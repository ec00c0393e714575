"""The micro-batcher: concurrent requests share inference calls, each gets its own rows back."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from siamese.service.batcher import MicroBatcher, split_rows


class _Model:
    """Embeds a row as [its first value, batch size]; sleeps like a real inference call."""

    def __init__(self, seconds: float = 0.01) -> None:
        self.seconds = seconds
        self.calls: list[int] = []

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        self.calls.append(len(rows))
        time.sleep(self.seconds)
        return np.stack([rows[:, 0, 0, 0], np.full(len(rows), len(rows), np.float32)], axis=1)


def _rows(value: float, count: int = 1) -> np.ndarray:
    return np.full((count, 1, 2, 2), value, dtype=np.float32)


async def _run(batcher: MicroBatcher, requests: list[np.ndarray]) -> list[np.ndarray]:
    batcher.start()
    try:
        return await asyncio.gather(*[batcher.submit(rows) for rows in requests])
    finally:
        await batcher.stop()


@pytest.mark.parametrize("max_batch", [1, 8])
def test_concurrent_requests_share_batches(max_batch: int) -> None:
    model = _Model()
    requests = [_rows(n, 1 + n % 3) for n in range(24)]  # 48 rows in requests of 1–3
    results = asyncio.run(
        _run(MicroBatcher(split_rows(model), max_batch=max_batch, max_wait_s=0.02), requests)
    )
    for n, (rows, result) in enumerate(zip(requests, results)):
        assert result.shape == (len(rows), 2) and np.all(result[:, 0] == n)
    assert sum(model.calls) == 48
    if max_batch == 1:
        assert model.calls == [len(r) for r in requests]  # one request per call
    else:
        assert max(model.calls) <= max_batch and len(model.calls) <= 48 // 4


def test_a_request_larger_than_the_batch_runs_alone() -> None:
    model = _Model(0)
    (result,) = asyncio.run(
        _run(MicroBatcher(split_rows(model), max_batch=4, max_wait_s=0), [_rows(7, 10)])
    )
    assert model.calls == [10] and result.shape == (10, 2)


def test_each_request_gets_its_context_back() -> None:
    def run(rows: np.ndarray, requests: list) -> list:
        return [f"{count} rows, k={k}" for count, k in requests]

    async def scenario() -> list[str]:
        batcher = MicroBatcher(run, max_batch=16, max_wait_s=0.01)
        batcher.start()
        try:
            return await asyncio.gather(batcher.submit(_rows(1, 2), 3), batcher.submit(_rows(2), 7))
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()) == ["2 rows, k=3", "1 rows, k=7"]


def test_model_failure_reaches_every_request_and_cancelled_ones_are_skipped() -> None:
    def broken(rows: np.ndarray) -> np.ndarray:
        raise ValueError("model exploded")

    async def scenario() -> None:
        batcher = MicroBatcher(split_rows(broken), max_batch=8, max_wait_s=0.01)
        batcher.start()
        try:
            outcomes = await asyncio.gather(
                batcher.submit(_rows(1)), batcher.submit(_rows(2)), return_exceptions=True
            )
            assert all(isinstance(o, ValueError) for o in outcomes)
            model = _Model()
            batcher._run = split_rows(model)  # the loop survives a failed batch
            abandoned = asyncio.ensure_future(batcher.submit(_rows(3)))
            await asyncio.sleep(0)
            abandoned.cancel()
            assert (await batcher.submit(_rows(4)))[0, 0] == 4
            assert sum(model.calls) == 1  # the cancelled request was never run
        finally:
            await batcher.stop()

    asyncio.run(scenario())


def test_waits_only_for_announced_requests() -> None:
    async def scenario() -> tuple[list[int], float]:
        model = _Model(0)
        batcher = MicroBatcher(split_rows(model), max_batch=8, max_wait_s=0.5)
        batcher.start()
        try:
            started = time.perf_counter()
            await batcher.submit(_rows(1))  # nobody else is coming: no waiting
            alone = time.perf_counter() - started

            async def late() -> np.ndarray:
                with batcher.incoming():  # decoding…
                    await asyncio.sleep(0.05)
                return await batcher.submit(_rows(3))

            first = asyncio.ensure_future(late())
            await asyncio.sleep(0.01)
            await asyncio.gather(batcher.submit(_rows(2)), first)
            return model.calls, alone
        finally:
            await batcher.stop()

    calls, alone = asyncio.run(scenario())
    assert alone < 0.4 and calls == [
        1,
        2,
    ]  # alone: no 0.5 s wait; the second batch waited for the announced request
