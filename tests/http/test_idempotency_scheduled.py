"""POST /v1/notifications with `send_at` and an `Idempotency-Key`, on SQLite and PostgreSQL: a
retry answers the first request's ids and holds nothing twice (at the same time too, after its
time, and after a first attempt that died before or after holding the send); a different body is
409; a cancel made between the first request and its retry stands (the retry replays the first
answer, it does not schedule again). The mock APNs hosts count the pushes once released.

Time for `send_at` is the app's clock (`tests.http.test_scheduled`'s), moved by the tests; the
keys' leases and lives keep the real clock.
"""

import asyncio
import uuid

import pytest

from owlmetry.clock import iso_ms, now_ms
from owlmetry.http.context import STORE
from owlmetry.http.producer import parse_content
from owlmetry.idempotency import request_hash
from owlmetry.notify.releaser import schedule
from tests.http.test_idempotency import server_key
from tests.http.test_scheduled import (  # noqa: F401  (fixtures)
    GOOD,
    HOUR_MS,
    app_client,
    cancel,
    clock,
    released,
    user_with_token,
)

MINUTE_MS = 60_000


async def post(client, secret: str, body: dict, key: str):
    response = await client.post("/v1/notifications", json=body, headers={
        "Authorization": f"Bearer {secret}", "Idempotency-Key": key})
    return response.status, await response.json(), response.headers


async def two_users(client) -> tuple[list[str], list[str]]:
    """Two users with a production device each: (ids, tokens)."""
    pairs = [await user_with_token(client.app, client.app[STORE]) for _ in range(2)]
    return [user_id for user_id, _, _ in pairs], [tokens[0] for _, tokens, _ in pairs]


async def counts(store) -> tuple[int, int, int]:
    """(sends held, their recipients, notifications written)."""
    return tuple([(await store.execute(f"SELECT count(*) FROM {table}"))[0][0]
                  for table in ("scheduled_sends", "scheduled_recipients", "notifications")])


async def test_a_retried_scheduled_request_answers_the_first_ids_and_holds_it_once(
        app_client, clock, mocks):  # noqa: F811
    store = app_client.app[STORE]
    _, secret = await server_key(app_client.app)
    users, tokens = await two_users(app_client)
    send_at = clock.ms + HOUR_MS
    body = {**GOOD, "user_ids": [users[0], "nobody", users[1]], "send_at": iso_ms(send_at)}
    key = str(uuid.uuid4())

    status, first, headers = await post(app_client, secret, body, key)
    assert status == 202 and "Idempotent-Replayed" not in headers
    assert len(first["notification_ids"]) == 2
    assert (first["unknown_user_ids"], first["send_at"]) == (["nobody"], iso_ms(send_at))
    for retry in (body, dict(reversed(list(body.items())))):
        status, again, headers = await post(app_client, secret, retry, key)
        assert (status, again, headers["Idempotent-Replayed"]) == (202, first, "true")
    # Another body (another time, here) under the key: refused, nothing held.
    status, refused, _ = await post(app_client, secret,
                                    {**body, "send_at": iso_ms(send_at + 1000)}, key)
    assert status == 409 and "different request body" in refused["error"]
    assert await counts(store) == (1, 2, 0)

    clock.ms = send_at
    await released(store, first["notification_ids"])
    # A retry long after its time still gets the first answer, not "send_at is in the past".
    clock.ms = send_at + 10 * MINUTE_MS
    status, again, headers = await post(app_client, secret, body, key)
    assert (status, again, headers["Idempotent-Replayed"]) == (202, first, "true")
    # The same body under a new key is a new request, and that time has passed.
    status, refused, _ = await post(app_client, secret, body, str(uuid.uuid4()))
    assert status == 400 and refused["error"].startswith("send_at is in the past")

    assert await counts(store) == (1, 0, 2)
    assert [mocks.requests(t) for t in tokens] == [1, 1]


async def test_concurrent_scheduled_retries_hold_one_send(app_client, clock):
    store = app_client.app[STORE]
    _, secret = await server_key(app_client.app)
    users, _ = await two_users(app_client)
    body = {**GOOD, "user_ids": users, "send_at": iso_ms(clock.ms + HOUR_MS)}
    key = str(uuid.uuid4())

    answers = await asyncio.gather(*(post(app_client, secret, body, key) for _ in range(6)))

    assert {status for status, _, _ in answers} == {202}
    assert all(answer == answers[0][1] for _, answer, _ in answers)
    assert sorted("Idempotent-Replayed" in headers for _, _, headers in answers) == \
        [False] + [True] * 5
    assert await counts(store) == (1, 2, 0)


async def test_a_cancel_between_the_request_and_its_retry_stands(
        app_client, clock, mocks):  # noqa: F811
    """The retry names the first request, which is done: it answers that request's ids (the
    cancelled one among them) and schedules nothing again; a new send needs a new key."""
    store = app_client.app[STORE]
    _, secret = await server_key(app_client.app)
    users, tokens = await two_users(app_client)
    send_at = clock.ms + HOUR_MS
    body, key = {**GOOD, "user_ids": users, "send_at": iso_ms(send_at)}, str(uuid.uuid4())
    _, first, _ = await post(app_client, secret, body, key)
    gone, kept = first["notification_ids"]
    status, cancelled = await cancel(app_client, gone, secret)
    assert status == 200

    status, again, headers = await post(app_client, secret, body, key)
    assert (status, again, headers["Idempotent-Replayed"]) == (202, first, "true")
    assert await counts(store) == (1, 2, 0)

    clock.ms = send_at
    await released(store, [kept])
    assert [mocks.requests(t) for t in tokens] == [0, 1]
    assert await cancel(app_client, gone, secret) == (200, cancelled)
    assert await store.execute("SELECT id FROM notifications") == [(kept,)]


@pytest.mark.parametrize("held_before_dying", [True, False])
async def test_a_retry_finishes_a_scheduled_request_whose_first_attempt_died(
        app_client, clock, mocks, held_before_dying):  # noqa: F811
    """The first attempt reserved the key, then its process died (its lease passed, no answer
    stored): after holding the send (one transaction: all of it), or before. The retry, after
    the send's time, answers the held ids, or holds it now (late: released at once); either way
    one send, each user pushed once."""
    app = app_client.app
    store = app[STORE]
    key_id, secret = await server_key(app)
    users, tokens = await two_users(app_client)
    send_at = clock.ms + MINUTE_MS
    body, key = {**GOOD, "user_ids": users, "send_at": iso_ms(send_at)}, str(uuid.uuid4())
    now, content_id = now_ms(), str(uuid.uuid4())
    assert await store.reserve_idempotency_key(key_id, key, request_hash(body), content_id,
                                               "a-process-killed", now - 1, now - 1_000, 0)
    held = (await schedule(store, users, parse_content(body), send_at, clock.ms, content_id)
            if held_before_dying else None)
    clock.ms = send_at + 5 * MINUTE_MS

    status, answer, headers = await post(app_client, secret, body, key)

    assert status == 202 and "Idempotent-Replayed" not in headers
    assert answer["send_at"] == iso_ms(send_at) and len(answer["notification_ids"]) == 2
    if held is not None:
        assert answer["notification_ids"] == held
    await released(store, answer["notification_ids"])
    assert [mocks.requests(t) for t in tokens] == [1, 1]
    assert await store.execute("SELECT content_id FROM scheduled_sends") == [(content_id,)]
    assert (await post(app_client, secret, body, key))[1] == answer
