"""The dispatcher: durable fan-out of notifications to every device of every recipient.

`enqueue` writes the inbox rows and one pending delivery per channel in one transaction and
returns; the run loop then claims due deliveries in batches (under a lease that a heartbeat
renews, so work of a crashed process comes back by itself), hands each recipient's devices to
its channel, and records every final answer through the `OutcomeWriter`. A device with a final
answer on record is never sent to again; answers worth retrying (429, 5xx, lost connections)
put the delivery back in the queue after a backoff, a bounded number of times.

Owns the queue's rules and the in-process concurrency. Must not know how a channel reaches a
device, nor any SQL.
"""

import asyncio
import logging
import random
import uuid
from collections import Counter
from collections.abc import Iterable

from owlmetry.clock import now_ms
from owlmetry.ids import new_id
from owlmetry.notify.channel import Answer, Channel
from owlmetry.notify.outcomes import OutcomeWriter
from owlmetry.store import (
    Claim,
    DeliveryEnd,
    NotificationContent,
    PushRecord,
    PushTarget,
    Store,
)

log = logging.getLogger("owlmetry.notify")


async def enqueue(store: Store, user_ids: Iterable[str], content: NotificationContent,
                  channels: Iterable[str]) -> list[str]:
    """One notification per distinct existing user, in the order given; returns their ids."""
    recipients = [(new_id(), user_id) for user_id in dict.fromkeys(user_ids)]
    return await store.enqueue_notifications(recipients, content, list(channels), now_ms())


def final_status(counts: Counter, channel: str) -> tuple[str, str | None]:
    """A finished delivery's status and reason, from its devices' outcomes."""
    if counts["delivered"]:
        return "sent", None
    if not counts:
        return "skipped", f"the recipient has no {channel} devices"
    if set(counts) == {"skipped"}:
        return "skipped", None
    parts = ", ".join(f"{counts[outcome]} {outcome}" for outcome in ("removed", "failed")
                      if counts[outcome])
    return "failed", f"no device accepted it ({parts})"


class Dispatcher:
    def __init__(self, store: Store, channels: dict[str, Channel], *, owner: str | None = None,
                 lease_ms: int = 30_000, claim_size: int = 500, max_in_flight: int = 8_000,
                 max_attempts: int = 6, retry_base_ms: int = 5_000, retry_max_ms: int = 600_000,
                 poll_s: float = 1.0, only: list[str] | None = None):
        """`only`: deliver these notifications and nothing else (`owlmetry notify --wait`)."""
        self.store = store
        self.channels = channels
        self.owner = owner or f"dispatcher-{uuid.uuid4()}"
        self._lease_ms = lease_ms
        self._claim_size = claim_size
        self._max_in_flight = max_in_flight
        self._max_attempts = max_attempts
        self._retry_base_ms = retry_base_ms
        self._retry_max_ms = retry_max_ms
        self._poll_s = poll_s
        self._only = only
        self.writer = OutcomeWriter(store, self.owner)
        self._held: dict[tuple[str, str], Claim] = {}
        self._in_flight = 0  # devices of the deliveries being worked on
        self._deliveries: set[asyncio.Task] = set()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task] = []

    async def enqueue(self, user_ids: Iterable[str], content: NotificationContent) -> list[str]:
        ids = await enqueue(self.store, user_ids, content, self.channels)
        self._wake.set()
        return ids

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name="dispatcher"),
                       asyncio.create_task(self._renew_leases(), name="dispatcher leases")]

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop claiming; let deliveries under way finish for up to `grace_s`, then close the
        channels, which ends the sends still running as retries: those deliveries go back to
        the queue for the next start. Returns once everything answered is recorded."""
        self._stopping = True
        self._wake.set()
        self._room.set()
        if self._tasks:
            await asyncio.gather(self._tasks[0], return_exceptions=True)
        if self._deliveries:
            await asyncio.wait(self._deliveries, timeout=grace_s)
        await asyncio.gather(*(channel.close() for channel in self.channels.values()))
        if self._deliveries:
            await asyncio.wait(self._deliveries)
        for task in self._tasks[1:]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.writer.flush()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def _run(self) -> None:
        while not self._stopping:
            if self._in_flight >= self._max_in_flight:
                self._room.clear()
                await self._room.wait()
                continue
            self._wake.clear()
            try:
                claims = await self.store.claim_deliveries(
                    self.owner, now_ms(), self._lease_ms, self._claim_size, self._only)
            except Exception:
                log.exception("cannot claim deliveries; trying again")
                claims = []
            if not claims:
                try:
                    await asyncio.wait_for(self._wake.wait(), self._poll_s)
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
                task = asyncio.create_task(self._deliver(claim))
                self._deliveries.add(task)
                task.add_done_callback(self._delivery_done)

    def _delivery_done(self, task: asyncio.Task) -> None:
        self._deliveries.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery failed unexpectedly", exc_info=task.exception())

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            if self._held:
                try:
                    await self.store.renew_leases(self.owner, list(self._held),
                                                  now_ms() + self._lease_ms)
                except Exception:
                    log.exception("cannot renew delivery leases")

    async def _deliver(self, claim: Claim) -> None:
        try:
            await self.writer.end(await self._work(claim))
        finally:
            del self._held[(claim.notification_id, claim.channel)]
            self._in_flight -= max(1, len(claim.targets))
            if self._in_flight < self._max_in_flight:
                self._room.set()

    async def _work(self, claim: Claim) -> DeliveryEnd:
        """Send to every device still waiting; the delivery's end (or retry) as the result."""
        channel = self.channels.get(claim.channel)
        counts = Counter(claim.earlier)
        if channel is None or channel.unavailable:
            reason = channel.unavailable if channel else f"no such channel: {claim.channel}"
            outcome = "skipped" if channel else "failed"
            for target in claim.targets:
                self._record(claim, target, Answer(outcome, None, reason))
            return DeliveryEnd(claim.notification_id, claim.channel, outcome, reason)
        if not claim.targets:
            return DeliveryEnd(claim.notification_id, claim.channel,
                               *final_status(counts, claim.channel))
        try:
            prepared = channel.prepare(claim)
        except (ValueError, TypeError) as exc:
            answers = [Answer("failed", None, f"cannot build the message: {exc}")] * len(
                claim.targets)
            for target, answer in zip(claim.targets, answers):
                self._record(claim, target, answer)
        else:
            answers = await asyncio.gather(
                *(self._push(channel, prepared, claim, target) for target in claim.targets))
        later = [(target, answer) for target, answer in zip(claim.targets, answers)
                 if answer.outcome == "retry"]
        counts.update(answer.outcome for answer in answers if answer.outcome != "retry")
        if later and claim.attempts < self._max_attempts and not self._stopping:
            return DeliveryEnd(claim.notification_id, claim.channel, "pending",
                               later[-1][1].reason, now_ms() + self._backoff(claim.attempts))
        if later and self._stopping:
            # Cut short by a shutdown, not by APNs: due again as soon as a dispatcher runs.
            return DeliveryEnd(claim.notification_id, claim.channel, "pending",
                               later[-1][1].reason, now_ms())
        for target, answer in later:
            gave_up = Answer("failed", answer.status,
                             f"{answer.reason} (gave up after {claim.attempts} attempts)")
            self._record(claim, target, gave_up)
            counts["failed"] += 1
        return DeliveryEnd(claim.notification_id, claim.channel,
                           *final_status(counts, claim.channel))

    async def _push(self, channel: Channel, prepared, claim: Claim, target: PushTarget) -> Answer:
        try:
            answer = await channel.send(prepared, target)
        except Exception as exc:  # a channel bug must not lose the delivery
            log.exception("channel %s raised on send", channel.name)
            answer = Answer("retry", None, f"internal error: {type(exc).__name__}")
        if answer.outcome != "retry":
            self._record(claim, target, answer)
        return answer

    def _record(self, claim: Claim, target: PushTarget, answer: Answer) -> None:
        self.writer.add_push(PushRecord(
            claim.notification_id, target.device_id, claim.channel, answer.outcome,
            answer.status, answer.reason, answer.invalid_since))

    def _backoff(self, attempts: int) -> int:
        delay = min(self._retry_max_ms, self._retry_base_ms * 2 ** (attempts - 1))
        return int(delay * random.uniform(0.5, 1.0))
