"""The coalescer behind registrations and device lists: every caller gets its own answer."""

import asyncio

import pytest

from owlmetry.store.batching import Batcher


async def test_concurrent_calls_share_batches_and_get_their_own_results():
    batches = []

    async def double(items):
        batches.append(list(items))
        await asyncio.sleep(0)
        return [item * 2 for item in items]

    batcher = Batcher(double, max_size=10)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(25)))
    assert results == [n * 2 for n in range(25)]
    assert sorted(n for batch in batches for n in batch) == list(range(25))
    assert max(len(batch) for batch in batches) == 10
    assert len(batches) < 25


async def test_a_call_right_after_another_is_not_stranded():
    async def identity(items):
        return list(items)

    batcher = Batcher(identity)
    for n in range(100):
        assert await batcher.submit(n) == n


async def test_a_failing_batch_fails_each_of_its_callers_and_the_next_batch_runs():
    async def explode_on_three(items):
        await asyncio.sleep(0)
        if 3 in items:
            raise RuntimeError("boom")
        return list(items)

    batcher = Batcher(explode_on_three, max_size=2)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(6)), return_exceptions=True)
    assert results[:2] == [0, 1]
    assert [type(r) for r in results[2:4]] == [RuntimeError, RuntimeError]
    assert results[4:] == [4, 5]
    await batcher.wait_idle()


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_no_more_batches_run_at_once_than_allowed(concurrency):
    running = peak = 0

    async def slow(items):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        running -= 1
        return list(items)

    batcher = Batcher(slow, max_size=1, concurrency=concurrency)
    assert await asyncio.gather(*(batcher.submit(n) for n in range(20))) == list(range(20))
    assert peak == concurrency
