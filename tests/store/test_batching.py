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
    batches = []

    async def explode_on_three(items):
        batches.append(list(items))
        await asyncio.sleep(0)
        if 3 in items:
            raise RuntimeError("boom")
        return list(items)

    batcher = Batcher(explode_on_three, max_size=2)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(6)), return_exceptions=True)
    failed = next(batch for batch in batches if 3 in batch)
    assert [type(results[n]) for n in failed] == [RuntimeError] * len(failed)
    assert all(results[n] == n for n in range(6) if n not in failed)
    assert batches.index(failed) < len(batches) - 1  # batches ran after it
    await batcher.wait_idle()


async def test_a_caller_alone_runs_its_batch_itself():
    tasks = []

    async def record_task(items):
        tasks.append(asyncio.current_task())
        return list(items)

    batcher = Batcher(record_task)
    assert await batcher.submit(1) == 1
    assert tasks == [asyncio.current_task()]  # no drain task of its own to start and wake


class SlowBatches:
    """A batch that takes a moment, counting how many run at once at most (`peak`)."""

    def __init__(self):
        self.running = self.peak = 0

    async def __call__(self, items):
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(0.001)
        self.running -= 1
        return list(items)


async def twenty_calls(batcher: Batcher) -> None:
    assert await asyncio.gather(*(batcher.submit(n) for n in range(20))) == list(range(20))


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_no_more_batches_run_at_once_than_allowed(concurrency):
    slow = SlowBatches()
    await twenty_calls(Batcher(slow, max_size=1, concurrency=concurrency))
    assert slow.peak == concurrency


async def test_waiting_for_idle_waits_for_a_batch_a_caller_runs_itself():
    started, release = asyncio.Event(), asyncio.Event()

    async def held(items):
        started.set()
        await release.wait()
        return list(items)

    batcher = Batcher(held)
    call = asyncio.create_task(batcher.submit(1))
    await started.wait()
    idle = asyncio.create_task(batcher.wait_idle())
    for _ in range(10):
        await asyncio.sleep(0)
    assert not idle.done()  # else the store would close under the batch
    release.set()
    assert await call == 1
    await idle


async def test_a_concurrency_function_is_asked_each_time_a_batch_could_start():
    allowed = 1
    slow = SlowBatches()
    batcher = Batcher(slow, max_size=1, concurrency=lambda: allowed)
    await twenty_calls(batcher)
    assert slow.peak == 1
    allowed = 3
    await twenty_calls(batcher)
    assert slow.peak == 3
