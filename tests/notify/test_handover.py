"""A running dispatcher takes its own process's enqueue already claimed (`Handover`): no claim of
the queue for it, within the dispatcher's room; the rest pending for anyone; a crash leaves
leased rows another process delivers once the lease ends. Real servers and mock APNs, on
SQLite and on PostgreSQL."""

import asyncio
import itertools
import re

import aiohttp

from owlmetry.clock import now_ms
from owlmetry.store import deliveries
from tests.notify.conftest import CONTENT, user_with_devices, wait_done
from tests.notify.test_durability import (  # noqa: F401  (`servers` is a fixture)
    SAFETY_S,
    check_resumed_fan_out,
    connections_closed,
    make_users,
    notify,
    owners,
    pace,
    push_progress,
    requests_by_token,
    server_key,
    servers,
    tokens_of,
)


async def taken(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """`owlmetry_dispatcher_deliveries_taken` as GET /metrics shows it, by `how`."""
    async with session.get(f"{url}/metrics") as response:
        text = await response.text()
    return {how: float(value) for how, value in re.findall(
        r'^owlmetry_dispatcher_deliveries_taken_total\{how="(\w+)"\} (\S+)$', text, re.M)}


async def attempts(store) -> set[int]:
    return {row[0] for row in await store.execute(
        "SELECT DISTINCT attempts FROM notification_deliveries WHERE channel = 'mobile_push'")}


async def test_a_request_to_a_running_server_is_delivered_without_a_claim(store, mocks, servers):
    recipients = await make_users(store, [["production", "sandbox"]] * 60, itertools.count())
    key = await server_key(store)
    server = await servers("one")

    async with aiohttp.ClientSession() as session:
        ids = await notify(session, server, key, list(recipients))
        await wait_done(store, ids, timeout=SAFETY_S)
        progress = await push_progress(store, ids)
        metrics = await taken(session, server.url)

    assert progress.deliveries == {"sent": 60}
    assert progress.pushes == {"delivered": 120}
    assert all(mocks.requests(t) == 1 for t in tokens_of(recipients))
    assert metrics == {"claimed": 0, "enqueued": 60}
    assert await attempts(store) == {1}
    assert len(await owners(store)) == 1


async def test_beyond_the_dispatchers_room_deliveries_go_pending_and_are_claimed(
        store, mocks, mobile_push, dispatchers, monkeypatch):
    # Chunks of 2 recipients; room for 4 devices: two chunks are handed over, the rest of the
    # request is written pending and claimed once sends end.
    monkeypatch.setattr(deliveries, "ENQUEUE_CHUNK", 2)
    users = [(await user_with_devices(store, ["production"], n))[0] for n in range(20)]
    mocks.production.behaviour.latency_s = 0.01
    dispatcher = dispatchers({"mobile_push": mobile_push()}, max_in_flight=4, claim_size=2)

    progress = await wait_done(store, await dispatcher.enqueue(users, CONTENT))

    assert progress.deliveries == {"sent": 20}
    assert progress.pushes == {"delivered": 20}
    assert (dispatcher.handed, dispatcher.claimed) == (4, 16)
    assert all(n == 1 for n in mocks.production.stats.requests.values())


async def test_a_server_killed_after_the_enqueue_leaves_leased_rows_another_delivers(
        store, mocks, servers):
    recipients = await make_users(store, [["production"]] * 100, itertools.count())
    tokens = tokens_of(recipients)
    pace(mocks.production, latency_s=SAFETY_S, max_streams=10)  # no answer before the kill
    key = await server_key(store)

    first = await servers("first")
    async with aiohttp.ClientSession() as session:
        ids = await notify(session, first, key, list(recipients))
    await asyncio.wait_for(mocks.production.requests_seen(10), SAFETY_S)
    # Every delivery is held by the first server under its lease, none due, first attempt.
    (leased_to,) = await owners(store)
    rows = await store.execute(
        "SELECT count(*) FROM notification_deliveries WHERE channel = 'mobile_push' "
        "AND status = 'pending' AND claimed_by = $1 AND available_at > $2", leased_to, now_ms())
    assert rows == [(100,)]
    assert await attempts(store) == {1}
    await first.kill()
    await connections_closed(mocks.production)
    in_flight = set(requests_by_token(mocks.production))

    mocks.production.behaviour.latency_s = 0
    await servers("second")
    await wait_done(store, ids, timeout=SAFETY_S)
    progress = await push_progress(store, ids)

    assert progress.deliveries == {"sent": 100}
    assert progress.pushes == {"delivered": 100}
    requests = requests_by_token(mocks.production)
    check_resumed_fan_out(tokens, requests, requests, {}, in_flight)
    # Claimed by the second server once the first one's lease ended: the second attempt.
    (taken_by,) = await owners(store)
    assert taken_by != leased_to
    assert await attempts(store) == {2}
