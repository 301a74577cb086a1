"""Idempotency keys in the store and the protocol over it, on a real SQLite file and a real
PostgreSQL database: who may reserve, renew, finish and take over a key; the retention's
pruning; a holder that loses its key stops its work."""

import asyncio
import dataclasses
import uuid

import pytest

from owlmetry.clock import now_ms
from owlmetry.credentials import create_api_key
from owlmetry.idempotency import HOUR_MS, HoldLost, Keyed, Timings, answer_once
from owlmetry.notify.dispatcher import Dispatcher, enqueue_found
from owlmetry.notify.releaser import Releaser, schedule
from owlmetry.preferences import Defaults
from owlmetry.retention import Cleaned, clean_up
from owlmetry.store import NotificationContent, RecipientGroup
from tests.provider_mocks import unconfigured_push

NOW = 1_800_000_000_000
DAY = 24 * HOUR_MS


async def api_key(store) -> str:
    key, _ = await create_api_key(store, str(uuid.uuid4()), "server", None, 1)
    return key.id


async def test_one_request_reserves_a_key_and_only_its_holder_renews_and_finishes(store):
    key_id = await api_key(store)

    async def reserve(holder: str, at: int = NOW) -> bool:
        return await store.reserve_idempotency_key(key_id, "k", "hash", f"content-{holder}",
                                                   holder, at + 30_000, at, at - DAY)

    assert await reserve("first")
    assert not await reserve("second")
    record = await store.idempotency_key(key_id, "k")
    assert (record.holder, record.content_id, record.leased_until, record.answer) == (
        "first", "content-first", NOW + 30_000, None)

    assert not await store.renew_idempotency_key(key_id, "k", "second", NOW + 60_000)
    assert await store.renew_idempotency_key(key_id, "k", "first", NOW + 60_000)
    assert not await store.finish_idempotency_key(key_id, "k", "second", '{"a": 2}')
    assert await store.finish_idempotency_key(key_id, "k", "first", '{"a": 1}')
    assert not await store.finish_idempotency_key(key_id, "k", "first", '{"a": 3}')
    assert not await store.renew_idempotency_key(key_id, "k", "first", NOW + 90_000)
    record = await store.idempotency_key(key_id, "k")
    assert (record.answer, record.leased_until) == ('{"a": 1}', NOW + 60_000)
    # Another API key's "k" is another key.
    other = await api_key(store)
    assert await store.reserve_idempotency_key(other, "k", "hash", "c", "third", NOW, NOW, 0)


async def test_a_key_is_taken_over_only_unanswered_unexpired_and_past_its_lease(store):
    key_id = await api_key(store)
    assert await store.reserve_idempotency_key(key_id, "k", "h", "c1", "dead", NOW + 30_000,
                                               NOW, NOW - DAY)

    async def take_over(holder: str, at: int) -> str | None:
        return await store.take_over_idempotency_key(key_id, "k", holder, at + 30_000, at,
                                                     at - DAY)

    assert await take_over("early", NOW + 29_999) is None
    assert await take_over("retry", NOW + 30_000) == "c1"
    assert await take_over("late", NOW + 30_001) is None  # the retry's lease now
    assert not await store.renew_idempotency_key(key_id, "k", "dead", NOW + 90_000)
    assert await store.finish_idempotency_key(key_id, "k", "retry", "{}")
    assert await take_over("later", NOW + 120_000) is None  # answered
    assert (await store.idempotency_key(key_id, "k")).holder == "retry"


async def test_an_expired_key_is_reserved_anew_and_then_pruned(store, config):
    key_id = await api_key(store)
    for name, made_at in (("old", NOW - DAY - 1), ("day", NOW - DAY), ("new", NOW)):
        assert await store.reserve_idempotency_key(key_id, name, "h", "c", "x", made_at, made_at,
                                                   0)
    for name in ("old", "day"):
        assert await store.finish_idempotency_key(key_id, name, "x", "{}")
    # "old" has lived past a day: it is a new key to a new request, "day" is not yet.
    assert await store.reserve_idempotency_key(key_id, "old", "h2", "c2", "y", NOW, NOW,
                                               NOW - DAY)
    assert not await store.reserve_idempotency_key(key_id, "day", "h2", "c2", "y", NOW, NOW,
                                                   NOW - DAY)
    record = await store.idempotency_key(key_id, "old")
    assert (record.request_hash, record.holder, record.answer, record.created_at) == (
        "h2", "y", None, NOW)
    await store.execute(
        "UPDATE idempotency_keys SET created_at = $1 WHERE idempotency_key = 'old'", NOW - DAY - 1)

    # The retention prunes what the keys' life (24 hours by default) has passed.
    assert config.idempotency_key_hours == 24
    assert await clean_up(store, config, NOW, batch_size=1, pause_s=0) == Cleaned(
        idempotency_keys=1)
    assert sorted(await store.execute("SELECT idempotency_key FROM idempotency_keys")) == [
        ("day",), ("new",)]
    longer = dataclasses.replace(config, idempotency_key_hours=48)
    assert await clean_up(store, longer, NOW + 1, pause_s=0) == Cleaned()
    assert await clean_up(store, config, NOW + 1, pause_s=0) == Cleaned(
        idempotency_keys=1)
    assert await store.execute("SELECT idempotency_key FROM idempotency_keys") == [("new",)]


async def test_pruning_goes_in_bounded_batches(store):
    key_id = await api_key(store)
    for n in range(5):
        await store.reserve_idempotency_key(key_id, f"k{n}", "h", "c", "x", n, n, 0)
    assert [await store.prune_idempotency_keys(10, 2) for _ in range(4)] == [2, 2, 1, 0]


async def test_whom_a_content_reached(store):
    users = [(await store.create_user(str(uuid.uuid4()), f"{uuid.uuid4().hex}@e.com", 1)).id
             for _ in range(3)]
    asked = [(str(uuid.uuid4()), user_id) for user_id in users[:2]]
    await store.enqueue_groups([RecipientGroup(("in_app",), True, asked)],
                               NotificationContent("t", "x"), NOW, content_id="chosen")
    assert await store.notified_by_content("chosen") == {u: n for n, u in asked}
    assert await store.notified_by_content("other") == {}


async def test_whom_a_scheduled_content_was_held_for_before_and_after_its_release(store):
    """A takeover's question for a scheduled request: the same answer while held, with a
    recipient cancelled, and once released (the held rows are gone then)."""
    dispatcher = Dispatcher(store, {"mobile_push": unconfigured_push()})  # never started
    users = [(await store.create_user(str(uuid.uuid4()), f"{uuid.uuid4().hex}@e.com", 1)).id
             for _ in range(3)]
    assert await store.held_by_content("chosen") is None
    ids = await schedule(store, users, NotificationContent("t", "x"), NOW + 1000, NOW, "chosen")
    held = dict(zip(users, ids))
    assert await store.held_by_content("chosen") == held
    assert (await store.cancel_scheduled(ids[0], NOW)).cancelled_at == NOW
    assert await store.held_by_content("chosen") == held

    assert await Releaser(store, dispatcher, clock=lambda: NOW + 1000).release_due() == 1
    assert await store.execute("SELECT count(*) FROM scheduled_recipients "
                               "WHERE cancelled_at IS NULL") == [(0,)]
    assert await store.held_by_content("chosen") == held
    assert await store.held_by_content("other") is None


async def test_a_holder_whose_key_was_taken_stops_its_work(store):
    """The holder's process stalled past its lease and a retry took the key over: the holder's
    next renewal finds the key gone and stops its enqueue, which never writes."""
    key_id = await api_key(store)
    started, wrote = asyncio.Event(), []

    async def enqueue(users: list[str], content_id: str) -> dict[str, str]:
        started.set()
        await asyncio.Event().wait()  # a stalled enqueue
        wrote.append(content_id)
        return {}

    keyed = Keyed(key_id, "k", "h")
    timings = Timings(lease_ms=600, keep_ms=DAY)  # renewed every 0.1 s
    holding = asyncio.create_task(answer_once(store, keyed, [("u", "u")], enqueue, timings))
    await started.wait()
    await store.execute("UPDATE idempotency_keys SET holder = 'the retry'")

    with pytest.raises(HoldLost):
        await holding
    assert wrote == []
    record = await store.idempotency_key(key_id, "k")
    assert (record.holder, record.answer) == ("the retry", None)


async def test_a_failed_first_attempt_gives_its_lease_up_for_the_retry(store):
    key_id = await api_key(store)
    user = await store.create_user(str(uuid.uuid4()), f"{uuid.uuid4().hex}@e.com", 1)
    keyed = Keyed(key_id, "k", "h")
    timings = Timings(lease_ms=3_600_000, keep_ms=DAY)

    async def failing(users: list[str], content_id: str) -> dict[str, str]:
        raise RuntimeError("the database went away")

    async def working(users: list[str], content_id: str) -> dict[str, str]:
        return await enqueue_found(store, users, NotificationContent("t", "x"), ["in_app"],
                                   Defaults(), content_id)

    with pytest.raises(RuntimeError):
        await answer_once(store, keyed, [(user.id, user.id)], failing, timings)
    assert (await store.idempotency_key(key_id, "k")).leased_until == 0

    # At once, not after the hour's lease: the retry takes over, and stores its answer.
    # An id of no user is found by the enqueue itself, which writes nothing for it.
    stranger = str(uuid.uuid4())
    entries = [("x", None), (stranger, stranger), (user.id, user.id)]
    answer, replayed = await answer_once(store, keyed, entries, working, timings, clock=now_ms)
    (notification,) = await store.execute("SELECT id FROM notifications")
    assert (answer, replayed) == (
        {"notification_ids": [notification[0]], "unknown_user_ids": ["x", stranger]}, False)
    assert await answer_once(store, keyed, entries, working, timings) == (answer, True)
