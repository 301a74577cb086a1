"""Scheduled sends: holding a producer's request until its `send_at`, then releasing it once.

`schedule` gives each recipient their notification id at once and stores the send (content
and recipients, in one transaction); nothing of it is listed, counted, pushed or mailed before
its time. The `Releaser` (inside `serve`, beside the dispatcher) polls for due sends, claims each
under a lease it renews while it works, and hands it to the dispatcher's enqueue with the
pre-assigned ids and the stored content. A release cut short (a crash, a lost lease) is claimed
again once the lease lapses and enqueues only the recipients not yet written, so several
processes on one database and any number of restarts release each notification once.

Owns the release loop and its lease. Must hold no SQL (`owlmetry.store.schedules`) nor decide
which `send_at` a request may have (the producer route's).
"""

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable

from owlmetry.backoff import backoff
from owlmetry.clock import now_ms
from owlmetry.ids import new_ordered_id
from owlmetry.notify.dispatcher import Dispatcher, new_recipients
from owlmetry.store import DatabaseUnavailable, NotificationContent, Store

log = logging.getLogger("owlmetry.notify")

POLL_S = 1.0
# One send per claim: a claimed send is being released, so its lease is the one renewed (a
# batch of claims would let the later ones' leases lapse behind a large first one).
CLAIM_SIZE = 1
UNAVAILABLE_MAX_WAIT_S = 30.0


async def schedule(store: Store, user_ids: Iterable[str], content: NotificationContent,
                   send_at: int, now: int, content_id: str | None = None) -> list[str]:
    """Hold one notification per distinct existing user (in the order given) until `send_at`;
    their ids, which the release keeps. `content_id`: the send's (an idempotent request's; a
    second send under it fails whole)."""
    distinct, recipients = new_recipients(user_ids, now)
    stored = await store.schedule(content_id or new_ordered_id(now), content, recipients,
                                  send_at, now)
    ids = {user_id: notification_id for notification_id, user_id in recipients}
    return [ids[user_id] for user_id in distinct if ids[user_id] in stored]


class Releaser:
    """`start()`, then `await stop()` on shutdown, which lets the release under way finish (or
    leaves it to the next claim once its lease lapses)."""

    def __init__(self, store: Store, dispatcher: Dispatcher, *, lease_ms: int = 30_000,
                 clock: Callable[[], int] = now_ms, poll_s: float = POLL_S,
                 owner: str | None = None):
        """`clock`: the time sends fall due by (tests move it)."""
        self.store = store
        self.dispatcher = dispatcher
        self.owner = owner or f"releaser-{uuid.uuid4()}"
        self._lease_ms = lease_ms
        self._clock = clock
        self._poll_s = poll_s
        self._stopping = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="scheduled sends")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task

    async def release_due(self) -> int:
        """Claim the sends due now and release them, one at a time; how many were released."""
        released = 0
        while not self._stopping.is_set():
            claimed = await self.store.claim_scheduled(self.owner, self._clock(), self._lease_ms,
                                                       CLAIM_SIZE)
            for content_id in claimed:
                released += await self._release(content_id)
            if len(claimed) < CLAIM_SIZE:
                break
        return released

    async def _release(self, content_id: str) -> bool:
        renewing = asyncio.create_task(self._renew(content_id))
        try:
            release = await self.store.scheduled_release(content_id)
            written = await self.dispatcher.release(release) if release is not None else set()
            ended = await self.store.end_scheduled(self.owner, content_id, self._clock())
            log.info("released a scheduled send: %d notifications enqueued%s", len(written),
                     "" if ended else " (another process ended it)")
            return ended
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)

    async def _renew(self, content_id: str) -> None:
        """Keep the claim on a large send while its recipients are written."""
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            try:
                await self.store.renew_scheduled(self.owner, content_id,
                                                 self._clock() + self._lease_ms)
            except DatabaseUnavailable:
                pass  # the store said it; the next renewal tries again
            except Exception:
                log.exception("cannot renew the lease on a scheduled send")

    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            wait_s = self._poll_s
            try:
                await self.release_due()
                failures = 0
            except DatabaseUnavailable:  # the store said it, once: wait longer each time
                wait_s = backoff(self._poll_s, failures, max(self._poll_s, UNAVAILABLE_MAX_WAIT_S))
                failures += 1
            except Exception:
                log.exception("cannot release scheduled sends; trying again")
            try:
                await asyncio.wait_for(self._stopping.wait(), wait_s)
            except TimeoutError:
                pass
