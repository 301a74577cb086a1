"""Coalescing: many concurrent calls of one kind become one database statement.

A registration or a device list is a tiny statement, and under load most of its cost is the
trip to the database (a thread hop for SQLite, a network round trip for PostgreSQL). Callers
`await batcher.submit(item)`; while a batch runs, new items queue, and the next batch takes
them all at once, so a busy server makes few, large trips and an idle one answers at once —
no timers. A caller that finds a batch's place free runs the batches itself until its own item
is answered: its answer then costs no task to start and no future to wake, each a turn of the
event loop, and a turn of a loop busy with a fan-out is tens of ms. This module knows nothing
about SQL.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence


class Batcher:
    def __init__(
        self,
        run_batch: Callable[[Sequence], Awaitable[Sequence]],
        *,
        max_size: int = 256,
        concurrency: int | Callable[[], int] = 1,
    ):
        """`run_batch(items)` returns one result per item, in order; `concurrency` batches may
        run at once: a number, or a function asked each time a batch could start."""
        self._run_batch = run_batch
        self._max_size = max_size
        self._concurrency = concurrency if callable(concurrency) else lambda: concurrency
        self._queue: list[tuple[object, asyncio.Future]] = []
        self._draining = 0  # drains that will still look at the queue before they stop
        # Until done: the drain tasks, and a future per caller running batches itself.
        self._running: set[asyncio.Future] = set()

    async def submit(self, item):
        future = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._draining < self._concurrency():
            self._draining += 1
            leading = asyncio.get_running_loop().create_future()
            self._running.add(leading)
            try:
                # Until this item is answered (by this caller's batch, or by another drain
                # that took it).
                while self._queue and not future.done():
                    await self._run_next_batch()
            finally:
                # No await between the last look at the queue and these lines (see `_drain`).
                self._running.discard(leading)
                leading.set_result(None)
                self._draining -= 1
                if self._queue and self._draining < self._concurrency():
                    self._start_drain()  # for the callers that came meanwhile
        return await future

    def _start_drain(self) -> None:
        self._draining += 1
        task = asyncio.create_task(self._drain())
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _drain(self) -> None:
        try:
            while self._queue:
                await self._run_next_batch()
        finally:
            # No await between the last look at the queue and this line, so an item queued
            # after it always finds a drain missing and starts one.
            self._draining -= 1

    async def _run_next_batch(self) -> None:
        batch, self._queue = self._queue[: self._max_size], self._queue[self._max_size:]
        try:
            results = await self._run_batch([item for item, _ in batch])
        except BaseException as exc:  # every caller of the batch hears about it
            failure = exc if isinstance(exc, Exception) else ConnectionAbortedError(
                "the database call was cancelled")
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def wait_idle(self) -> None:
        """Let the batches already queued finish, whoever runs them (used when the store
        closes)."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
