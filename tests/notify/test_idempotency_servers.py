"""`Idempotency-Key` across real `owlmetry serve` processes on one PostgreSQL database: two
servers racing the same keys notify everyone once and answer the same ids; a server killed while
it writes a keyed request leaves it to a retry on the other, which notifies nobody twice.

The servers are the durability tests' (pushing to the in-process mock APNs hosts), with a lease
of LEASE_S: a holder stops its work two thirds into a lease it could not renew, and a busy test
machine must not stall a server that long. Races are made with SIGSTOP/SIGCONT, not timing:
both servers are stopped while the requests are written into their sockets, then resumed
together.
"""

import asyncio
import itertools
import uuid

import orjson
import pytest

from owlmetry.clock import iso_ms, now_ms
from tests.notify.conftest import wait_done
from tests.notify.test_durability import (  # noqa: F401  (fixture)
    SAFETY_S,
    make_users,
    requests_by_token,
    server_key,
    servers,
    tokens_of,
)

LEASE_S = "10"
only_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


async def send_keyed_post(server, secret: str, key: str, user_ids: list[str],
                          extra: dict | None = None):
    """Write a POST /v1/notifications with `key` (and the fields `extra`) into the server's
    socket (it may be stopped: the kernel holds the bytes); `read_answer` reads what it
    answers."""
    body = orjson.dumps({"user_ids": user_ids, "type": "t", "title": "once", **(extra or {})})
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"POST /v1/notifications HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Authorization: Bearer " + secret.encode() + b"\r\n"
                 b"Idempotency-Key: " + key.encode() + b"\r\n"
                 b"Content-Type: application/json\r\nConnection: close\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    await writer.drain()
    return reader, writer


async def read_answer(reader, writer) -> tuple[int, dict]:
    try:
        answer = await asyncio.wait_for(reader.read(), SAFETY_S)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), orjson.loads(body)


async def notifications_by_user(store) -> dict[str, int]:
    return dict(await store.execute("SELECT user_id, count(*) FROM notifications GROUP BY user_id"))


async def race_the_same_keys(store, servers, extra: dict | None = None):
    """Three users' keys, each POSTed to two servers at the same moment (with the fields
    `extra`); the recipients of each key and the answers, two per key in key order."""
    recipients = [await make_users(store, [["production"], ["sandbox", "production"]],
                                   itertools.count(100 * n)) for n in range(3)]
    secret = await server_key(store)
    keys = [str(uuid.uuid4()) for _ in recipients]
    one, two = await asyncio.gather(servers("one", NOTIFY_LEASE_SECONDS=LEASE_S),
                                    servers("two", NOTIFY_LEASE_SECONDS=LEASE_S))
    await asyncio.gather(one.pause(), two.pause())
    sent = [await send_keyed_post(server, secret, key, list(users), extra)
            for key, users in zip(keys, recipients) for server in (one, two)]
    one.resume()
    two.resume()
    return recipients, [await read_answer(*post) for post in sent]


@only_postgresql
async def test_two_servers_racing_the_same_keys_notify_each_user_once(store, mocks, servers):
    recipients, answers = await race_the_same_keys(store, servers)

    assert {status for status, _ in answers} == {202}
    for n in range(len(recipients)):
        first, second = answers[2 * n][1], answers[2 * n + 1][1]
        assert first == second and len(first["notification_ids"]) == 2
    ids = [i for _, answer in answers for i in answer["notification_ids"]]
    await wait_done(store, ids, timeout=SAFETY_S)
    assert set((await notifications_by_user(store)).values()) == {1}
    assert len(await notifications_by_user(store)) == 6
    tokens = [t for users in recipients for t in tokens_of(users)]
    assert requests_by_token(mocks.production, mocks.sandbox) == {t: 1 for t in tokens}


@only_postgresql
async def test_two_servers_racing_the_same_scheduled_keys_hold_each_send_once(
        store, mocks, servers):
    # Soon: the servers' release loops send it within the test.
    send_at = {"send_at": iso_ms(now_ms() + 2_000)}
    recipients, answers = await race_the_same_keys(store, servers, send_at)

    assert {status for status, _ in answers} == {202}
    for n in range(len(recipients)):
        first, second = answers[2 * n][1], answers[2 * n + 1][1]
        assert first == second and len(first["notification_ids"]) == 2
        assert first["send_at"] == send_at["send_at"]
    assert await store.execute("SELECT count(*) FROM scheduled_sends") == [(3,)]
    ids = [i for _, answer in answers for i in answer["notification_ids"]]
    deadline = asyncio.get_running_loop().time() + SAFETY_S
    while len(await store.execute("SELECT id FROM notifications")) < 6:
        assert asyncio.get_running_loop().time() < deadline, "never released"
        await asyncio.sleep(0.05)
    await wait_done(store, ids, timeout=SAFETY_S)
    assert await notifications_by_user(store) == {
        user_id: 1 for users in recipients for user_id in users}
    assert sorted(row[0] for row in await store.execute("SELECT id FROM notifications")) == \
        sorted(set(ids))
    tokens = [t for users in recipients for t in tokens_of(users)]
    assert requests_by_token(mocks.production, mocks.sandbox) == {t: 1 for t in tokens}


@only_postgresql
async def test_a_server_killed_while_writing_a_keyed_request_leaves_it_to_a_retry(
        store, mocks, servers):
    users = [(await store.create_user(str(uuid.uuid4()), f"{uuid.uuid4().hex}@example.com",
                                      now_ms())).id for _ in range(1500)]
    secret = await server_key(store)
    one, two = await asyncio.gather(servers("one", NOTIFY_LEASE_SECONDS=LEASE_S),
                                    servers("two", NOTIFY_LEASE_SECONDS=LEASE_S))
    key = str(uuid.uuid4())

    first = await send_keyed_post(one, secret, key, users)
    # Stopped as soon as its first chunk of 500 is written: mid-way (or, rarely, done).
    deadline = asyncio.get_running_loop().time() + SAFETY_S
    while not await store.execute("SELECT 1 FROM notifications LIMIT 1"):
        assert asyncio.get_running_loop().time() < deadline, "nothing written"
        await asyncio.sleep(0.001)
    await one.pause()
    ((written, answered),) = await store.execute(
        "SELECT (SELECT count(*) FROM notifications), answer IS NOT NULL FROM idempotency_keys")
    await one.kill()
    first[1].close()

    status, answer = await read_answer(*await send_keyed_post(two, secret, key, users))

    assert status == 202 and len(answer["notification_ids"]) == len(users)
    assert await notifications_by_user(store) == {user_id: 1 for user_id in users}
    rows = await store.execute("SELECT id FROM notifications")
    assert sorted(answer["notification_ids"]) == sorted(row[0] for row in rows)
    # Asked again, the other server answers the same.
    assert await read_answer(*await send_keyed_post(two, secret, key, users)) == (202, answer)
    print(f"\n[idempotency kill] the killed server had written {written} of {len(users)} "
          f"({'answered' if answered else 'unanswered'}); the retry wrote the rest")
