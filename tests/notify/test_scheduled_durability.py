"""Scheduled sends with real `owlmetry serve` processes: a server killed between the schedule
and `send_at` loses nothing (the next start releases it, once), and two servers on one
PostgreSQL database release a send once between them.

The servers are the child processes of `tests/notify/test_durability.py`'s `servers` fixture,
pushing to this test's mock APNs hosts. Their clock is the real one, so `send_at` is a few
seconds ahead: each test waits for it (never asserting how long anything took).
"""

import asyncio
import itertools

import aiohttp
import pytest

from owlmetry.clock import iso_ms, now_ms
from tests.notify.test_durability import (  # noqa: F401  (the servers fixture)
    SAFETY_S,
    make_users,
    requests_by_token,
    server_key,
    servers,
    tokens_of,
)

AHEAD_MS = 6_000  # far enough ahead that the first server is gone long before


async def schedule(server, key: str, user_ids: list[str], send_at: int) -> list[str]:
    async with aiohttp.ClientSession() as session, session.post(
            f"{server.url}/v1/notifications",
            json={"user_ids": user_ids, "type": "t", "title": "later", "send_at": iso_ms(send_at)},
            headers={"Authorization": f"Bearer {key}"}) as response:
        body = await response.json()
        assert response.status == 202, body
    assert body["send_at"] == iso_ms(send_at) and len(body["notification_ids"]) == len(user_ids)
    return body["notification_ids"]


async def released_and_done(store, ids: list[str]) -> None:
    deadline = asyncio.get_running_loop().time() + SAFETY_S + AHEAD_MS / 1000
    while True:
        (count,), = await store.execute_batch(
            "WITH b (id) AS ({batch}) SELECT count(*) FROM notifications AS n "
            "JOIN b ON b.id = n.id", ("text",), [(i,) for i in ids])
        if count == len(ids) and (await store.progress(ids)).done:
            return
        assert asyncio.get_running_loop().time() < deadline, "never released"
        await asyncio.sleep(0.05)


async def test_a_server_killed_before_send_at_loses_nothing_and_the_next_start_sends_once(
        store, servers, mocks):  # noqa: F811
    recipients = await make_users(store, [["production"], ["sandbox", "production"]],
                                  itertools.count(5000))
    key = await server_key(store)
    first = await servers("first")
    send_at = now_ms() + AHEAD_MS
    ids = await schedule(first, key, list(recipients), send_at)
    await first.kill()  # kill -9, seconds before its time
    assert now_ms() < send_at, "the machine stalled for seconds; the test proves nothing"
    assert await store.execute("SELECT count(*) FROM notifications") == [(0,)]
    assert await store.execute("SELECT count(*) FROM scheduled_recipients") == [(2,)]

    await servers("second")
    await released_and_done(store, ids)
    assert requests_by_token(mocks.production, mocks.sandbox) == {
        device_token: 1 for device_token in tokens_of(recipients)}
    # Each device got its user's notification, under the id the producer was given.
    hosts = {"production": mocks.production, "sandbox": mocks.sandbox}
    for notification_id, devices in zip(ids, recipients.values()):
        for device_token, environment in devices:
            payload = hosts[environment].stats.payloads[device_token]
            assert payload["notification_id"] == notification_id
    # Not before its time: every inbox row was written at or after send_at.
    rows = await store.execute("SELECT id, created_at FROM notifications")
    assert {row[0] for row in rows} == set(ids) and min(row[1] for row in rows) >= send_at


async def test_two_servers_on_one_postgresql_database_release_a_send_once(
        store, servers, mocks):  # noqa: F811
    if store.engine.name != "postgresql":
        pytest.skip("SQLite: one server process per database")
    recipients = await make_users(store, [["production"]] * 30, itertools.count(6000))
    key = await server_key(store)
    one, two = await servers("one"), await servers("two")
    send_at = now_ms() + 2_000
    ids = await schedule(one, key, list(recipients), send_at)
    # Both held until the send is due, then let go together: both claim at once.
    await one.pause()
    await two.pause()
    while now_ms() <= send_at:
        await asyncio.sleep(0.05)
    one.resume()
    two.resume()
    await released_and_done(store, ids)
    assert requests_by_token(mocks.production, mocks.sandbox) == {
        device_token: 1 for device_token in tokens_of(recipients)}
    assert await store.execute("SELECT count(*) FROM notifications") == [(30,)]
    assert await store.execute(
        "SELECT count(*) FROM scheduled_sends WHERE released_at IS NOT NULL") == [(1,)]
