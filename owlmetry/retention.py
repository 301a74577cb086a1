"""Retention: upstream's clean-up of the inbox, inside `serve` every hour and as `owlmetry cleanup`.

Read notifications are soft-deleted once read more than RETENTION_READ_DAYS ago; soft-deleted
ones are removed once deleted more than RETENTION_DELETED_DAYS ago, with their deliveries and
push records, and the audit rows of devices a provider's answer removed that long ago; 0 days
keeps them. Unread notifications never expire. Login codes past the rate limit's window are
pruned, and producers' idempotency keys older than IDEMPOTENCY_KEY_HOURS. Every step runs in
bounded batches, each its own short transaction, with a pause between them, so registrations
never wait long behind it (SQLite has one writer).
On PostgreSQL one process at a time runs it; another that comes meanwhile skips its run.

Owns the cutoffs, the batching and the schedule. Must hold no SQL (`owlmetry.store.retention`
has the statements).
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

from owlmetry.clock import now_ms
from owlmetry.config import Config
from owlmetry.login_codes import FAILURES_KEPT_MS, MAX_FAILURES, WINDOW_MS
from owlmetry.store import DatabaseUnavailable, Store

log = logging.getLogger("owlmetry.retention")

HOUR_MS = 60 * 60 * 1000
DAY_MS = 24 * HOUR_MS
BATCH_SIZE = 1_000
# Between two batches: room for the writes that queued meanwhile.
PAUSE_S = 0.01
# Inside `serve`: the first run a little after the start (not in the start's rush), then hourly.
FIRST_RUN_AFTER_S = 60.0
EVERY_S = 3600.0


@dataclass(frozen=True)
class Cleaned:
    """What one run did, in rows."""

    soft_deleted: int = 0
    removed: int = 0
    login_codes: int = 0
    idempotency_keys: int = 0
    device_removals: int = 0  # audit rows of removed devices, kept as long as deleted rows

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


async def clean_up(store: Store, config: Config, now: int, *, batch_size: int = BATCH_SIZE,
                   pause_s: float = PAUSE_S, stopping: asyncio.Event | None = None
                   ) -> Cleaned | None:
    """One run as of `now`; None when another process is running one. Ends early, after the
    batch under way, once `stopping` is set."""
    stopping = stopping or asyncio.Event()

    async def in_batches(batch: Callable[[int], Awaitable[int]]) -> int:
        done = 0
        while not stopping.is_set():
            count = await batch(batch_size)
            done += count
            if count < batch_size:
                break
            await asyncio.sleep(pause_s)
        return done

    async with store.retention_lock() as ours:
        if not ours:
            return None
        read_days, deleted_days = config.retention_read_days, config.retention_deleted_days
        soft_deleted = removed = device_removals = 0
        if read_days:
            soft_deleted = await in_batches(
                lambda limit: store.soft_delete_read(now - read_days * DAY_MS, now, limit))
        if deleted_days:
            removed = await in_batches(
                lambda limit: store.remove_deleted(now - deleted_days * DAY_MS, limit))
            device_removals = await in_batches(
                lambda limit: store.prune_device_removals(now - deleted_days * DAY_MS, limit))
        login_codes = await in_batches(
            lambda limit: store.prune_login_codes(now - WINDOW_MS, limit,
                                                   now - FAILURES_KEPT_MS, MAX_FAILURES))
        idempotency_keys = await in_batches(lambda limit: store.prune_idempotency_keys(
            now - config.idempotency_key_hours * HOUR_MS, limit))
    return Cleaned(soft_deleted, removed, login_codes, idempotency_keys, device_removals)


class RetentionJob:
    """The clean-up inside `serve`: `start()`, then `await stop()` on shutdown, which lets the
    batch under way finish."""

    def __init__(self, store: Store, config: Config, clock: Callable[[], int] = now_ms,
                 every_s: float = EVERY_S):
        self.store = store
        self.config = config
        self.clock = clock
        self.every_s = every_s
        self._stopping = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="retention")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        wait_s = min(FIRST_RUN_AFTER_S, self.every_s)
        while True:
            try:
                await asyncio.wait_for(self._stopping.wait(), wait_s)
                return
            except TimeoutError:
                pass
            wait_s = self.every_s
            try:
                cleaned = await clean_up(self.store, self.config, self.clock(),
                                         stopping=self._stopping)
            except DatabaseUnavailable as exc:  # the store said it; one line, no traceback
                log.warning("retention: skipped, the database is unavailable (%s); trying again "
                            "in %g s", exc.kind, wait_s)
                continue
            except Exception:
                log.exception("retention: the clean-up failed; trying again in %g s", wait_s)
                continue
            if cleaned is None:
                log.info("retention: another process is cleaning up; skipped")
            elif any(cleaned.as_dict().values()):
                log.info("retention: soft-deleted %d read notifications, removed %d deleted "
                         "ones, pruned %d login codes and %d idempotency keys",
                         cleaned.soft_deleted, cleaned.removed, cleaned.login_codes,
                         cleaned.idempotency_keys)
