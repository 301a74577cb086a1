"""The dispatcher: durable fan-out of notifications to every device of every recipient.

`enqueue` writes the content once, then the inbox rows and a pending delivery on each channel
the recipient's preferences choose for the type (`routing`), in chunks of recipients that each
commit whole (the store's), and returns; the run loop then
claims due deliveries in batches (under a lease that a heartbeat renews, so work of a crashed
process comes back by itself; a lease fences itself, see `Lease`), hands each recipient's
devices to its channel, and records every final answer through the `AnswerRecorder`. A device
with a final answer on record is never sent to again; answers worth retrying (429, 5xx, lost
connections) put the delivery back in the queue after a backoff, a bounded number of times.

Owns the queue's rules and the in-process concurrency. Must not know how a channel reaches a
device, nor any SQL.
"""

import asyncio
import contextlib
import dataclasses
import functools
import heapq
import itertools
import logging
import time
import uuid
from collections.abc import Iterable

from owlmetry.backoff import backoff
from owlmetry.clock import now_ms
from owlmetry.config import Config
from owlmetry.ids import OrderedIds, new_ordered_id, new_ordered_ids
from owlmetry.notify.channels import open_channels
from owlmetry.notify.channels.base import Answer, Channel
from owlmetry.notify.pacing import InFlightBound
from owlmetry.notify.recorder import AnswerRecorder
from owlmetry.notify.routing import group_recipients
from owlmetry.preferences import Defaults
from owlmetry.store import (
    ENQUEUE_AT_ONCE,
    Claim,
    DatabaseUnavailable,
    DeliveryEnd,
    DeliveryStatus,
    NotificationContent,
    PushOutcome,
    PushRecord,
    PushTarget,
    Release,
    Store,
)

log = logging.getLogger("owlmetry.notify")

CLAIM_LOOPS = 2
# Recipients an enqueue reads and routes at a time: as many as the store writes at once (on
# PostgreSQL two chunks of 500 side by side). A POST of 10,000 recipients answered in 226 ms
# at the median instead of 262 with slices of one chunk, and a million's slowest POST during its
# fan-out took 1.1-1.3 s instead of 1.6 (benchmarks/RESULTS.md, "Session 20").
ENQUEUE_SLICE = ENQUEUE_AT_ONCE
# While a producer's request is being enqueued in this process, claims wait for it, up to this
# long at a time. A request of 50,000 recipients is a hundred chunks, each (on PostgreSQL each
# pair) an await (and on SQLite a writer turn); with a fan-out in full flight every one waits
# behind event-loop turns full of answers and the answers' writes, and a POST took 30-54 s
# instead of 2-5 (benchmarks/RESULTS.md, "A million devices"; a 2 s bound still let 5-11 s
# through). The producer waits for its answer, the fan-out waits for no one: it goes second.
# The bound keeps producers that never stop from stopping deliveries (a claim per loop every
# 10 s).
ENQUEUE_HOLD_S = 10.0
# Claimed deliveries begun per event-loop turn: a claim of 500 begun at once held every request
# waiting behind it (a turn of 100+ ms when a channel records its devices at once).
BEGIN_SLICE = 100
# While the database is unavailable, claims are tried again after a backoff up to this long.
UNAVAILABLE_MAX_WAIT_S = 30.0
# Read once per answer: a module global is cheaper to read than an enum class's attribute.
RETRY = PushOutcome.RETRY
REMOVED = PushOutcome.REMOVED
# A lease is given up this share of its length (at most LEASE_MARGIN_MAX_S) before it ends by
# the database's clock: room for two servers' clocks to differ and for a send that passed the
# check to reach the wire.
LEASE_MARGIN = 0.2
LEASE_MARGIN_MAX_S = 5.0
# Leases are renewed RENEWALS_PER_LEASE times a lease's length, each time only those left with
# less than RENEW_AHEAD ticks' time, so a renewal that fails is tried again at the next tick
# while the lease still has time left. A fan-out's deliveries mostly end within a second of
# their claim; renewing every one held made, at a million devices, a statement of thousands of
# rows every tick (248 ms each, beside the registrations'), almost all about to end anyway.
RENEWALS_PER_LEASE = 6
RENEW_AHEAD = 3


async def enqueue(store: Store, user_ids: Iterable[str], content: NotificationContent,
                  channels: Iterable[str], defaults: Defaults,
                  content_id: str | None = None) -> list[str]:
    """`enqueue_found`'s notification ids, in the order of their users."""
    found = await enqueue_found(store, user_ids, content, channels, defaults, content_id)
    return list(found.values())


async def enqueue_found(store: Store, user_ids: Iterable[str], content: NotificationContent,
                        channels: Iterable[str], defaults: Defaults,
                        content_id: str | None = None) -> dict[str, str]:
    """One notification per distinct existing user, in the order given, with the deliveries on
    `channels` that each user's preferences (over `defaults`) choose; returns user id ->
    notification id, in that order. An id that names no user gets nothing and is not in it:
    the write itself is the check. `content_id`: the id to store the content under (default:
    a new one).

    Done a slice of recipients at a time (their preferences read, routed, written), so that a
    request of 50,000 holds the event loop, and every other request, for a few ms at a time."""
    now = now_ms()
    distinct = list(dict.fromkeys(user_ids))
    # Ids ascending in user order: the store writes a request in chunks in id order, and
    # each chunk is then one narrow range of every index it lands in, the user-keyed ones
    # (inbox, unread counts) as much as the id-keyed ones (see `Deliveries.enqueue_groups`).
    # Sorted a slice per turn and merged as the slices are taken: one sort of 50,000 ids held
    # every other request for 14-40 ms.
    runs = []
    for start in range(0, len(distinct), ENQUEUE_SLICE):
        await asyncio.sleep(0)
        runs.append(sorted(distinct[start:start + ENQUEUE_SLICE]))
    by_user = heapq.merge(*runs)
    new_ids = OrderedIds(now)
    slices = (list(zip(new_ids.take(len(users)), users))
              for users in iter(lambda: list(itertools.islice(by_user, ENQUEUE_SLICE)), []))
    ids = await enqueue_slices(store, slices, content, channels, defaults, now,
                               content_id or new_ordered_id(now))
    return {user_id: ids[user_id] for user_id in distinct if user_id in ids}


async def enqueue_slices(store: Store, slices: Iterable[list[tuple[str, str]]],
                         content: NotificationContent, channels: Iterable[str],
                         defaults: Defaults, now: int, content_id: str,
                         content_stored: bool = False) -> dict[str, str]:
    """Write the recipients (notification_id, user_id) of `slices`, in id order, a slice at a
    time; user -> notification id of the rows written. Ids that exist are skipped (a scheduled
    send's release resumed); `content_stored`: the content is in the database already."""
    channels = tuple(channels)
    ids: dict[str, str] = {}
    parts = iter(slices)
    part = next(parts, None)
    reading = preferences_soon(store, part)
    try:
        while part is not None:
            stored = await reading
            # The next slice's preferences are read while this one is written: under a fan-out
            # every round trip waits behind the answers' writes and the loop's turns, and a
            # slice's two in a row made a POST's 50,000 recipients 200 of them instead of 100.
            following = next(parts, None)
            reading = preferences_soon(store, following)
            groups = group_recipients(part, content.type, stored, defaults, channels)
            written = await store.enqueue_groups(groups, content, now, content_id=content_id,
                                                 content_written=content_stored or bool(ids))
            ids.update((user_id, notification_id) for notification_id, user_id in part
                       if notification_id in written)
            part = following
    finally:
        if reading is not None:  # a write failed: the read ahead is not wanted (nor its error)
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
    await store.enqueued(len(ids))
    return ids


def preferences_soon(store: Store, part: list[tuple[str, str]] | None) -> asyncio.Future | None:
    """The read of the stored preferences of the slice's users, under way (None: no slice)."""
    if part is None:
        return None
    return asyncio.ensure_future(store.preferences_of([user_id for _, user_id in part]))


def new_recipients(user_ids: Iterable[str], now: int) -> tuple[list[str], list[tuple[str, str]]]:
    """The distinct users in the order given, and a new (notification_id, user_id) for each, in
    id order (ids ascending in user order, as `enqueue` gives them): a scheduled send's."""
    distinct = list(dict.fromkeys(user_ids))
    by_user = sorted(distinct)
    return distinct, list(zip(new_ordered_ids(now, len(by_user)), by_user))


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


def dead_since(answer: Answer, started: int) -> Answer:
    """A dead token's answer dated no later than `started`, when its send began: a device
    registered again after that keeps its row. APNs' 410 timestamp may be later (the moment
    it confirmed the token dead, even while the app was registering it again), and
    BadDeviceToken and FCM's answers carry none."""
    since = answer.invalid_since
    return dataclasses.replace(answer,
                               invalid_since=started if since is None else min(since, started))


class Lease:
    """This process's lease on one delivery, by its own monotonic clock: it ends at `deadline`
    (the claim's start + the lease - the margin), moved forward only by a renewal that
    committed, counted from that renewal's start. Past it, another process may have claimed
    the delivery, so no send of it may start (`live`, asked by the channel before each attempt
    goes out) and the dispatcher gives it up (`fenced`): sends not started never start, answers
    still coming in are recorded (a device's final answer is a fact whoever asked; the first on
    record stays), but the delivery is neither ended nor put back by this process -- its next
    holder sends to the devices without an answer on record and ends it. `ending`: its end is
    with the recorder, no send is left to stop; it is renewed until written, never fenced."""

    __slots__ = ("deadline", "delivery", "ending", "fenced")

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.delivery: _Delivery | None = None  # once its sends started
        self.ending = False
        self.fenced = False

    def live(self) -> bool:
        return not self.fenced and time.monotonic() < self.deadline


class _Delivery:
    """A claimed delivery while its sends are out: answers are counted as they come."""

    __slots__ = ("channel", "claim", "counts", "later", "lease", "started", "waiting")

    def __init__(self, claim: Claim, channel: Channel, lease: Lease):
        self.started = now_ms()  # before any of its sends
        self.claim = claim
        self.channel = channel
        self.lease = lease
        self.counts: dict[PushOutcome, int] = dict(claim.earlier)
        self.later: list[tuple[PushTarget, Answer]] = []  # transient failures
        self.waiting = len(claim.targets)


class Dispatcher:
    def __init__(self, store: Store, channels: dict[str, Channel], *, owner: str | None = None,
                 lease_ms: int = 30_000, claim_size: int = 500, max_in_flight: int = 8_000,
                 max_attempts: int = 6, retry_base_ms: int = 5_000, retry_max_ms: int = 600_000,
                 poll_s: float = 1.0, only: list[str] | None = None,
                 defaults: Defaults | None = None, enqueue_hold_s: float = ENQUEUE_HOLD_S):
        """`max_in_flight`: no new claims while this many devices are being sent to (fewer while
        the event loop lags: `pacing`).
        `enqueue_hold_s`: the longest a claim waits for this process's enqueues under way.
        `only`: deliver these notifications and nothing else (`owlmetry notify --wait`).
        `defaults`: the channels of each type where a user chose nothing (the operator's)."""
        self.store = store
        self.channels = channels
        # What each channel's claims read as its targets (the store knows no channel).
        self._targets = {name: channel.targets for name, channel in channels.items()}
        self.defaults = defaults or Defaults()
        self.owner = owner or f"dispatcher-{uuid.uuid4()}"
        self._lease_ms = lease_ms
        self._lease_s = lease_ms / 1000 - min(lease_ms / 1000 * LEASE_MARGIN, LEASE_MARGIN_MAX_S)
        self._claim_size = claim_size
        self._max_attempts = max_attempts
        self._retry_base_ms = retry_base_ms
        self._retry_max_ms = retry_max_ms
        self._poll_s = poll_s
        self._enqueue_hold_s = enqueue_hold_s
        self._enqueuing = 0  # this process's enqueues under way
        self._enqueued = asyncio.Event()  # set when there are none
        self._enqueued.set()
        self._only = only
        self.recorder = AnswerRecorder(store, self.owner)
        self._held: dict[tuple[str, str], Claim] = {}  # claimed and not yet ended on record
        self._leases: dict[tuple[str, str], Lease] = {}  # of the held deliveries
        self.fenced = 0  # deliveries given up since start: their lease ran out (`Lease`)
        self._fenced_unlogged = 0
        # Given-up deliveries whose sends are still out: not taken again until they end.
        self._draining: dict[tuple[str, str], _Delivery] = {}
        self._in_flight = 0  # devices of the held deliveries
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self.bound = InFlightBound(max_in_flight, self._check_room)
        self._pacer: asyncio.Task | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._claimers: list[asyncio.Task] = []
        self._renewer: asyncio.Task | None = None
        self._watchdog: asyncio.Task | None = None

    @property
    def in_flight(self) -> int:
        """Devices of the deliveries this process holds now (a delivery without devices: 1)."""
        return self._in_flight

    @property
    def held(self) -> int:
        """Deliveries this process holds (claimed, end not yet on record)."""
        return len(self._held)

    async def enqueue(self, user_ids: Iterable[str], content: NotificationContent,
                      content_id: str | None = None) -> list[str]:
        """`enqueue`; `content_id`: the caller's (an idempotent request's, which may have
        stored it already)."""
        return list((await self.enqueue_found(user_ids, content, content_id)).values())

    async def enqueue_found(self, user_ids: Iterable[str], content: NotificationContent,
                            content_id: str | None = None) -> dict[str, str]:
        """`enqueue_found`, as `enqueue` is `enqueue`."""
        async with self.producing():
            return await enqueue_found(self.store, user_ids, content, self.channels,
                                       self.defaults, content_id)

    @contextlib.asynccontextmanager
    async def producing(self):
        """Claims wait (up to the hold, `enqueue_hold_s`, at a time) while the block runs: a
        producer's request from its first read of the database (its recipients' check) to its
        last chunk written."""
        self._enqueuing += 1
        self._enqueued.clear()
        try:
            yield
        finally:
            # Chunks of a request that failed half-way are written too: wake either way.
            self._enqueuing -= 1
            if not self._enqueuing:
                self._enqueued.set()
            self._wake.set()

    async def release(self, release: Release) -> set[str]:
        """Enqueue a claimed scheduled send (`owlmetry.notify.releaser`) with its pre-assigned
        ids and stored content; ids enqueued before (a resumed release) are skipped. The ids
        written now."""
        recipients = release.recipients
        slices = (recipients[start:start + ENQUEUE_SLICE]
                  for start in range(0, len(recipients), ENQUEUE_SLICE))
        written = await enqueue_slices(self.store, slices, release.content, self.channels,
                                       self.defaults, now_ms(), release.content_id,
                                       content_stored=True)
        self._wake.set()
        return set(written.values())

    def start(self) -> None:
        # Two claim loops: while one waits for the database, the other's claim is being sent.
        self._claimers = [asyncio.create_task(self._run(), name=f"dispatcher claims {i}")
                          for i in range(CLAIM_LOOPS)]
        self._renewer = asyncio.create_task(self._renew_leases(), name="dispatcher leases")
        self._watchdog = asyncio.create_task(self._give_up_expired(), name="dispatcher fence")
        self._pacer = asyncio.create_task(self.bound.run(), name="dispatcher pacing")

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop claiming; let deliveries under way finish for up to `grace_s`, then close the
        channels, which ends the sends still running as retries: those deliveries go back to
        the queue for the next start. Returns once everything answered is recorded."""
        self._stopping = True
        self._wake.set()
        self._room.set()
        self._enqueued.set()  # a claim loop holding for an enqueue stops at once
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
        for task in (self._renewer, self._watchdog, self._pacer):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.recorder.flush()

    async def _run(self) -> None:
        failures = 0  # claims in a row that found the database unavailable
        while not self._stopping:
            if self._in_flight >= self.bound.limit:
                self._room.clear()
                await self._room.wait()
                continue
            if self._enqueuing:
                try:
                    await asyncio.wait_for(self._enqueued.wait(), self._enqueue_hold_s)
                except TimeoutError:
                    pass
                if self._stopping:
                    break
            self._wake.clear()
            wait_s = self._poll_s
            started = time.monotonic()
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
            deadline = started + self._lease_s
            if deadline <= time.monotonic():
                # The claim took longer than its lease to commit: another process may take
                # these at any moment, so none is sent; they come back when the lease ends.
                log.warning("gave up %d deliveries at once: their claim took longer than the "
                            "lease", len(claims))
                self.fenced += len(claims)
                continue
            for start in range(0, len(claims), BEGIN_SLICE):
                if start:
                    await asyncio.sleep(0)
                self._take(claims[start:start + BEGIN_SLICE], deadline)

    def _take(self, claims: list[Claim], deadline: float) -> None:
        """Hold and begin the deliveries just claimed, under a lease ending at `deadline`."""
        for claim in claims:
            key = (claim.notification_id, claim.channel)
            if key in self._draining:
                # Given up here while its sends are still out: taken again once its lease
                # runs out, when they have ended and their answers are on record.
                self.fenced += 1
                continue
            if key in self._held:
                # Our own lease lapsed in the database before this process saw it by its
                # clock, and we took it again: the work under way goes on, under the new
                # lease (sends that found the old one ended come back as retries).
                lease = self._leases[key]
                lease.deadline = max(lease.deadline, deadline)
                continue
            self._held[key] = claim
            lease = self._leases[key] = Lease(deadline)
            self._in_flight += max(1, len(claim.targets))
            self._idle.clear()
            self._begin(claim, lease)

    async def _renew_leases(self) -> None:
        every_s = self._lease_ms / 1000 / RENEWALS_PER_LEASE
        while True:
            await asyncio.sleep(every_s)
            started = time.monotonic()
            due = started + RENEW_AHEAD * every_s
            keys = [key for key, lease in self._leases.items() if lease.deadline < due]
            if not keys:
                continue
            try:
                renewed = await self.store.renew_leases(self.owner, keys,
                                                        now_ms() + self._lease_ms)
            except DatabaseUnavailable:
                continue  # the store said it; the next renewal tries again
            except Exception:
                log.exception("cannot renew delivery leases")
                continue
            deadline = started + self._lease_s
            lost = []
            for key in keys:
                lease = self._leases.get(key)
                if lease is None or lease.fenced:
                    continue
                if key in renewed:
                    lease.deadline = max(lease.deadline, deadline)
                elif not lease.ending:  # another process took it: our clock ran slow
                    lost.append(key)
            if lost:
                self._give_up(lost, "another process holds them now (their lease ended in "
                                    "the database before it did by this process's clock)")

    def _give_up(self, keys: list[tuple[str, str]], why: str) -> None:
        log.warning("gave up %d deliveries: %s; sends of them not started never will be",
                    len(keys), why)
        for key in keys:
            self._fence_key(key)
        self.fenced += len(keys)

    def _fence(self, claim: Claim) -> None:
        """Give up one delivery whose send answered past its lease (logged by the watchdog)."""
        self._fence_key((claim.notification_id, claim.channel))
        self.fenced += 1
        self._fenced_unlogged += 1

    def _fence_key(self, key: tuple[str, str]) -> None:
        lease = self._leases[key]
        lease.fenced = True
        if lease.delivery is not None and lease.delivery.waiting > 0:
            self._draining[key] = lease.delivery
        self._let_go(key)

    async def _give_up_expired(self) -> None:
        """Fence every delivery whose lease ran out by this process's clock (`Lease`). The sends
        themselves check their lease as they start; this frees the place of the work given up."""
        tick_s = max(0.01, min(1.0, (self._lease_ms / 1000 - self._lease_s) / 2))
        while True:
            await asyncio.sleep(tick_s)
            now = time.monotonic()
            expired = [key for key, lease in self._leases.items()
                       if lease.deadline <= now and not lease.ending]
            if expired:
                self._give_up(expired, "their lease ran out by this process's clock (renewals "
                                       "did not reach the database)")
            if self._fenced_unlogged:
                log.warning("gave up %d deliveries whose sends answered after their lease ran "
                            "out by this process's clock", self._fenced_unlogged)
                self._fenced_unlogged = 0

    def _begin(self, claim: Claim, lease: Lease) -> None:
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
        delivery = lease.delivery = _Delivery(claim, channel, lease)
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
        answered, live = self._answered, lease.live  # bound once, not per device
        for target in claim.targets:
            try:
                channel.send_soon(prepared, target, functools.partial(answered, delivery, target),
                                  live)
            except Exception as exc:  # a channel bug must not lose the delivery
                log.exception("channel %s raised on send", channel.name)
                self._answered(delivery, target,
                               Answer(PushOutcome.RETRY, None,
                                      f"internal error: {type(exc).__name__}"))

    def _answered(self, delivery: _Delivery, target: PushTarget, answer: Answer) -> None:
        if answer.outcome == REMOVED:
            answer = dead_since(answer, delivery.started)
        if delivery.lease.fenced:  # given up: a final answer is still worth its record
            if answer.outcome != RETRY:
                self._record(delivery.claim, target, answer, delivery.started)
            self._drained(delivery)
            return
        if answer.outcome == RETRY:  # not `is`: the plain string "retry" means the same
            if not delivery.lease.live() and not delivery.lease.ending:
                # Past the lease (the send may have been stopped by it): the delivery is not
                # this process's to put back, nor to fail once its attempts are used up.
                self._fence(delivery.claim)
                self._drained(delivery)
                return
            delivery.later.append((target, answer))
        else:
            self._record(delivery.claim, target, answer, delivery.started)
            delivery.counts[answer.outcome] = delivery.counts.get(answer.outcome, 0) + 1
        delivery.waiting -= 1
        if delivery.waiting == 0:
            self._conclude(delivery)

    def _drained(self, delivery: _Delivery) -> None:
        """One send of a given-up delivery ended; once none is left, this process may take the
        delivery again (before, it would send twice to the devices still on the wire)."""
        delivery.waiting -= 1
        key = delivery.claim.notification_id, delivery.claim.channel
        if delivery.waiting <= 0 and self._draining.get(key) is delivery:
            del self._draining[key]

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
        key = (claim.notification_id, claim.channel)
        self._leases[key].ending = True
        self.recorder.add_end(end, lambda: self._let_go(key))

    def _let_go(self, key: tuple[str, str]) -> None:
        """The delivery's end is on record, or it was given up: its place is free."""
        claim = self._held.pop(key)
        # The lease and its delivery name each other: unlinked, refcounting frees both (and
        # the claim's targets) at once instead of the garbage collector, much later.
        self._leases.pop(key).delivery = None
        self._in_flight -= max(1, len(claim.targets))
        self._check_room()
        if not self._held:
            self._idle.set()

    def _check_room(self) -> None:
        if self._in_flight < self.bound.limit:
            self._room.set()

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
