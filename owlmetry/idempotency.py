"""Idempotent producer requests: under an `Idempotency-Key`, a retried POST /v1/notifications gets
the first request's answer, and nobody is notified twice.

The first request with a key (keys are per API key) reserves it with the hash of its body and
the content id its notifications will point at, enqueues under a lease it renews while it works
(NOTIFY_LEASE_SECONDS, the dispatcher's), then stores its answer. A retry meanwhile waits for
that answer (bounded). A retry whose first attempt died (its lease passed with no answer) takes
the key over and enqueues only the recipients that no notification of that content reached yet,
so nobody is notified twice even across a crash; then it stores the answer. A scheduled request
(`send_at`) is held in one transaction under the key's content id, so a retry taking over finds
it held whole (and answers its ids) or not at all (and holds it). A holder that cannot
renew stops its own work a third of a lease before its lease ends, by its own clock, so it never
writes once a retry may have taken over (the processes' clocks must agree within that third, as
the dispatcher's leases need). A different body under the same key is refused. Keys live
IDEMPOTENCY_KEY_HOURS; an older one is a new key.

Owns the protocol, its timings and the request hash. Must hold no SQL (`owlmetry.store`'s
`idempotency`) and know nothing of HTTP (`owlmetry.http.idempotency` turns outcomes into answers).
"""

import asyncio
import contextlib
import functools
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson

from owlmetry.clock import now_ms
from owlmetry.config import Config
from owlmetry.ids import new_ordered_id
from owlmetry.store import Store

log = logging.getLogger("owlmetry.idempotency")

HOUR_MS = 60 * 60 * 1000
# A waiting retry reads the key this often at first, then less often, up to the last.
POLL_FIRST_S = 0.01
POLL_MAX_S = 0.25
# How long past one lease a retry waits for a first request that is still renewing its lease.
WAIT_PAST_LEASE_S = 5.0

# (user ids, content id) -> user id -> notification id of each user written to, in order.
Enqueue = Callable[[list[str], str], Awaitable[dict[str, str]]]
# A producer's recipients: each entry of its list once, as sent, with the user id it spells
# (None: it spells none), in order.
Entries = list[tuple[str, str | None]]
# (user ids, content id) -> the ids of the notifications held until `send_at`, in the users'
# order; held all or none.
Schedule = Callable[[list[str], str], Awaitable[list[str]]]


class KeyReused(Exception):
    """The key was first used with a different body."""


class StillInProgress(Exception):
    """The first request with the key is still at work (its lease is being renewed)."""


class HoldLost(Exception):
    """This request could not keep the key's lease and stopped its work; a retry with the same
    key finishes it."""


@dataclass(frozen=True)
class Keyed:
    """A request under an idempotency key."""

    api_key_id: str
    key: str
    request_hash: str


@dataclass(frozen=True)
class Timings:
    lease_ms: int
    keep_ms: int  # how long a key lives

    @classmethod
    def of(cls, config: Config) -> "Timings":
        return cls(config.notify_lease_s * 1000, config.idempotency_key_hours * HOUR_MS)

    @property
    def renew_s(self) -> float:
        return self.lease_ms / 6000

    @property
    def fence_s(self) -> float:
        """From sending the statement that last set the lease to the holder's stop."""
        return self.lease_ms * 2 / 3000

    @property
    def wait_s(self) -> float:
        return self.lease_ms / 1000 + WAIT_PAST_LEASE_S


def request_hash(body: dict) -> str:
    """The same for the same JSON, however it was spelled (key order, spaces, escapes)."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class Work:
    """What a keyed request does under its content id, returning its answer: `first` the first
    time, `resume` when a retry takes over a first attempt that died."""

    first: Callable[[str], Awaitable[dict]]
    resume: Callable[[str], Awaitable[dict]]


def user_ids_of(entries: Entries) -> list[str]:
    """The user ids `entries` spell, once each, in order."""
    return list(dict.fromkeys(user_id for _, user_id in entries if user_id is not None))


def recipients_answer(entries: Entries, notified: dict[str, str]) -> dict:
    """The answer to a request naming `entries`, of which the users in `notified` (user id ->
    notification id) were written to: their notification ids in order, and the entries, as
    sent, that reached no user."""
    return {"notification_ids": [notified[user_id] for user_id in user_ids_of(entries)
                                 if user_id in notified],
            "unknown_user_ids": [given for given, user_id in entries if user_id not in notified]}


async def notify_entries(entries: Entries,
                         enqueue: Callable[[list[str]], Awaitable[dict[str, str]]]) -> dict:
    """Notify the users `entries` name now, and the answer; an entry that names no user is
    found by the enqueue, which writes nothing for it."""
    user_ids = user_ids_of(entries)
    return recipients_answer(entries, await enqueue(user_ids) if user_ids else {})


def sending(store: Store, entries: Entries, enqueue: Enqueue) -> Work:
    """`notify_entries` under the key's content id, once."""
    user_ids = user_ids_of(entries)

    async def first(content_id: str) -> dict:
        return await notify_entries(entries, lambda users: enqueue(users, content_id))

    async def resume(content_id: str) -> dict:
        """The crashed first attempt's work, finished: whom it reached is on record."""
        notified = await store.notified_by_content(content_id)
        missing = [user_id for user_id in user_ids if user_id not in notified]
        if missing:
            await enqueue(missing, content_id)
            notified = await store.notified_by_content(content_id)
        return recipients_answer(entries, notified)

    return Work(first, resume)


def scheduling(store: Store, recipients: list[str], unknown: list[str], schedule: Schedule,
               send_at: str) -> Work:
    """Hold notifications for `recipients` until `send_at` (the answer's text of it)."""

    async def first(content_id: str) -> dict:
        ids = await schedule(recipients, content_id) if recipients else []
        return {"notification_ids": ids, "unknown_user_ids": unknown, "send_at": send_at}

    async def resume(content_id: str) -> dict:
        held = await store.held_by_content(content_id)
        if held is None:  # the first attempt died before its transaction
            return await first(content_id)
        return {"notification_ids": [held[u] for u in recipients if u in held],
                "unknown_user_ids": unknown, "send_at": send_at}

    return Work(first, resume)


async def on_record(store: Store, api_key_id: str, key: str, timings: Timings,
                    clock: Callable[[], int] = now_ms) -> bool:
    """Whether a request under this key is on record and not expired, whatever its body."""
    record = await store.idempotency_key(api_key_id, key)
    return record is not None and record.created_at >= clock() - timings.keep_ms


async def answer_once(store: Store, keyed: Keyed, entries: Entries, enqueue: Enqueue,
                      timings: Timings, clock: Callable[[], int] = now_ms) -> tuple[dict, bool]:
    """`answer_keyed` of a request that notifies now (`sending`)."""
    return await answer_keyed(store, keyed, sending(store, entries, enqueue), timings, clock)


async def answer_keyed(store: Store, keyed: Keyed, work: Work, timings: Timings,
                       clock: Callable[[], int] = now_ms) -> tuple[dict, bool]:
    """The answer of the request `keyed` names, made by `work` once whatever the retries, and
    whether it is an earlier request's, stored."""
    loop = asyncio.get_running_loop()
    holder = uuid.uuid4().hex
    give_up_at = loop.time() + timings.wait_s
    pause = POLL_FIRST_S
    reserve = True

    while True:
        if reserve:
            since, now = loop.time(), clock()
            content_id = new_ordered_id(now)
            if await store.reserve_idempotency_key(
                    keyed.api_key_id, keyed.key, keyed.request_hash, content_id, holder,
                    now + timings.lease_ms, now, now - timings.keep_ms):
                answer = await hold(store, keyed, holder, since, timings, clock,
                                    functools.partial(work.first, content_id))
                if answer is not None:
                    return answer, False
        record = await store.idempotency_key(keyed.api_key_id, keyed.key)
        now = clock()
        # Pruned or expired since: a new key, reserved on the next turn.
        reserve = record is None or record.created_at < now - timings.keep_ms
        if not reserve:
            if record.request_hash != keyed.request_hash:
                raise KeyReused
            if record.answer is not None:
                return orjson.loads(record.answer), True
            if record.leased_until <= now:
                since = loop.time()
                taken = await store.take_over_idempotency_key(
                    keyed.api_key_id, keyed.key, holder, now + timings.lease_ms, now,
                    now - timings.keep_ms)
                if taken is not None:
                    log.info("idempotency: a retry took over a request its first attempt left "
                             "unfinished")
                    answer = await hold(store, keyed, holder, since, timings, clock,
                                        functools.partial(work.resume, taken))
                    if answer is not None:
                        return answer, False
                continue
            if loop.time() >= give_up_at:
                raise StillInProgress
        await asyncio.sleep(pause)
        pause = min(pause * 2, POLL_MAX_S)


async def hold(store: Store, keyed: Keyed, holder: str, since: float, timings: Timings,
               clock: Callable[[], int], work: Callable[[], Awaitable[dict]]) -> dict | None:
    """Run `work` while holding the key (leased from the loop time `since`), renewing the lease;
    store its answer and return it. None when the key was taken from us meanwhile (its answer is
    someone else's to store). HoldLost when the lease could not be kept: the work was stopped."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work())
    fenced = False

    def stop() -> None:
        nonlocal fenced
        fenced = True
        task.cancel()

    fence = loop.call_at(since + timings.fence_s, stop)

    done = asyncio.Event()

    async def renew() -> None:
        nonlocal fence
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timings.renew_s)
                return
            sent = loop.time()
            try:
                kept = await store.renew_idempotency_key(keyed.api_key_id, keyed.key, holder,
                                                         clock() + timings.lease_ms)
            except Exception as exc:  # the fence stops the work if this goes on
                log.warning("idempotency: could not renew a key's lease (%s)", exc)
                continue
            fence.cancel()
            if not kept:
                stop()
                return
            fence = loop.call_at(sent + timings.fence_s, stop)

    renewer = asyncio.create_task(renew())
    try:
        answer = await task
    except asyncio.CancelledError:
        if fenced:
            raise HoldLost from None
        raise
    except Exception:
        # Nothing of ours is in flight any more: a retry may take over at once.
        with contextlib.suppress(Exception):
            await store.renew_idempotency_key(keyed.api_key_id, keyed.key, holder, 0)
        raise
    finally:
        fence.cancel()
        done.set()  # (not cancelled: a renewal under way ends as a statement should)
        await renewer
        fence.cancel()
    if await store.finish_idempotency_key(keyed.api_key_id, keyed.key, holder,
                                          orjson.dumps(answer).decode()):
        return answer
    return None
