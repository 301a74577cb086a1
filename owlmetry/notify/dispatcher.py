"""The dispatcher: durable fan-out of notifications to every device of every recipient.

`enqueue` writes the content once, then the inbox rows and a pending delivery on each channel
the recipient's preferences choose for the type (`routing`), in chunks of recipients that each
commit whole (the store's), and returns; the run loop then
claims due deliveries in batches (under a lease that a heartbeat renews, so work of a crashed
process comes back by itself), hands each recipient's devices to its channel, and records
every final answer through the `AnswerRecorder`. A device with a final answer on record is never
sent to again; answers worth retrying (429, 5xx, lost connections) put the delivery back in the
queue after a backoff, a bounded number of times.

Owns the queue's rules and the in-process concurrency. Must not know how a channel reaches a
device, nor any SQL.
"""

import asyncio
import functools
import logging
import uuid
from collections.abc import Iterable

from owlmetry.backoff import backoff
from owlmetry.clock import now_ms
from owlmetry.config import Config
from owlmetry.ids import OrderedIds, new_ordered_id
from owlmetry.notify.channels import open_channels
from owlmetry.notify.channels.base import Answer, Channel
from owlmetry.notify.recorder import AnswerRecorder
from owlmetry.notify.routing import group_recipients
from owlmetry.preferences import Defaults
from owlmetry.store import (
    Claim,
    DatabaseUnavailable,
    DeliveryEnd,
    DeliveryStatus,
    NotificationContent,
    PushOutcome,
    PushRecord,
    PushTarget,
    Store,
)

log = logging.getLogger("owlmetry.notify")

CLAIM_LOOPS = 2
# Recipients an enqueue reads and routes at a time (the store writes them in its own chunks).
ENQUEUE_SLICE = 2_000
# While the database is unavailable, claims are tried again after a backoff up to this long.
UNAVAILABLE_MAX_WAIT_S = 30.0
# Read once per answer: a module global is cheaper to read than an enum class's attribute.
RETRY = PushOutcome.RETRY


async def enqueue(store: Store, user_ids: Iterable[str], content: NotificationContent,
                  channels: Iterable[str], defaults: Defaults) -> list[str]:
    """One notification per distinct existing user, in the order given, with the deliveries on
    `channels` that each user's preferences (over `defaults`) choose; returns their ids.

    Done a slice of recipients at a time (their preferences read, routed, written), so that a
    request of 50,000 holds the event loop, and every other request, for a few ms at a time."""
    now = now_ms()
    channels = tuple(channels)
    distinct = list(dict.fromkeys(user_ids))
    # Ids ascending in user order: the store writes a request in chunks in id order, and
    # each chunk is then one narrow range of every index it lands in, the user-keyed ones
    # (inbox, unread counts) as much as the id-keyed ones (see `Deliveries.enqueue_groups`).
    by_user = sorted(distinct)
    new_ids = OrderedIds(now)
    content_id = new_ordered_id(now)
    ids: dict[str, str] = {}  # user -> notification id, of the rows written
    for start in range(0, len(by_user), ENQUEUE_SLICE):
        users = by_user[start:start + ENQUEUE_SLICE]
        part = list(zip(new_ids.take(len(users)), users))
        stored = await store.preferences_of([user_id for _, user_id in part])
        groups = group_recipients(part, content.type, stored, defaults, channels)
        written = await store.enqueue_groups(groups, content, now, content_id=content_id,
                                             content_written=bool(ids))
        ids.update((user_id, notification_id) for notification_id, user_id in part
                   if notification_id in written)
    return [ids[user_id] for user_id in distinct if user_id in ids]


def outcome_counts(counts: dict[PushOutcome, int]) -> tuple[int, int, int, int]:
    """A finished delivery's devices by outcome, as its end keeps them."""
    return (counts.get(PushOutcome.DELIVERED, 0), counts.get(PushOutcome.REMOVED, 0),
            counts.get(PushOutcome.FAILED, 0), counts.get(PushOutcome.SKIPPED, 0))


def final_status(counts: dict[PushOutcome, int],
                 channel: str) -> tuple[DeliveryStatus, str | None]:
    """A finished delivery's status and reason, from its devices' outcomes."""
    if counts.get(PushOutcome.DELIVERED):
        return DeliveryStatus.SENT, None
    if not counts:
        return DeliveryStatus.SKIPPED, f"the recipient has no {channel} devices"
    if set(counts) == {PushOutcome.SKIPPED}:
        return DeliveryStatus.SKIPPED, None
    parts = ", ".join(f"{counts[outcome]} {outcome}"
                      for outcome in (PushOutcome.REMOVED, PushOutcome.FAILED)
                      if counts.get(outcome))
    return DeliveryStatus.FAILED, f"no device accepted it ({parts})"


class _Delivery:
    """A claimed delivery while its sends are out: answers are counted as they come."""

    __slots__ = ("channel", "claim", "counts", "later", "started", "waiting")

    def __init__(self, claim: Claim, channel: Channel):
        self.claim = claim
        self.channel = channel
        self.started = now_ms()  # when this attempt's sends began (the status route shows it)
        self.counts: dict[PushOutcome, int] = dict(claim.earlier)
        self.later: list[tuple[PushTarget, Answer]] = []  # transient failures
        self.waiting = len(claim.targets)


class Dispatcher:
    def __init__(self, store: Store, channels: dict[str, Channel], *, owner: str | None = None,
                 lease_ms: int = 30_000, claim_size: int = 500, max_in_flight: int = 8_000,
                 max_attempts: int = 6, retry_base_ms: int = 5_000, retry_max_ms: int = 600_000,
                 poll_s: float = 1.0, only: list[str] | None = None,
                 defaults: Defaults | None = None):
        """`max_in_flight`: no new claims while this many devices are being sent to.
        `only`: deliver these notifications and nothing else (`owlmetry notify --wait`).
        `defaults`: the channels of each type where a user chose nothing (the operator's)."""
        self.store = store
        self.channels = channels
        # What each channel's claims read as its targets (the store knows no channel).
        self._targets = {name: channel.targets for name, channel in channels.items()}
        self.defaults = defaults or Defaults()
        self.owner = owner or f"dispatcher-{uuid.uuid4()}"
        self._lease_ms = lease_ms
        self._claim_size = claim_size
        self._max_in_flight = max_in_flight
        self._max_attempts = max_attempts
        self._retry_base_ms = retry_base_ms
        self._retry_max_ms = retry_max_ms
        self._poll_s = poll_s
        self._only = only
        self.recorder = AnswerRecorder(store, self.owner)
        self._held: dict[tuple[str, str], Claim] = {}  # claimed and not yet ended on record
        self._in_flight = 0  # devices of the held deliveries
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._claimers: list[asyncio.Task] = []
        self._renewer: asyncio.Task | None = None

    @property
    def in_flight(self) -> int:
        """Devices of the deliveries this process holds now (a delivery without devices: 1)."""
        return self._in_flight

    @property
    def held(self) -> int:
        """Deliveries this process holds (claimed, end not yet on record)."""
        return len(self._held)

    async def enqueue(self, user_ids: Iterable[str], content: NotificationContent) -> list[str]:
        ids = await enqueue(self.store, user_ids, content, self.channels, self.defaults)
        self._wake.set()
        return ids

    def start(self) -> None:
        # Two claim loops: while one waits for the database, the other's claim is being sent.
        self._claimers = [asyncio.create_task(self._run(), name=f"dispatcher claims {i}")
                          for i in range(CLAIM_LOOPS)]
        self._renewer = asyncio.create_task(self._renew_leases(), name="dispatcher leases")

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop claiming; let deliveries under way finish for up to `grace_s`, then close the
        channels, which ends the sends still running as retries: those deliveries go back to
        the queue for the next start. Returns once everything answered is recorded."""
        self._stopping = True
        self._wake.set()
        self._room.set()
        await asyncio.gather(*self._claimers, return_exceptions=True)
        if self._held:
            log.info("stopping: %d deliveries (%d devices) under way; waiting up to %g s",
                     len(self._held), self._in_flight, grace_s)
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
        except TimeoutError:
            log.info("stopping: %d deliveries not finished in %g s go back to the queue",
                     len(self._held), grace_s)
        await asyncio.gather(*(channel.close() for channel in self.channels.values()))
        await self._idle.wait()
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        await self.recorder.flush()

    async def _run(self) -> None:
        failures = 0  # claims in a row that found the database unavailable
        while not self._stopping:
            if self._in_flight >= self._max_in_flight:
                self._room.clear()
                await self._room.wait()
                continue
            self._wake.clear()
            wait_s = self._poll_s
            try:
                claims = await self.store.claim_deliveries(
                    self.owner, now_ms(), self._lease_ms, self._claim_size, self._only,
                    self._targets)
                failures = 0
            except DatabaseUnavailable:  # the store said it, once: wait longer each time
                claims = []
                wait_s = backoff(self._poll_s, failures, max(self._poll_s, UNAVAILABLE_MAX_WAIT_S))
                failures += 1
            except Exception:
                log.exception("cannot claim deliveries; trying again")
                claims = []
            if not claims:
                try:
                    await asyncio.wait_for(self._wake.wait(), wait_s)
                except TimeoutError:
                    pass
                continue
            for claim in claims:
                key = (claim.notification_id, claim.channel)
                if key in self._held:
                    # Our own lease lapsed (renewals failed) and we took it again: the work
                    # under way goes on, under the new lease.
                    continue
                self._held[key] = claim
                self._in_flight += max(1, len(claim.targets))
                self._idle.clear()
                self._begin(claim)

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            if self._held:
                try:
                    await self.store.renew_leases(self.owner, list(self._held),
                                                  now_ms() + self._lease_ms)
                except DatabaseUnavailable:
                    pass  # the store said it; the next renewal tries again
                except Exception:
                    log.exception("cannot renew delivery leases")

    def _begin(self, claim: Claim) -> None:
        """Start a send per device still waiting, or end the delivery at once if there are none."""
        channel = self.channels.get(claim.channel)
        if channel is None or channel.unavailable:
            reason = channel.unavailable if channel else f"no such channel: {claim.channel}"
            outcome, status = ((PushOutcome.SKIPPED, DeliveryStatus.SKIPPED) if channel
                               else (PushOutcome.FAILED, DeliveryStatus.FAILED))
            started = now_ms()
            for target in claim.targets:
                self._record(claim, target, Answer(outcome, None, reason), started)
            counts = dict(claim.earlier)
            counts[outcome] = counts.get(outcome, 0) + len(claim.targets)
            self._end(claim, DeliveryEnd(claim.notification_id, claim.channel, status, reason,
                                         None, outcome_counts(counts)))
            return
        delivery = _Delivery(claim, channel)
        if not claim.targets:
            self._conclude(delivery)
            return
        try:
            prepared = channel.prepare(claim)
        except (ValueError, TypeError) as exc:
            for target in claim.targets:
                self._answered(delivery, target,
                               Answer(PushOutcome.FAILED, None, f"cannot build the message: {exc}"))
            return
        for target in claim.targets:
            try:
                channel.send_soon(prepared, target,
                                  functools.partial(self._answered, delivery, target))
            except Exception as exc:  # a channel bug must not lose the delivery
                log.exception("channel %s raised on send", channel.name)
                self._answered(delivery, target,
                               Answer(PushOutcome.RETRY, None,
                                      f"internal error: {type(exc).__name__}"))

    def _answered(self, delivery: _Delivery, target: PushTarget, answer: Answer) -> None:
        if answer.outcome == RETRY:  # not `is`: the plain string "retry" means the same
            delivery.later.append((target, answer))
        else:
            self._record(delivery.claim, target, answer, delivery.started)
            delivery.counts[answer.outcome] = delivery.counts.get(answer.outcome, 0) + 1
        delivery.waiting -= 1
        if delivery.waiting == 0:
            self._conclude(delivery)

    def _conclude(self, delivery: _Delivery) -> None:
        """Every device has answered: end the delivery, or put it back for the transient ones."""
        claim, later = delivery.claim, delivery.later
        key = claim.notification_id, claim.channel
        if later and (self._stopping or claim.attempts < self._max_attempts):
            # Back to the queue for the devices still to reach: after a backoff (or the longest
            # wait a provider asked for), or at once when a shutdown, not APNs, cut the sends
            # short.
            wait = 0 if self._stopping else max(
                self._backoff(claim.attempts),
                *(answer.retry_after_ms or 0 for _, answer in later))
            retry_at = now_ms() + wait
            reason = later[-1][1].reason
            for target, answer in later:  # kept as waiting, with this attempt counted
                self._record(claim, target, answer, delivery.started)
            self._end(claim, DeliveryEnd(*key, DeliveryStatus.PENDING, reason, retry_at))
            return
        counts = delivery.counts
        for target, answer in later:
            self._record(claim, target, Answer(
                PushOutcome.FAILED, answer.status,
                f"{answer.reason} (gave up after {claim.attempts} attempts)",
                apns_id=answer.apns_id), delivery.started)
            counts[PushOutcome.FAILED] = counts.get(PushOutcome.FAILED, 0) + 1
        self._end(claim, DeliveryEnd(*key, *final_status(counts, claim.channel), None,
                                     outcome_counts(counts)))

    def _end(self, claim: Claim, end: DeliveryEnd) -> None:
        self.recorder.add_end(end, lambda: self._release(claim))

    def _release(self, claim: Claim) -> None:
        """The delivery's end is on record: its place is free."""
        del self._held[(claim.notification_id, claim.channel)]
        self._in_flight -= max(1, len(claim.targets))
        if self._in_flight < self._max_in_flight:
            self._room.set()
        if not self._held:
            self._idle.set()

    def _record(self, claim: Claim, target: PushTarget, answer: Answer, started: int) -> None:
        """Record a device's final answer; or, for a RETRY, that it waits for the next
        attempt (the store keeps such records apart)."""
        self.recorder.add_push(PushRecord(
            claim.notification_id, target.device_id, claim.channel, answer.outcome,
            answer.status, answer.reason, answer.invalid_since, target.platform,
            target.environment, answer.apns_id, answer.provider_at, started))

    def _backoff(self, attempts: int) -> int:
        return int(backoff(self._retry_base_ms, attempts - 1, self._retry_max_ms))


def dispatcher_for(store: Store, config: Config, channels: dict[str, Channel] | None = None,
                   only: list[str] | None = None) -> Dispatcher:
    """The dispatcher `config` describes, on the channels it configures (or `channels`, which
    tests bring); says at once which channels will skip their deliveries, and why."""
    if channels is None:
        channels = open_channels(config)
    for name, channel in channels.items():
        if channel.unavailable:
            log.warning("%s deliveries will be skipped: %s", name, channel.unavailable)
    return Dispatcher(store, channels, lease_ms=config.notify_lease_s * 1000, only=only,
                      defaults=config.notification_defaults)
