"""POST /v1/notifications with an `Idempotency-Key`, on SQLite and PostgreSQL: a retry answers
the first request's 202 and notifies nobody again (the mock APNs hosts count the pushes), at the
same time too, and after a first attempt that died half-way; a different body is 409; keys are
per API key, checked, and expire."""

import asyncio
import dataclasses
import uuid

import pytest
from multidict import CIMultiDict

from owlmetry import idempotency
from owlmetry.clock import now_ms
from owlmetry.credentials import create_api_key
from owlmetry.http.app import create_app
from owlmetry.http.context import CONFIG, DISPATCHER, STORE
from owlmetry.idempotency import HOUR_MS, request_hash
from owlmetry.store import NotificationContent
from tests.conftest import Users
from tests.notify.conftest import user_with_devices, wait_done

GOOD = {"type": "feedback.new", "title": "New feedback", "body": "Someone wrote",
        "link": "/feedback/1", "data": {"feedback_id": "f1"}}
CONTENT = NotificationContent("feedback.new", "New feedback", "Someone wrote", "/feedback/1",
                              {"feedback_id": "f1"})


@pytest.fixture
async def app_client(config, aiohttp_client, mocks, mobile_push):  # noqa: F811
    """The server, pushing to the mock APNs hosts."""
    return await aiohttp_client(create_app(config, channels={"mobile_push": mobile_push()}))


async def server_key(app) -> tuple[str, str]:
    """(the key's id, its secret)."""
    key, secret = await create_api_key(app[STORE], str(uuid.uuid4()), "server", None, now_ms())
    return key.id, secret


async def post(client, secret: str, body: dict, key: str | None = None, **kwargs):
    headers = {"Authorization": f"Bearer {secret}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    response = await client.post("/v1/notifications", headers=headers, json=body, **kwargs)
    return response.status, await response.json(), response.headers


async def recipients_with_devices(store, count: int) -> tuple[list[str], list[str]]:
    """`count` users with one production device each: (user ids, tokens)."""
    users, tokens = [], []
    for i in range(count):
        user_id, (device_token,) = await user_with_devices(store, ["production"], 100 + i)
        users.append(user_id)
        tokens.append(device_token)
    return users, tokens


async def notifications_per_user(store, users: list[str]) -> list[int]:
    rows = dict(await store.execute(
        "SELECT user_id, count(*) FROM notifications GROUP BY user_id"))
    return [rows.get(user_id, 0) for user_id in users]


async def test_a_retry_answers_the_first_202_and_notifies_nobody_again(app_client, mocks):
    store = app_client.app[STORE]
    _, secret = await server_key(app_client.app)
    users, tokens = await recipients_with_devices(store, 3)
    stranger = str(uuid.uuid4())
    body = {**GOOD, "user_ids": [users[0], stranger, users[1], users[2]]}
    key = str(uuid.uuid4())

    status, first, headers = await post(app_client, secret, body, key)
    assert status == 202 and "Idempotent-Replayed" not in headers
    assert len(first["notification_ids"]) == 3 and first["unknown_user_ids"] == [stranger]
    await wait_done(store, first["notification_ids"])
    # The same JSON spelled otherwise (key order) is the same request.
    respelled = dict(reversed(list(body.items())))
    for retry in (body, respelled, body):
        status, again, headers = await post(app_client, secret, retry, key)
        assert (status, again, headers["Idempotent-Replayed"]) == (202, first, "true")

    await wait_done(store, first["notification_ids"])
    assert await notifications_per_user(store, users) == [1, 1, 1]
    assert await store.unread_count(users[0]) == 1
    assert [mocks.requests(t) for t in tokens] == [1, 1, 1]


async def test_without_the_header_a_second_post_notifies_again(app_client, mocks):
    store = app_client.app[STORE]
    _, secret = await server_key(app_client.app)
    users, tokens = await recipients_with_devices(store, 1)
    answers = [await post(app_client, secret, {**GOOD, "user_ids": users}) for _ in range(2)]
    assert [status for status, _, _ in answers] == [202, 202]
    ids = [answer["notification_ids"][0] for _, answer, _ in answers]
    assert ids[0] != ids[1]
    await wait_done(store, ids)
    assert await notifications_per_user(store, users) == [2]
    assert mocks.requests(tokens[0]) == 2


async def test_the_same_key_with_another_body_is_409_and_enqueues_nothing(client, users):
    _, secret = await server_key(client.app)
    first, _ = await users.create()
    second, _ = await users.create()
    key = "order-1234"
    status, answer, _ = await post(client, secret, {**GOOD, "user_ids": [first]}, key)
    assert status == 202

    for other in ({**GOOD, "user_ids": [second]}, {**GOOD, "user_ids": [first], "title": "No"}):
        status, refused, _ = await post(client, secret, other, key)
        assert (status, refused) == (409, {
            "error": "This Idempotency-Key was used with a different request body; a new "
                     "request needs a new key"})
    assert await notifications_per_user(client.app[STORE], [first, second]) == [1, 0]
    # The first body still gets its answer.
    assert (await post(client, secret, {**GOOD, "user_ids": [first]}, key))[1] == answer


async def test_keys_belong_to_their_api_key(client, users):
    user_id, _ = await users.create()
    (_, one), (_, two) = await server_key(client.app), await server_key(client.app)
    body = {**GOOD, "user_ids": [user_id]}
    _, first, _ = await post(client, one, body, "same-key")
    status, second, headers = await post(client, two, {**body, "title": "Other"}, "same-key")
    assert status == 202 and "Idempotent-Replayed" not in headers
    assert first["notification_ids"] != second["notification_ids"]
    assert await notifications_per_user(client.app[STORE], [user_id]) == [2]


@pytest.mark.parametrize("values", [
    [""], ["x" * 256], ["caf\u00e9"], ["tab\there"], ["one", "two"]])
async def test_a_bad_key_is_400_and_enqueues_nothing(client, users, values):
    _, secret = await server_key(client.app)
    user_id, _ = await users.create()
    headers = CIMultiDict({"Authorization": f"Bearer {secret}"})
    for value in values:
        headers.add("Idempotency-Key", value)
    response = await client.post("/v1/notifications", headers=headers,
                                 json={**GOOD, "user_ids": [user_id]})
    assert response.status == 400
    assert (await response.json())["error"] in (
        "Idempotency-Key must be 1 to 255 printable ASCII characters",
        "Idempotency-Key may be sent once")
    assert await notifications_per_user(client.app[STORE], [user_id]) == [0]


async def test_a_key_of_255_printable_characters_is_taken(client, users):
    _, secret = await server_key(client.app)
    user_id, _ = await users.create()
    key = (" !~" + "a" * 252)
    assert len(key) == 255
    status, _, _ = await post(client, secret, {**GOOD, "user_ids": [user_id]}, key)
    assert status == 202


async def test_concurrent_retries_make_one_set_of_notifications(app_client, mocks):
    store = app_client.app[STORE]
    _, secret = await server_key(app_client.app)
    users, tokens = await recipients_with_devices(store, 4)
    body, key = {**GOOD, "user_ids": users}, str(uuid.uuid4())

    answers = await asyncio.gather(*(post(app_client, secret, body, key) for _ in range(6)))

    assert {status for status, _, _ in answers} == {202}
    assert all(answer == answers[0][1] for _, answer, _ in answers)
    # One request did the work; the five others got its stored answer.
    assert sorted("Idempotent-Replayed" in headers for _, _, headers in answers) == \
        [False] + [True] * 5
    await wait_done(store, answers[0][1]["notification_ids"])
    assert await notifications_per_user(store, users) == [1, 1, 1, 1]
    assert [mocks.requests(t) for t in tokens] == [1, 1, 1, 1]


async def test_a_retry_finishes_a_first_attempt_that_died_half_way(app_client, mocks):
    """The first attempt reserved the key and wrote its first recipient's notification, then
    its process died (its lease passed, no answer stored). The retry notifies the two others
    only, and answers all three ids, the first one's among them, and the stranger listed with
    them as unknown (found by the retry's own enqueue)."""
    app = app_client.app
    store = app[STORE]
    key_id, secret = await server_key(app)
    users, tokens = await recipients_with_devices(store, 3)
    stranger = str(uuid.uuid4())
    body, key = {**GOOD, "user_ids": users[:2] + [stranger] + users[2:]}, str(uuid.uuid4())
    now = now_ms()
    content_id = str(uuid.uuid4())
    assert await store.reserve_idempotency_key(key_id, key, request_hash(body), content_id,
                                               "a-process-killed", now - 1, now - 1_000, 0)
    (reached,) = await app[DISPATCHER].enqueue(users[:1], CONTENT, content_id)

    status, answer, headers = await post(app_client, secret, body, key)

    assert status == 202 and "Idempotent-Replayed" not in headers
    assert answer["notification_ids"][0] == reached and len(answer["notification_ids"]) == 3
    assert answer["unknown_user_ids"] == [stranger]
    await wait_done(store, answer["notification_ids"])
    assert await notifications_per_user(store, users) == [1, 1, 1]
    assert [mocks.requests(t) for t in tokens] == [1, 1, 1]
    assert await store.execute("SELECT DISTINCT content_id FROM notifications") == [(content_id,)]
    assert await store.execute("SELECT count(*) FROM notification_contents") == [(1,)]
    assert (await post(app_client, secret, body, key))[1] == answer


async def test_a_retry_while_the_first_is_still_at_work_is_409_in_progress(
        config, aiohttp_client, users, monkeypatch):
    """The first request's process holds the key and keeps renewing its lease (here: leased for
    an hour); a retry waits one lease, then says so."""
    monkeypatch.setattr(idempotency, "WAIT_PAST_LEASE_S", 0.0)
    client = await aiohttp_client(create_app(dataclasses.replace(config, notify_lease_s=2)))
    store = client.app[STORE]
    key_id, secret = await server_key(client.app)
    user_id, _ = await Users(client.app).create()
    body = {**GOOD, "user_ids": [user_id]}
    now = now_ms()
    assert await store.reserve_idempotency_key(key_id, "busy", request_hash(body), "c1",
                                               "a-process-at-work", now + HOUR_MS, now, 0)
    response = await client.post("/v1/notifications", json=body, headers={
        "Authorization": f"Bearer {secret}", "Idempotency-Key": "busy"})
    assert response.status == 409
    assert response.headers["Retry-After"] == "1"
    assert await response.json() == {
        "error": "A request with this Idempotency-Key is still in progress; retry later"}
    assert await notifications_per_user(store, [user_id]) == [0]


async def test_an_expired_key_is_a_new_key(client, users):
    store = client.app[STORE]
    _, secret = await server_key(client.app)
    user_id, _ = await users.create()
    _, first, _ = await post(client, secret, {**GOOD, "user_ids": [user_id]}, "daily")
    lifetime = client.app[CONFIG].idempotency_key_hours * HOUR_MS
    await store.execute("UPDATE idempotency_keys SET created_at = $1", now_ms() - lifetime - 1)

    status, second, headers = await post(
        client, secret, {**GOOD, "user_ids": [user_id], "title": "Next day"}, "daily")
    assert status == 202 and "Idempotent-Replayed" not in headers
    assert second["notification_ids"] != first["notification_ids"]
    assert await notifications_per_user(store, [user_id]) == [2]
