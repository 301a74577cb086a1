"""The answer recorder: every device's final answer and every delivery end, in few transactions.

Answers arrive one device at a time, thousands a second; each becomes a row, and a dead token
also a deleted device. The recorder collects them and writes everything collected so far in one
store transaction; while that runs, new answers collect for the next one, so a busy dispatcher
makes few, large writes and a quiet one writes at once -- no timers. A delivery's end is only
written together with or after its answers. What each write stored is counted, for /metrics.
This module knows nothing about channels.
"""

import asyncio
import logging
import operator
from collections import Counter
from collections.abc import Callable

from owlmetry.backoff import backoff
from owlmetry.clock import now_ms
from owlmetry.store import (
    DatabaseUnavailable,
    DeliveryEnd,
    DeliveryStatus,
    PushOutcome,
    PushRecord,
    Store,
)

log = logging.getLogger("owlmetry.notify")

MAX_ROWS = 4096  # per transaction, to keep each write short
RETRY_DELAY_S = 1.0
RETRY_MAX_DELAY_S = 30.0  # while the database is unavailable
# What a write stored is counted after it, by `Counter.update` walking the batch in C: nothing
# is added to the path of each answer.
PUSH_KEY = operator.attrgetter("channel", "outcome")
END_KEY = operator.attrgetter("channel", "status")


class AnswerRecorder:
    def __init__(self, store: Store, owner: str):
        self._store = store
        self._owner = owner
        self._pushes: list[PushRecord] = []
        # (end, what to call once it is written, how many answers had been added before it)
        self._ends: list[tuple[DeliveryEnd, Callable[[], None], int]] = []
        self._added = 0
        self._written = 0
        self._task: asyncio.Task | None = None
        # What this recorder has stored since it was made (a dead token kept because it was
        # registered again counts as the FAILED it was stored as).
        self.recorded: Counter[tuple[str, PushOutcome]] = Counter()  # answers by channel, outcome
        self.ended: Counter[tuple[str, DeliveryStatus]] = Counter()  # ends by channel, status

    def add_push(self, record: PushRecord) -> None:
        self._pushes.append(record)
        self._added += 1
        self._start()

    def add_end(self, end: DeliveryEnd, written: Callable[[], None]) -> None:
        """Write `end` with or after every answer added before it; then call `written()`."""
        self._ends.append((end, written, self._added))
        self._start()

    async def flush(self) -> None:
        while self._task is not None:
            await asyncio.shield(self._task)

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        failures = 0
        try:
            while self._pushes or self._ends:
                pushes, self._pushes = self._pushes[:MAX_ROWS], self._pushes[MAX_ROWS:]
                # An end goes with the last of the answers added before it, or after them.
                covered = self._written + len(pushes)
                count = 0
                while count < len(self._ends) and self._ends[count][2] <= covered:
                    count += 1
                ends, self._ends = self._ends[:count], self._ends[count:]
                try:
                    stored = await self._store.save_outcomes(
                        self._owner, pushes, [end for end, _, _ in ends], now_ms())
                except Exception as exc:
                    # Nothing is dropped: the same rows go again once the database answers.
                    if not isinstance(exc, DatabaseUnavailable):  # the store said that one
                        log.exception("cannot record %d answers and %d delivery ends; retrying",
                                      len(pushes), len(ends))
                    self._pushes[:0] = pushes
                    self._ends[:0] = ends
                    await asyncio.sleep(backoff(RETRY_DELAY_S, failures, RETRY_MAX_DELAY_S))
                    failures += 1
                    continue
                failures = 0
                self._written = covered
                self.recorded.update(map(PUSH_KEY, stored))
                self.ended.update(END_KEY(end) for end, _, _ in ends)
                for _, written, _ in ends:
                    written()
        finally:
            self._task = None
