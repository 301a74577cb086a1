"""The dispatcher against real mock APNs hosts, on SQLite and on PostgreSQL."""

import asyncio
import gc
import sqlite3
import uuid

import asyncpg
import pytest

from owlmetry.apns.mock import TokenFault
from owlmetry.clock import now_ms
from owlmetry.notify import dispatcher as dispatcher_module
from owlmetry.notify.channels.mobile_push import MobilePush
from owlmetry.notify.dispatcher import CLAIM_LOOPS
from owlmetry.store import NotificationContent, PushRecord, deliveries
from tests.notify.conftest import CONTENT, user_with_devices, wait_done
from tests.provider_mocks import unconfigured_push


async def test_fan_out_reaches_every_device_once_on_its_environment_host(
        store, mocks, mobile_push, dispatchers):
    recipients = {}
    for n, environments in enumerate([["production", "sandbox", "production"],
                                      ["sandbox", "sandbox"], ["production"]]):
        user_id, tokens = await user_with_devices(store, environments, n * 10)
        recipients[user_id] = list(zip(tokens, environments))
    registry = [await store.list_devices(user_id) for user_id in recipients]
    dispatcher = dispatchers({"mobile_push": mobile_push()})

    ids = await dispatcher.enqueue(list(recipients), CONTENT)
    progress = await wait_done(store, ids)

    # A delivered push leaves the registry row as it was (no write per push).
    assert [await store.list_devices(user_id) for user_id in recipients] == registry

    assert len(ids) == 3
    assert progress.deliveries == {"sent": 3}
    assert progress.pushes == {"delivered": 6}
    for devices in recipients.values():
        for device_token, environment in devices:
            host = mocks.production if environment == "production" else mocks.sandbox
            other = mocks.sandbox if environment == "production" else mocks.production
            assert host.stats.delivered[device_token] == 1
            assert other.stats.requests[device_token] == 0


async def test_payload_is_the_contracts_with_the_unread_count_as_badge(
        store, mocks, mobile_push, dispatchers):
    user_id, (device_token,) = await user_with_devices(store, ["production"], 0)
    dispatcher = dispatchers({"mobile_push": mobile_push()})
    await wait_done(store, await dispatcher.enqueue([user_id], CONTENT))
    ids = await dispatcher.enqueue([user_id], NotificationContent(
        "job.completed", "Done", data={"run": 7, "type": "not this", "aps": "nor this"}))
    await wait_done(store, ids)

    assert mocks.production.stats.delivered[device_token] == 2
    assert mocks.production.stats.payloads[device_token] == {
        "aps": {"alert": {"title": "Done"}, "sound": "default", "badge": 2},
        "type": "job.completed", "notification_id": ids[0], "run": 7,
    }


async def test_unknown_and_repeated_users_are_skipped(store, mobile_push, dispatchers):
    user_id, _ = await user_with_devices(store, ["production"], 0)
    dispatcher = dispatchers({"mobile_push": mobile_push()})
    ids = await dispatcher.enqueue([str(uuid.uuid4()), user_id, user_id, "not-a-uuid"], CONTENT)
    assert len(ids) == 1
    assert (await wait_done(store, ids)).deliveries == {"sent": 1}


async def test_dead_tokens_go_unless_registered_again_after_apple_gave_up(
        store, mocks, mobile_push, dispatchers):
    before = now_ms()
    user_id, tokens = await user_with_devices(store, ["production"] * 4, 0)
    gone, reregistered, bad, alive = tokens
    mocks.production.behaviour.unregistered[gone] = now_ms() + 1000  # after its registration
    mocks.production.behaviour.unregistered[reregistered] = before - 60_000  # before it
    mocks.production.behaviour.bad_tokens.add(bad)
    dispatcher = dispatchers({"mobile_push": mobile_push()})

    progress = await wait_done(store, await dispatcher.enqueue([user_id], CONTENT))

    assert progress.deliveries == {"sent": 1}
    assert progress.pushes == {"delivered": 1, "removed": 2, "failed": 1}
    remaining = await store.list_devices(user_id)
    assert len(remaining) == 2
    # The kept one is the token re-registered after the 410's timestamp.
    await wait_done(store, await dispatcher.enqueue([user_id], CONTENT))
    assert mocks.production.stats.requests[reregistered] == 2
    assert mocks.production.stats.requests[alive] == 2
    assert mocks.production.stats.requests[gone] == 1
    assert mocks.production.stats.requests[bad] == 1


async def test_device_not_for_topic_is_removed(store, mocks, mobile_push, dispatchers):
    user_id, (device_token,) = await user_with_devices(store, ["sandbox"], 0)
    mocks.sandbox.behaviour.token_faults[device_token] = TokenFault(400, "DeviceTokenNotForTopic")
    dispatcher = dispatchers({"mobile_push": mobile_push()})
    progress = await wait_done(store, await dispatcher.enqueue([user_id], CONTENT))
    assert progress.deliveries == {"failed": 1}
    assert progress.pushes == {"removed": 1}
    assert await store.list_devices(user_id) == []


async def test_429_and_503_storms_end_delivered(store, mocks, mobile_push, dispatchers):
    users = [await user_with_devices(store, ["production", "sandbox"], n * 2) for n in range(30)]
    for mock in (mocks.production, mocks.sandbox):
        mock.behaviour.error_probability = {429: 0.3, 503: 0.3}
    # More refusals than the pool retries on its own: the dispatcher must come back to it.
    stubborn = users[0][1][0]
    mocks.production.behaviour.token_faults[stubborn] = TokenFault(503, "ServiceUnavailable", 9)
    dispatcher = dispatchers({"mobile_push": mobile_push()}, max_attempts=10)

    progress = await wait_done(store, await dispatcher.enqueue([u for u, _ in users], CONTENT))

    assert progress.deliveries == {"sent": 30}
    assert progress.pushes == {"delivered": 60}
    for _, tokens in users:
        for device_token in tokens:
            assert mocks.production.stats.delivered[device_token] + \
                mocks.sandbox.stats.delivered[device_token] == 1
    assert mocks.production.stats.requests[stubborn] >= 10  # 9 refusals, then 30% + 30% again


async def test_a_storm_that_never_ends_fails_after_bounded_attempts(
        store, mocks, mobile_push, dispatchers):
    user_id, (device_token,) = await user_with_devices(store, ["production"], 0)
    mocks.production.behaviour.token_faults[device_token] = TokenFault(429, "TooManyRequests")
    dispatcher = dispatchers({"mobile_push": mobile_push()}, max_attempts=3)
    progress = await wait_done(store, await dispatcher.enqueue([user_id], CONTENT))
    assert progress.deliveries == {"failed": 1}
    assert progress.pushes == {"failed": 1}
    assert mocks.production.stats.requests[device_token] == 3 * 4  # 3 attempts, 1 + 3 retries
    assert len(await store.list_devices(user_id)) == 1


async def test_without_apns_credentials_every_delivery_is_skipped(store, dispatchers):
    with_devices, _ = await user_with_devices(store, ["production", "sandbox"], 0)
    without_devices, _ = await user_with_devices(store, [], 10)
    dispatcher = dispatchers({"mobile_push": unconfigured_push()})
    progress = await wait_done(
        store, await dispatcher.enqueue([with_devices, without_devices], CONTENT))
    assert progress.deliveries == {"skipped": 2}
    assert progress.pushes == {"skipped": 2}


async def test_a_recipient_without_devices_is_skipped(store, mobile_push, dispatchers):
    user_id, _ = await user_with_devices(store, [], 0)
    dispatcher = dispatchers({"mobile_push": mobile_push()})
    progress = await wait_done(store, await dispatcher.enqueue([user_id], CONTENT))
    assert progress.deliveries == {"skipped": 1}
    assert progress.pushes == {}


async def test_work_abandoned_by_a_dead_dispatcher_is_resumed_without_resending(
        store, mocks, mobile_push, dispatchers):
    user_id, tokens = await user_with_devices(store, ["production"] * 3, 0)
    ids = await store.enqueue_notifications([(str(uuid.uuid4()), user_id)], CONTENT,
                                            ["mobile_push"], now_ms())
    # A dispatcher took the work, got one answer on record, and died holding a short lease.
    (claim,) = await store.claim_deliveries("ghost", now_ms(), 300, 10,
                                            targets={"mobile_push": MobilePush.targets})
    answered = claim.targets[0]
    await store.save_outcomes("ghost", [PushRecord(
        ids[0], answered.device_id, "mobile_push", "delivered", 200, None)], [], now_ms())

    dispatchers({"mobile_push": mobile_push()}, lease_ms=300)
    progress = await wait_done(store, ids)

    assert progress.deliveries == {"sent": 1}
    assert progress.pushes == {"delivered": 3}
    assert mocks.production.stats.requests[answered.token] == 0
    assert sorted(t for t in tokens if mocks.production.stats.delivered[t] == 1) == sorted(
        t for t in tokens if t != answered.token)


async def test_two_dispatchers_on_one_database_share_without_double_sends(
        store, mocks, mobile_push, dispatchers):
    users = [await user_with_devices(store, ["production"], n) for n in range(200)]
    first = dispatchers({"mobile_push": mobile_push()}, claim_size=10)
    dispatchers({"mobile_push": mobile_push()}, claim_size=10)

    progress = await wait_done(store, await first.enqueue([u for u, _ in users], CONTENT))

    assert progress.pushes == {"delivered": 200}
    assert all(mocks.production.stats.requests[tokens[0]] == 1 for _, tokens in users)


async def test_stop_leaves_unfinished_work_pending_for_the_next_start(
        store, mocks, mobile_push, dispatchers):
    users = [await user_with_devices(store, ["production"], n) for n in range(20)]
    mocks.production.behaviour.latency_s = 0.5
    dispatcher = dispatchers({"mobile_push": mobile_push()})
    ids = await dispatcher.enqueue([u for u, _ in users], CONTENT)
    await mocks.production.requests_seen(20)
    await dispatcher.stop(grace_s=0)

    progress = await store.progress(ids)
    assert progress.deliveries == {"pending": 20}
    mocks.production.behaviour.latency_s = 0
    dispatchers({"mobile_push": mobile_push()})
    assert (await wait_done(store, ids)).deliveries == {"sent": 20}


async def test_enqueue_writes_inbox_rows_and_deliveries_together_or_not_at_all(store):
    user_id, _ = await user_with_devices(store, ["production"], 0)
    # A channel named twice breaks the deliveries' primary key after the inbox rows went in.
    with pytest.raises((sqlite3.IntegrityError, asyncpg.UniqueViolationError)):
        await store.enqueue_notifications([(str(uuid.uuid4()), user_id)], CONTENT,
                                          ["mobile_push", "mobile_push"], now_ms())
    assert await store.list_notifications(user_id, "all", None, None, 10) == []
    ids = await store.enqueue_notifications([(str(uuid.uuid4()), user_id)], CONTENT,
                                            ["mobile_push"], now_ms())
    assert (await store.progress(ids)).deliveries == {"pending": 1}


async def test_a_small_in_flight_limit_still_reaches_everyone(store, mocks, mobile_push, dispatchers):
    users = [await user_with_devices(store, ["production", "sandbox"], n * 2) for n in range(25)]
    mocks.production.behaviour.latency_s = 0.01
    dispatcher = dispatchers({"mobile_push": mobile_push()}, max_in_flight=3, claim_size=2)
    progress = await wait_done(store, await dispatcher.enqueue([u for u, _ in users], CONTENT))
    assert progress.pushes == {"delivered": 50}
    # Claims stop while 3 devices are in flight; each of the claim loops may have one claim
    # (2 recipients, one production device each) under way past that.
    assert mocks.production.stats.max_streams_open <= 3 + CLAIM_LOOPS * 2


async def test_claims_wait_until_a_request_is_enqueued_whole(store, dispatchers, monkeypatch):
    # A request goes in chunk after chunk; the dispatcher takes none of it (nor any other work)
    # until the last chunk is written, so the producer's answer never waits behind a fan-out.
    monkeypatch.setattr(deliveries, "ENQUEUE_CHUNK", 1)
    users = [(await user_with_devices(store, [], 0))[0] for _ in range(12)]
    dispatcher = dispatchers({"mobile_push": unconfigured_push()}, poll_s=0.001,
                             enqueue_hold_s=60)

    ids = await dispatcher.enqueue(users, CONTENT)
    enqueued_at = now_ms()

    assert (await wait_done(store, ids)).deliveries == {"skipped": 12}
    ((first_end,),) = await store.execute("SELECT min(finished_at) FROM notification_deliveries")
    assert first_end >= enqueued_at


async def test_claims_wait_while_a_producer_holds_them(store, dispatchers):
    # A producer's request holds the claims from its recipients' check on, before its enqueue.
    users = [(await user_with_devices(store, [], 0))[0] for _ in range(12)]
    dispatcher = dispatchers({"mobile_push": unconfigured_push()}, poll_s=0.001,
                             enqueue_hold_s=60)
    async with dispatcher.producing():
        ids = await dispatcher.enqueue(users, CONTENT)
        await asyncio.sleep(0.2)
        assert (await store.progress(ids)).deliveries == {"pending": 12}

    assert (await wait_done(store, ids)).deliveries == {"skipped": 12}


async def test_stop_does_not_wait_for_an_enqueue_under_way(store, dispatchers):
    # A claim loop holding for a producer's request stops as soon as it is told to.
    dispatcher = dispatchers({"mobile_push": unconfigured_push()}, enqueue_hold_s=3600)
    dispatcher._enqueuing += 1  # a request half-written, as the hold sees it
    dispatcher._enqueued.clear()
    await asyncio.sleep(0.2)  # the claim loops are holding now

    await asyncio.wait_for(dispatcher.stop(grace_s=0), 60)


async def test_a_request_written_in_many_slices_notifies_each_recipient_once(
        store, mocks, mobile_push, dispatchers, monkeypatch):
    # Slices of 2: the first writes the content, the others only their rows.
    monkeypatch.setattr(dispatcher_module, "ENQUEUE_SLICE", 2)
    users = [(await user_with_devices(store, ["production"], n))[0] for n in range(11)]
    dispatcher = dispatchers({"mobile_push": mobile_push()})

    ids = await dispatcher.enqueue(users + users[:4], CONTENT)
    progress = await wait_done(store, ids)

    assert len(set(ids)) == 11
    for user_id, notification_id in zip(users, ids):
        inbox = await store.list_notifications(user_id, "all", None, None, 10)
        assert [n.id for n in inbox] == [notification_id]
    assert await store.execute("SELECT count(*) FROM notification_contents") == [(1,)]
    assert progress.deliveries == {"sent": 11}
    assert progress.pushes == {"delivered": 11}


async def test_a_fan_out_leaves_nothing_of_ours_for_the_garbage_collector(
        store, mocks, mobile_push, dispatchers):
    # A push's objects freed by refcounting as it ends: left in reference cycles, a
    # million-device fan-out spent a fifth of its CPU in collections walking them.
    users = [(await user_with_devices(store, ["production", "sandbox"], 2 * n))[0]
             for n in range(30)]
    dispatcher = dispatchers({"mobile_push": mobile_push()})
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        await wait_done(store, await dispatcher.enqueue(users, CONTENT))
        gc.collect()
        ours = sorted({type(o).__qualname__ for o in gc.garbage
                       if type(o).__module__.startswith("owlmetry")})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()

    assert ours == []
