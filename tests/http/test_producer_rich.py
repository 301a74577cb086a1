"""Rich content on POST /v1/notifications, end to end on both backends: the producer's fields,
stored with the notification, claimed by the dispatcher and received by the mock APNs (headers
and payload, as it recorded them) and the mock FCM (the message); the 400s naming the field;
the 4 KiB check made with the real payload; the API reference held to all of it."""

import dataclasses
import time
import uuid

import pytest

from owlmetry.http.app import create_app
from owlmetry.http.context import STORE
from owlmetry.notify.providers.apns import apns_payload
from owlmetry.store import NotificationContent
from tests.conftest import Users
from tests.http.test_auth import make_key
from tests.http.test_openapi import PRODUCER, bearer, reference  # noqa: F401  (fixture)
from tests.http.test_producer import GOOD, post
from tests.notify.conftest import user_with_devices, wait_done
from tests.notify.test_mobile_push import fcm_token, register_android

EVERY_ALERT_FIELD = {"priority": 5, "ttl_seconds": 3600, "collapse_id": "match-7-score",
                     "thread_id": "match-7", "category": "GOAL", "mutable_content": True,
                     "interruption_level": "time-sensitive", "relevance_score": 0.25,
                     "sound": "goal.caf"}


@pytest.fixture
async def server(config, aiohttp_client, mocks, fcm_mock, fcm_account, mobile_push):  # noqa: F811
    """A server with APNs (the mocks) and FCM (the mock) configured, the mock APNs recording,
    and a user with an iOS device in production and an Android one."""
    client = await aiohttp_client(create_app(dataclasses.replace(config, fcm=fcm_account),
                                             channels={"mobile_push": mobile_push()}))
    store = client.app[STORE]
    user_id, (ios,) = await user_with_devices(store, ["production"], 0)
    android = fcm_token(1)
    await register_android(store, user_id, android)
    return Server(client, await make_key(client.app, "server"), user_id, ios, android,
                  mocks.production.record(), fcm_mock)


@dataclasses.dataclass
class Server:
    client: object
    secret: str
    user_id: str
    ios: str
    android: str
    received: list
    fcm: object

    async def notify(self, **fields) -> str:
        status, reply = await post(self.client, {**GOOD, "user_ids": [self.user_id], **fields},
                                   self.secret)
        assert status == 202, reply
        (notification_id,) = reply["notification_ids"]
        progress = await wait_done(self.client.app[STORE], [notification_id])
        assert progress.pushes == {"delivered": 2}, progress
        return notification_id

    def apns(self) -> tuple[dict, dict]:
        """The apns-* headers the push's options set and the payload the mock APNs received,
        once. Every push also names itself: its `apns-id` is a UUID of its own."""
        (request,) = self.received
        assert request.token == self.ios and request.status == 200
        headers = {name: value for name, value in request.headers.items()
                   if name.startswith("apns-")}
        assert uuid.UUID(headers.pop("apns-id"))
        return headers, request.payload

    def fcm_message(self) -> dict:
        return self.fcm.stats.payloads[self.android]


async def test_todays_request_sends_todays_push(server):
    notification_id = await server.notify()
    headers, payload = server.apns()
    assert headers == {"apns-topic": "com.example.app", "apns-push-type": "alert",
                       "apns-priority": "10"}
    assert payload == {"feedback_id": "f1", "aps": {
        "alert": {"title": "New feedback", "body": "Someone wrote"}, "sound": "default",
        "badge": 1}, "link": "/feedback/1", "type": "feedback.new",
        "notification_id": notification_id}
    assert server.fcm_message() == {
        "token": server.android, "notification": {"title": "New feedback", "body": "Someone wrote"},
        "data": {"feedback_id": "f1", "link": "/feedback/1", "type": "feedback.new",
                 "notification_id": notification_id},
        "android": {"priority": "HIGH", "ttl": "604800s",
                    "notification": {"notification_count": 1}}}


async def test_every_alert_field_reaches_apns_and_fcm(server):
    before = int(time.time())
    notification_id = await server.notify(**EVERY_ALERT_FIELD)
    after = int(time.time())
    headers, payload = server.apns()
    expiration = int(headers.pop("apns-expiration"))
    assert before + 3600 <= expiration <= after + 3600
    assert headers == {"apns-topic": "com.example.app", "apns-push-type": "alert",
                       "apns-priority": "5", "apns-collapse-id": "match-7-score"}
    assert payload["aps"] == {
        "alert": {"title": "New feedback", "body": "Someone wrote"}, "sound": "goal.caf",
        "thread-id": "match-7", "category": "GOAL", "mutable-content": 1,
        "interruption-level": "time-sensitive", "relevance-score": 0.25, "badge": 1}
    assert payload["notification_id"] == notification_id

    message = server.fcm_message()
    ttl = int(message["android"].pop("ttl").removesuffix("s"))
    assert expiration - after <= ttl <= 3600  # what was left when it was sent
    assert message["android"] == {
        "priority": "NORMAL", "collapse_key": "match-7-score",
        "notification": {"tag": "match-7-score", "sound": "goal.caf", "click_action": "GOAL",
                         "notification_priority": "PRIORITY_HIGH", "notification_count": 1}}
    assert message["notification"] == {"title": "New feedback", "body": "Someone wrote"}


async def test_a_background_push_wakes_the_app_without_alert_sound_or_badge(server):
    notification_id = await server.notify(push_type="background", collapse_id="sync")
    headers, payload = server.apns()
    assert headers == {"apns-topic": "com.example.app", "apns-push-type": "background",
                       "apns-priority": "5", "apns-collapse-id": "sync"}
    assert payload == {"feedback_id": "f1", "aps": {"content-available": 1},
                       "link": "/feedback/1", "type": "feedback.new",
                       "notification_id": notification_id}
    assert server.fcm_message() == {
        "token": server.android,
        "data": {"feedback_id": "f1", "link": "/feedback/1", "type": "feedback.new",
                 "notification_id": notification_id},
        "android": {"priority": "NORMAL", "ttl": "604800s", "collapse_key": "sync"}}
    # The inbox row is there all the same.
    inbox = await server.client.app[STORE].list_notifications(server.user_id, "all", None,
                                                              None, 10)
    assert [n.id for n in inbox] == [notification_id]


async def test_a_silent_push_without_badge_tried_once(server):
    await server.notify(sound=None, badge="none", ttl_seconds=0, interruption_level="passive")
    headers, payload = server.apns()
    assert headers["apns-expiration"] == "0" and headers["apns-priority"] == "10"
    assert payload["aps"] == {"alert": {"title": "New feedback", "body": "Someone wrote"},
                              "interruption-level": "passive"}
    assert server.fcm_message()["android"] == {
        "priority": "HIGH", "ttl": "0s", "notification": {"notification_priority": "PRIORITY_LOW"}}


async def test_an_expiry_date_is_apns_expiration(server):
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2 * 86400))
    await server.notify(expires_at=when, priority=1)
    headers, _ = server.apns()
    assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(headers["apns-expiration"]))) \
        == when
    assert headers["apns-priority"] == "1"
    assert server.fcm_message()["android"]["priority"] == "NORMAL"


@pytest.mark.parametrize("fields,message", [
    ({"push_type": "background", "priority": 10}, "priority must be 5 for push_type background"),
    ({"push_type": "background", "sound": "x.caf"}, "sound cannot be used with push_type "
                                                    "background"),
    ({"push_type": "alert!"}, "push_type must be one of alert, background"),
    ({"priority": 3}, "priority must be 10, 5 or 1"),
    ({"ttl_seconds": 60, "expires_at": "2099-01-01T00:00:00Z"},
     "expires_at and ttl_seconds cannot both be given"),
    ({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at must be in the future"),
    ({"collapse_id": "é" * 33}, "collapse_id must be a non-empty string of at most 64 bytes"),
    ({"interruption_level": "loud"}, "interruption_level must be one of"),
    ({"relevance_score": 2}, "relevance_score must be a number from 0 to 1"),
    ({"badge": "count"}, "badge must be one of unread, none"),
    ({"mutable_content": "yes"}, "mutable_content must be true or false"),
    ({"thread_id": 7}, "thread_id must be a non-empty string"),
])
async def test_bad_options_are_400_naming_the_field_and_enqueue_nothing(
        client, users, fields, message):
    secret = await make_key(client.app, "server")
    user_id, _ = await users.create()
    status, reply = await post(client, {**GOOD, "user_ids": [user_id], **fields}, secret)
    assert status == 400 and reply["error"].startswith(message), reply
    assert await client.app[STORE].unread_count(user_id) == 0
    assert await client.app[STORE].execute("SELECT count(*) FROM notification_contents") \
        == [(0,)]


def blob_to_fill(size: int) -> int:
    """The length of a `blob` data string that makes GOOD's APNs payload `size` bytes."""
    content = NotificationContent(GOOD["type"], GOOD["title"], GOOD["body"], GOOD["link"],
                                  {**GOOD["data"], "blob": ""})
    return size - len(apns_payload(content, "00000000-0000-0000-0000-000000000000", 10**9))


async def test_the_4_kib_check_is_made_with_the_options(client, users):
    secret = await make_key(client.app, "server")
    user_id, _ = await users.create()
    # 4,096 bytes as today's push, with the largest badge the check assumes.
    at_limit = {**GOOD, "user_ids": [user_id], "data": {"blob": "x" * blob_to_fill(4096)}}
    assert (await post(client, at_limit, secret))[0] == 202
    status, reply = await post(client, {**at_limit, "thread_id": "t" * 20}, secret)
    assert status == 400
    assert reply["error"].startswith("mobile_push: the notification makes an APNs payload of")
    # A background push has no alert: a long body is no part of its payload.
    status, _ = await post(client, {**GOOD, "user_ids": [user_id], "body": "b" * 4000,
                                    "data": {"blob": "x" * 2000}}, secret)
    assert status == 400
    status, _ = await post(client, {**GOOD, "user_ids": [user_id], "body": "b" * 4000,
                                    "data": {"blob": "x" * 2000}, "push_type": "background"},
                           secret)
    assert status == 202


async def test_with_fcm_configured_the_fcm_check_counts_the_options_too(
        config, aiohttp_client, fcm_account):  # noqa: F811
    client = await aiohttp_client(create_app(dataclasses.replace(config, fcm=fcm_account)))
    secret = await make_key(client.app, "server")
    user_id, _ = await Users(client.app).create()
    # Fits both as today's push; the FCM message's collapse key and tag make it too big.
    body = {**GOOD, "user_ids": [user_id], "data": {"blob": "x" * 3800}, "badge": "none",
            "link": None, "body": None}
    body["data"]["blob"] = "x" * 3835
    assert (await post(client, body, secret))[0] == 202
    status, reply = await post(client, {**body, "collapse_id": "c" * 40}, secret)
    assert status == 400 and reply["error"].startswith(
        "mobile_push: the notification makes an FCM payload of"), reply


async def test_the_reference_documents_every_option(client, users, reference):  # noqa: F811
    call = reference.on(client)
    user_id, _ = await users.create()
    server = bearer(await make_key(client.app, "server"))
    route, good = "/v1/notifications", {**GOOD, "user_ids": [user_id]}
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
    for fields in (EVERY_ALERT_FIELD, {"push_type": "background", "priority": 5, "sound": None,
                                       "badge": "none", "mutable_content": False},
                   {"expires_at": soon, "sound": None, "badge": "none"},
                   {"push_type": None, "priority": None, "expires_at": None, "ttl_seconds": 0}):
        await call("POST", route, 202, headers=server, json={**good, **fields})
    for fields in ({"push_type": "background", "priority": 10},
                   {"push_type": "background", "badge": "unread"},
                   {"push_type": "background", "relevance_score": 0.5},
                   {"ttl_seconds": 5, "expires_at": soon}, {"ttl_seconds": -1},
                   {"priority": 2}, {"collapse_id": "x" * 65}, {"relevance_score": 1.5},
                   {"interruption_level": "urgent"}, {"badge": "count"}, {"sound": ""},
                   {"mutable_content": 1}, {"expires_at": "soon"}):
        await call("POST", route, 400, headers=server, json={**good, **fields})
    # Rules in bytes and in time, which no schema sees.
    await call("POST", route, 400, headers=server, json={**good, "collapse_id": "é" * 33},
               schema_sees_it=False)
    await call("POST", route, 400, headers=server,
               json={**good, "expires_at": "2020-01-01T00:00:00Z"}, schema_sees_it=False)
    assert {status for (_, method, status) in reference.seen} == {202, 400}
    assert PRODUCER == [(route, "POST")]
