"""Scheduled notifications through the API: `send_at` on POST /v1/notifications holds a request
until its time (nothing listed, counted, pushed or mailed before), and POST
/v1/notifications/{id}/cancel cancels it before it goes.

Time is the app's clock (`create_app(clock=...)`), moved by the tests: the producer route checks
`send_at` against it and the release loop inside the app releases what is due by it, so "not
before its time" is checked without waiting for it.
"""

import asyncio
import dataclasses
import itertools
import uuid

import pytest

from owlmetry.clock import iso_ms, now_ms
from owlmetry.http.app import create_app
from owlmetry.http.context import DISPATCHER, STORE
from owlmetry.notify.releaser import Releaser
from owlmetry.store import DeviceRegistration
from tests.conftest import Users
from tests.http.test_auth import make_key
from tests.notify.conftest import token, user_with_devices

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
GOOD = {"type": "feedback.new", "title": "New feedback", "body": "Someone wrote",
        "data": {"feedback_id": "f1"}}
SAFETY_S = 20


class Clock:
    """The app's time, moved by the test."""

    def __init__(self):
        self.ms = now_ms()

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
async def app_client(config, aiohttp_client, clock, mocks, mobile_push):  # noqa: F811
    return await aiohttp_client(create_app(config, channels={"mobile_push": mobile_push()},
                                           clock=clock))


async def post(client, body, secret=None):
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    response = await client.post("/v1/notifications", headers=headers, json=body)
    return response.status, await response.json()


async def cancel(client, notification_id, secret=None, headers=None):
    headers = headers or ({"Authorization": f"Bearer {secret}"} if secret else {})
    response = await client.post(f"/v1/notifications/{notification_id}/cancel", headers=headers)
    return response.status, await response.json()


async def inbox_of(client, token) -> tuple[list, int]:
    """What the user's app sees: the listed notifications and the unread count."""
    headers = {"Authorization": f"Bearer {token}"}
    listed = await (await client.get("/v1/notifications?read_state=all", headers=headers)).json()
    count = await (await client.get("/v1/notifications/unread-count", headers=headers)).json()
    return [n["id"] for n in listed["notifications"]], count["count"]


async def released(store, ids: list[str]) -> None:
    """Return once every one of `ids` has an inbox row and no pending delivery."""
    deadline = asyncio.get_running_loop().time() + SAFETY_S
    while True:
        rows = await store.execute_batch(
            "WITH b (id) AS ({batch}) SELECT n.id FROM notifications AS n JOIN b ON b.id = n.id",
            ("text",), [(i,) for i in ids])
        if len(rows) == len(ids) and (await store.progress(ids)).done:
            return
        assert asyncio.get_running_loop().time() < deadline, "never released"
        await asyncio.sleep(0.02)


TOKENS = itertools.count(1000)


async def user_with_token(app, store) -> tuple[str, list[str], str]:
    """A user with one production device: (id, device tokens, JWT)."""
    user_id, jwt = await Users(app).create()
    device_token = token(next(TOKENS))
    await store.register_device(str(uuid.uuid4()), user_id, DeviceRegistration(
        "ios_push", device_token, "production", None, None, None), now_ms())
    return user_id, [device_token], jwt


async def test_a_scheduled_notification_is_invisible_and_unsent_until_its_time_then_delivered(
        app_client, clock, mocks):  # noqa: F811
    app, store = app_client.app, app_client.app[STORE]
    secret = await make_key(app, "server")
    user_id, tokens, jwt = await user_with_token(app, store)
    send_at = clock.ms + HOUR_MS

    status, reply = await post(app_client, {**GOOD, "user_ids": [user_id, "nope"],
                                            "send_at": iso_ms(send_at)}, secret)
    assert status == 202
    assert reply["send_at"] == iso_ms(send_at) and reply["unknown_user_ids"] == ["nope"]
    (notification_id,) = reply["notification_ids"]

    # A release as of the app's time finds nothing due; the user sees nothing, no push went.
    assert await Releaser(store, app[DISPATCHER], clock=clock).release_due() == 0
    assert await inbox_of(app_client, jwt) == ([], 0)
    assert mocks.requests(tokens[0]) == 0
    assert (await store.progress([notification_id])).deliveries == {}

    clock.ms = send_at  # its time: the app's own release loop takes it
    await released(store, [notification_id])
    assert await inbox_of(app_client, jwt) == ([notification_id], 1)
    assert mocks.requests(tokens[0]) == 1
    payload = mocks.production.stats.payloads[tokens[0]]
    assert payload["notification_id"] == notification_id and payload["aps"]["badge"] == 1
    assert payload["feedback_id"] == "f1"
    # Released once, whoever asks again.
    assert await Releaser(store, app[DISPATCHER], clock=clock).release_due() == 0
    assert mocks.requests(tokens[0]) == 1


async def test_an_offset_is_honoured_and_a_time_a_little_past_goes_at_once(
        app_client, clock, mocks):  # noqa: F811
    app, store = app_client.app, app_client.app[STORE]
    secret = await make_key(app, "server")
    user_id, tokens, _ = await user_with_token(app, store)
    # 30 s ago in UTC+02:00 (within the minute's tolerance for clock skew).
    past = clock.ms - 30_000
    text = iso_ms(past + 2 * HOUR_MS).replace("Z", "+02:00")
    status, reply = await post(app_client, {**GOOD, "user_ids": [user_id], "send_at": text},
                               secret)
    assert (status, reply["send_at"]) == (202, iso_ms(past))
    await released(store, reply["notification_ids"])
    assert mocks.requests(tokens[0]) == 1


@pytest.mark.parametrize("send_at,message", [
    (-HOUR_MS, "send_at is in the past"),
    (-61_000, "send_at is in the past"),
    (31 * DAY_MS, "send_at must be at most 30 days ahead (SCHEDULE_HORIZON_DAYS)"),
    ("tomorrow", "send_at must be an ISO 8601 time with a UTC offset"),
    ("2026-13-01T00:00:00Z", "send_at must be an ISO 8601 time with a UTC offset"),
    ("2026-12-24T09:00:00", "send_at must have a UTC offset"),
    ("2026-12-24", "send_at must have a UTC offset"),
    (1767000000000, "send_at must be an ISO 8601 time with a UTC offset"),
    (True, "send_at must be an ISO 8601 time with a UTC offset"),
])
async def test_bad_send_at_values_are_400_and_schedule_nothing(
        app_client, clock, send_at, message):
    app, store = app_client.app, app_client.app[STORE]
    secret = await make_key(app, "server")
    user_id, _, _ = await user_with_token(app, store)
    value = iso_ms(clock.ms + send_at) if isinstance(send_at, int) and not isinstance(
        send_at, bool) and abs(send_at) < 10**12 else send_at
    status, reply = await post(app_client, {**GOOD, "user_ids": [user_id], "send_at": value},
                               secret)
    assert status == 400 and reply["error"].startswith(message), reply
    assert await store.execute("SELECT count(*) FROM scheduled_sends") == [(0,)]
    assert await store.execute("SELECT count(*) FROM notifications") == [(0,)]


async def test_the_horizon_is_the_configured_one(config, aiohttp_client, clock):
    client = await aiohttp_client(create_app(
        dataclasses.replace(config, schedule_horizon_days=400), clock=clock))
    secret = await make_key(client.app, "server")
    user_id, _ = await Users(client.app).create()
    body = {**GOOD, "user_ids": [user_id], "send_at": iso_ms(clock.ms + 399 * DAY_MS)}
    assert (await post(client, body, secret))[0] == 202
    body["send_at"] = iso_ms(clock.ms + 401 * DAY_MS)
    assert await post(client, body, secret) == (
        400, {"error": "send_at must be at most 400 days ahead (SCHEDULE_HORIZON_DAYS)"})


async def test_cancelled_before_its_time_it_is_never_sent_and_cancel_is_idempotent(
        app_client, clock, mocks):  # noqa: F811
    app, store = app_client.app, app_client.app[STORE]
    secret = await make_key(app, "server")
    kept_id, kept_tokens, kept_jwt = await user_with_token(app, store)
    gone_id, gone_tokens, gone_jwt = await user_with_token(app, store)
    send_at = clock.ms + HOUR_MS
    _, reply = await post(app_client, {**GOOD, "user_ids": [kept_id, gone_id],
                                       "send_at": iso_ms(send_at)}, secret)
    kept, gone = reply["notification_ids"]

    clock.ms += 1000
    status, answer = await cancel(app_client, gone.upper(), secret)  # any spelling of the id
    assert (status, answer) == (200, {"id": gone, "state": "cancelled",
                                      "send_at": iso_ms(send_at),
                                      "cancelled_at": iso_ms(clock.ms)})
    clock.ms += 1000
    assert await cancel(app_client, gone, secret) == (200, answer)  # the same answer again

    clock.ms = send_at
    await released(store, [kept])
    assert mocks.requests(kept_tokens[0]) == 1
    assert await inbox_of(app_client, kept_jwt) == ([kept], 1)
    # The cancelled one: no row, no count, no push, ever (its send is over).
    assert mocks.requests(gone_tokens[0]) == 0
    assert await inbox_of(app_client, gone_jwt) == ([], 0)
    assert await store.execute("SELECT count(*) FROM notifications WHERE id = $1", gone) \
        == [(0,)]
    assert await store.execute("SELECT count(*) FROM scheduled_sends "
                               "WHERE released_at IS NULL") == [(0,)]
    # Cancelled stays cancelled after the release; the one that went cannot be.
    assert await cancel(app_client, gone, secret) == (200, answer)
    assert await cancel(app_client, kept, secret) == (409, {
        "error": "Notification delivery has already started; it can no longer be cancelled"})


async def test_a_send_whose_every_recipient_was_cancelled_leaves_nothing_behind(
        app_client, clock):
    app, store = app_client.app, app_client.app[STORE]
    secret = await make_key(app, "server")
    user_id, _, jwt = await user_with_token(app, store)
    send_at = clock.ms + HOUR_MS
    _, reply = await post(app_client, {**GOOD, "user_ids": [user_id],
                                       "send_at": iso_ms(send_at)}, secret)
    assert (await cancel(app_client, reply["notification_ids"][0], secret))[0] == 200
    clock.ms = send_at
    assert await Releaser(store, app[DISPATCHER], clock=clock).release_due() in (0, 1)
    await wait_for_rows(store, "SELECT count(*) FROM scheduled_sends WHERE released_at IS NULL",
                        0)
    assert await store.execute("SELECT count(*) FROM notification_contents") == [(0,)]
    assert await inbox_of(app_client, jwt) == ([], 0)


async def wait_for_rows(store, sql: str, count: int) -> None:
    deadline = asyncio.get_running_loop().time() + SAFETY_S
    while (await store.execute(sql))[0][0] != count:
        assert asyncio.get_running_loop().time() < deadline, sql
        await asyncio.sleep(0.02)


async def test_cancel_once_the_release_started_or_for_a_notification_sent_at_once_is_409(
        app_client, clock):
    app, store = app_client.app, app_client.app[STORE]
    secret = await make_key(app, "server")
    user_id, _, _ = await user_with_token(app, store)
    send_at = clock.ms + HOUR_MS
    _, reply = await post(app_client, {**GOOD, "user_ids": [user_id],
                                       "send_at": iso_ms(send_at)}, secret)
    (scheduled,) = reply["notification_ids"]
    # A release (another process's, say) has claimed the send and not finished it yet.
    assert len(await store.claim_scheduled("elsewhere", send_at, 30_000, 10)) == 1
    started = (409, {"error": "Notification delivery has already started; it can no longer "
                              "be cancelled"})
    assert await cancel(app_client, scheduled, secret) == started

    _, reply = await post(app_client, {**GOOD, "user_ids": [user_id]}, secret)
    assert await cancel(app_client, reply["notification_ids"][0], secret) == started


async def test_cancel_of_an_unknown_id_is_404(app_client):
    secret = await make_key(app_client.app, "server")
    for unknown in (str(uuid.uuid4()), "not-a-uuid"):
        assert await cancel(app_client, unknown, secret) == (
            404, {"error": "Notification not found"})


async def test_cancel_takes_server_keys_only(app_client, clock):
    app, store = app_client.app, app_client.app[STORE]
    secret = await make_key(app, "server")
    user_id, _, jwt = await user_with_token(app, store)
    _, reply = await post(app_client, {**GOOD, "user_ids": [user_id],
                                       "send_at": iso_ms(clock.ms + HOUR_MS)}, secret)
    (notification_id,) = reply["notification_ids"]
    # Even the recipient: a user session is not a producer.
    assert (await cancel(app_client, notification_id,
                         headers={"Authorization": f"Bearer {jwt}"}))[0] == 403
    assert await cancel(app_client, notification_id, await make_key(app, "agent")) == (
        403, {"error": "This route is not open to agent credentials"})
    assert await cancel(app_client, notification_id) == (
        401, {"error": "Authentication required"})
    assert (await cancel(app_client, notification_id,
                         await make_key(app, "server", revoked=True)))[0] == 401
    assert await store.execute("SELECT count(*) FROM scheduled_recipients "
                               "WHERE cancelled_at IS NOT NULL") == [(0,)]


async def test_a_new_app_on_the_same_database_releases_what_the_first_one_scheduled(
        config, aiohttp_client, mocks, mobile_push):  # noqa: F811
    first_clock = Clock()
    first = await aiohttp_client(create_app(config, channels={"mobile_push": mobile_push()},
                                            clock=first_clock))
    secret = await make_key(first.app, "server")
    user_id, tokens = await user_with_devices(first.app[STORE], ["sandbox"], 7)
    send_at = first_clock.ms + HOUR_MS
    _, reply = await post(first, {**GOOD, "user_ids": [user_id], "send_at": iso_ms(send_at)},
                          secret)
    await first.close()  # the first server stops before the time comes
    assert mocks.requests(tokens[0]) == 0

    second_clock = Clock()
    second_clock.ms = send_at + HOUR_MS
    second = await aiohttp_client(create_app(config, channels={"mobile_push": mobile_push()},
                                             clock=second_clock))
    await released(second.app[STORE], reply["notification_ids"])
    assert mocks.requests(tokens[0]) == 1
    assert mocks.sandbox.stats.payloads[tokens[0]]["notification_id"] == \
        reply["notification_ids"][0]


async def test_a_scheduled_notification_keeps_its_push_options_until_its_time(
        app_client, clock, mocks):  # noqa: F811
    app, store = app_client.app, app_client.app[STORE]
    secret = await make_key(app, "server")
    user_id, tokens, _ = await user_with_token(app, store)
    received = mocks.production.record()
    send_at = clock.ms + HOUR_MS
    options = {"collapse_id": "c-1", "thread_id": "t-1", "sound": None, "priority": 5,
               "interruption_level": "passive", "badge": "none"}

    status, reply = await post(app_client, {**GOOD, **options, "user_ids": [user_id],
                                            "send_at": iso_ms(send_at)}, secret)
    assert status == 202
    clock.ms = send_at
    await released(store, reply["notification_ids"])

    [request] = received
    assert request.token == tokens[0]
    assert request.headers["apns-collapse-id"] == "c-1"
    assert request.headers["apns-priority"] == "5"
    aps = request.payload["aps"]
    assert aps["thread-id"] == "t-1" and aps["interruption-level"] == "passive"
    assert "sound" not in aps and "badge" not in aps
