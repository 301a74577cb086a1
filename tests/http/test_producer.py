"""The producer route, POST /v1/notifications: who may call it, what it accepts, what follows."""

import dataclasses
import uuid

import pytest

from owlmetry.http.app import create_app
from owlmetry.http.context import STORE
from tests.conftest import Users
from tests.http.test_auth import make_key
from tests.notify.conftest import user_with_devices, wait_done

GOOD = {"type": "feedback.new", "title": "New feedback", "body": "Someone wrote",
        "link": "/feedback/1", "data": {"feedback_id": "f1"}}


async def post(client, body, secret=None, **kwargs):
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    response = await client.post("/v1/notifications", headers=headers, json=body, **kwargs)
    return response.status, await response.json()


async def test_a_server_key_enqueues_one_notification_per_known_user(client, users):
    secret = await make_key(client.app, "server")
    first, _ = await users.create()
    second, _ = await users.create()
    stranger = str(uuid.uuid4())
    status, reply = await post(
        client, {**GOOD, "user_ids": [first, stranger, second, first, "nope"]}, secret)
    assert status == 202
    assert len(reply["notification_ids"]) == 2
    assert reply["unknown_user_ids"] == [stranger, "nope"]
    inbox = await client.app[STORE].list_notifications(first, "all", None, None, 10)
    assert [n.id for n in inbox] == reply["notification_ids"][:1]


async def test_users_and_agents_are_turned_away_and_strangers_asked_to_log_in(client, users):
    user_id, headers = await users.headers()
    response = await client.post("/v1/notifications", headers=headers,
                                 json={**GOOD, "user_ids": [user_id]})
    assert response.status == 403
    agent = await make_key(client.app, "agent")
    assert (await post(client, {**GOOD, "user_ids": [user_id]}, agent))[0] == 403
    assert await post(client, {**GOOD, "user_ids": [user_id]}) == (
        401, {"error": "Authentication required"})
    assert await client.app[STORE].unread_count(user_id) == 0


@pytest.mark.parametrize("change,message", [
    ({"user_ids": None}, "user_ids is required"),
    ({"user_ids": []}, "user_ids is required"),
    ({"user_ids": "abc"}, "user_ids is required"),
    ({"user_ids": [1]}, "user_ids must contain only strings"),
    ({"type": None}, "type is required"),
    ({"type": "  "}, "type is required"),
    ({"title": 5}, "title is required"),
    ({"title": "x" * 257}, "title must be at most 256 characters"),
    ({"body": ["no"]}, "body must be a string or null"),
    ({"link": 3}, "link must be a string or null"),
    ({"data": [1, 2]}, "data must be a JSON object or null"),
    ({"data": {"blob": "x" * 4000}}, "mobile_push: the notification makes an APNs payload of"),
])
async def test_bad_requests_are_400_naming_the_field_and_enqueue_nothing(
        client, users, change, message):
    secret = await make_key(client.app, "server")
    user_id, _ = await users.create()
    body = {**GOOD, "user_ids": [user_id], **change}
    status, reply = await post(client, {k: v for k, v in body.items() if v is not None}, secret)
    assert status == 400
    assert reply["error"].startswith(message)
    assert await client.app[STORE].unread_count(user_id) == 0


async def test_a_body_that_is_not_a_json_object_is_400(client):
    secret = await make_key(client.app, "server")
    for raw in (b"{nope", b"[1]"):
        response = await client.post("/v1/notifications", data=raw,
                                     headers={"Authorization": f"Bearer {secret}"})
        assert response.status == 400
        assert "JSON" in (await response.json())["error"]


async def test_bodies_over_4_mib_are_413_and_large_ones_below_are_fine(client, users):
    secret = await make_key(client.app, "server")
    user_id, _ = await users.create()
    padding = [str(uuid.uuid4()) for _ in range(20_000)]  # ~800 KiB, over the app's 64 KiB
    status, reply = await post(client, {**GOOD, "user_ids": [*padding, user_id]}, secret)
    assert status == 202 and len(reply["notification_ids"]) == 1
    status, reply = await post(client, {**GOOD, "user_ids": ["x" * 100] * 45_000}, secret)
    assert (status, reply) == (413, {"error": "Request body too large (the limit is 4 MiB)"})


async def test_without_apns_credentials_deliveries_are_skipped_with_the_reason(client, users):
    secret = await make_key(client.app, "server")
    user_id, _ = await users.create()
    _, reply = await post(client, {**GOOD, "user_ids": [user_id]}, secret)
    progress = await wait_done(client.app[STORE], reply["notification_ids"])
    # A server with no configuration has neither APNs nor SMTP: both channels skip.
    assert progress.deliveries == {"skipped": 2}
    rows = await client.app[STORE].execute(
        "SELECT channel, reason FROM notification_deliveries ORDER BY channel")
    assert rows == [
        ("email", "SMTP_URL is not set"),
        ("mobile_push", "APNs is not configured: APNS_KEY_ID, APNS_TEAM_ID, APNS_BUNDLE_ID, "
                        "APNS_KEY_P8 unset; FCM is not configured: FCM_SERVICE_ACCOUNT_PATH (or "
                        "FCM_SERVICE_ACCOUNT) unset")]


# Under APNs' 4,096 bytes, over FCM's once the Android options are counted.
OVER_FCM_ONLY = {"feedback_id": "f1", "blob": "x" * 3800}


@pytest.mark.parametrize("data,message", [
    (OVER_FCM_ONLY, "mobile_push: the notification makes an FCM payload of 4097 bytes; the "
                    "limit is 4096"),
    ({"from": "me"}, "mobile_push: data key 'from' is reserved by FCM"),
    ({"google.c.a": "1"}, "mobile_push: data key 'google.c.a' is reserved by FCM"),
])
async def test_with_fcm_configured_what_fcm_would_refuse_is_400(
        config, aiohttp_client, fcm_account, data, message):  # noqa: F811
    client = await aiohttp_client(create_app(dataclasses.replace(config, fcm=fcm_account)))
    secret = await make_key(client.app, "server")
    user_id, _ = await Users(client.app).create()
    status, reply = await post(client, {**GOOD, "user_ids": [user_id], "data": data}, secret)
    assert status == 400 and reply["error"].startswith(message)
    assert await client.app[STORE].unread_count(user_id) == 0


@pytest.mark.parametrize("data", [OVER_FCM_ONLY, {"from": "me", "gcm.x": 1}])
async def test_without_fcm_only_apns_limits_apply(client, users, data):
    secret = await make_key(client.app, "server")
    user_id, _ = await users.create()
    status, reply = await post(client, {**GOOD, "user_ids": [user_id], "data": data}, secret)
    assert status == 202 and len(reply["notification_ids"]) == 1


async def test_a_notification_reaches_the_recipients_devices(
        config, aiohttp_client, mocks, mobile_push):  # noqa: F811
    client = await aiohttp_client(create_app(config,
                                             channels={"mobile_push": mobile_push()}))
    store = client.app[STORE]
    secret = await make_key(client.app, "server")
    user_id, tokens = await user_with_devices(store, ["production", "sandbox"], 0)

    _, reply = await post(client, {**GOOD, "user_ids": [user_id]}, secret)
    progress = await wait_done(store, reply["notification_ids"])

    assert progress.deliveries == {"sent": 1} and progress.pushes == {"delivered": 2}
    assert mocks.production.stats.payloads[tokens[0]]["aps"]["badge"] == 1
    assert mocks.sandbox.stats.payloads[tokens[1]]["feedback_id"] == "f1"
