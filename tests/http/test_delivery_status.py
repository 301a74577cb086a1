"""Delivery status for producers: GET /v1/notifications/{id}/deliveries and
/v1/notifications/deliveries?ids=..., against real mock APNs and FCM hosts, on both backends."""

import asyncio
import uuid

import pytest

from owlmetry.apns.mock import TokenFault
from owlmetry.clock import iso_ms, now_ms
from owlmetry.http.app import create_app
from owlmetry.http.context import STORE
from owlmetry.store import DeviceRegistration, NotificationContent, Platform
from tests.http.test_auth import make_key
from tests.notify.conftest import user_with_devices, wait_done

CONTENT = {"type": "feedback.new", "title": "New feedback", "body": "Someone wrote"}
STATUS_KEYS = {"delivered", "removed", "failed", "skipped", "retrying"}


@pytest.fixture
async def app_client(config, aiohttp_client, mocks, mobile_push):  # noqa: F811
    return await aiohttp_client(create_app(config, channels={"mobile_push": mobile_push()}))


async def send(client, secret, user_ids) -> list[str]:
    response = await client.post("/v1/notifications", json={**CONTENT, "user_ids": user_ids},
                                 headers={"Authorization": f"Bearer {secret}"})
    assert response.status == 202
    return (await response.json())["notification_ids"]


async def get(client, path, secret, **params):
    response = await client.get(path, params=params,
                                headers={"Authorization": f"Bearer {secret}"})
    return response.status, await response.json()


async def android_device(store, user_id, device_token) -> None:
    await store.register_device(str(uuid.uuid4()), user_id, DeviceRegistration(
        "mobile_push", device_token, "production", None, None, None, Platform.ANDROID), now_ms())


async def test_after_a_fan_out_with_dead_tokens_every_device_is_explained(
        app_client, mocks, fcm_mock):  # noqa: F811
    client, store = app_client, app_client.app[STORE]
    secret = await make_key(client.app, "server")
    user_id, tokens = await user_with_devices(store, ["production", "production", "sandbox"], 0)
    alive, gone, bad = tokens
    apple_gave_up = now_ms() + 1000  # after its registration: the device goes
    mocks.production.behaviour.unregistered[gone] = apple_gave_up
    mocks.sandbox.behaviour.bad_tokens.add(bad)
    fcm_mock.behaviour.dead_prefixes = ("dead",)
    await android_device(store, user_id, "live-android-token")
    await android_device(store, user_id, "dead-android-token")
    by_token = {d.id: d for d in await store.list_devices(user_id)}
    devices = await store.execute("SELECT id, token FROM user_devices WHERE user_id = $1",
                                  user_id)
    id_of = {device_token: device_id for device_id, device_token in devices}
    assert len(by_token) == 5

    (notification_id,) = await send(client, secret, [user_id])
    await wait_done(store, [notification_id])
    status, reply = await get(client, f"/v1/notifications/{notification_id}/deliveries", secret)

    assert status == 200
    assert reply["has_more"] is False and reply["cursor"] is None
    notification = reply["notification"]
    assert notification["id"] == notification_id and notification["user_id"] == user_id
    (channel,) = notification["channels"]
    assert channel["channel"] == "mobile_push" and channel["status"] == "sent"
    assert channel["attempts"] == 1 and channel["next_attempt_at"] is None
    assert channel["devices"] == {"delivered": 2, "removed": 3, "failed": 0, "skipped": 0,
                                  "retrying": 0}
    listed = {device["device_id"]: device for device in reply["devices"]}
    assert [d["device_id"] for d in reply["devices"]] == sorted(id_of.values())

    ios = listed[id_of[alive]]
    assert (ios["platform"], ios["environment"], ios["outcome"], ios["status"]) == (
        "ios", "production", "delivered", 200)
    assert uuid.UUID(ios["apns_id"])  # APNs' apns-id, as the mock answered it
    assert ios["attempts"] == 1 and ios["removal"] is None
    assert ios["first_attempt_at"] <= ios["answered_at"]
    android = listed[id_of["live-android-token"]]
    assert (android["platform"], android["outcome"]) == ("android", "delivered")
    assert android["apns_id"].startswith(f"projects/{fcm_mock.project_id}/messages/")

    unregistered = listed[id_of[gone]]
    assert (unregistered["outcome"], unregistered["status"], unregistered["reason"]) == (
        "removed", 410, "Unregistered")
    removal = unregistered["removal"]
    assert removal["provider_timestamp"] == iso_ms(apple_gave_up)
    assert (removal["user_id"], removal["notification_id"], removal["platform"],
            removal["environment"], removal["reason"]) == (
        user_id, notification_id, "ios", "production", "Unregistered")
    assert removal["token"] == gone[:8] + "…"
    bad_token = listed[id_of[bad]]["removal"]
    assert (bad_token["reason"], bad_token["provider_timestamp"], bad_token["environment"]) == (
        "BadDeviceToken", None, "sandbox")
    fcm_dead = listed[id_of["dead-android-token"]]
    assert fcm_dead["outcome"] == "removed" and fcm_dead["removal"]["platform"] == "android"
    assert fcm_dead["removal"]["provider_timestamp"] is None  # FCM gives none
    # The devices are gone from the registry; no token is ever shown in full.
    assert {d.id for d in await store.list_devices(user_id)} == {id_of[alive],
                                                                 id_of["live-android-token"]}
    text = str(reply)
    assert not any(device_token in text for device_token in (*tokens, "dead-android-token"))


async def test_during_a_fan_out_a_device_waiting_to_be_retried_shows_its_attempts(
        app_client, mocks):  # noqa: F811
    client, store = app_client, app_client.app[STORE]
    secret = await make_key(client.app, "server")
    user_id, (steady, stubborn, gone) = await user_with_devices(store, ["production"] * 3, 0)
    # More 503s than the pool retries on its own (1 + 3): the first attempt leaves it waiting.
    mocks.production.behaviour.token_faults[stubborn] = TokenFault(503, "ServiceUnavailable", 4)
    mocks.production.behaviour.bad_tokens.add(gone)
    (notification_id,) = await send(client, secret, [user_id])
    path = f"/v1/notifications/{notification_id}/deliveries"

    for _ in range(500):  # until the first attempt's answers are on record
        status, during = await get(client, path, secret)
        if during["notification"]["channels"][0]["devices"]["retrying"]:
            break
        await asyncio.sleep(0.02)
    (channel,) = during["notification"]["channels"]
    assert channel["status"] == "pending" and channel["finished_at"] is None
    assert channel["next_attempt_at"] is not None
    assert channel["devices"] == {"delivered": 1, "removed": 1, "failed": 0, "skipped": 0,
                                  "retrying": 1}
    removed = next(d for d in during["devices"] if d["outcome"] == "removed")
    assert removed["removal"]["reason"] == "BadDeviceToken"
    waiting = next(d for d in during["devices"] if d["outcome"] == "retrying")
    assert (waiting["status"], waiting["reason"], waiting["attempts"]) == (
        503, "ServiceUnavailable", 1)

    await wait_done(store, [notification_id])
    status, after = await get(client, path, secret)
    (channel,) = after["notification"]["channels"]
    assert (channel["status"], channel["attempts"]) == ("sent", 2)
    assert channel["devices"] == {"delivered": 2, "removed": 1, "failed": 0, "skipped": 0,
                                  "retrying": 0}
    assert [d["device_id"] for d in after["devices"]] == [d["device_id"] for d in
                                                          during["devices"]]
    retried = next(d for d in after["devices"] if d["device_id"] == waiting["device_id"])
    assert (retried["outcome"], retried["attempts"]) == ("delivered", 2)
    # Its first attempt's time is kept: the one the first page showed.
    assert retried["first_attempt_at"] == waiting["first_attempt_at"]
    assert retried["answered_at"] > waiting["answered_at"]
    assert mocks.production.stats.delivered[steady] == 1


async def test_many_notifications_page_by_an_opaque_cursor(app_client, mocks):  # noqa: F811
    client, store = app_client, app_client.app[STORE]
    secret = await make_key(client.app, "server")
    users = [(await user_with_devices(store, ["production"] * 4, n * 10))[0] for n in range(3)]
    ids = await send(client, secret, users)
    await wait_done(store, ids)
    stranger, nonsense = str(uuid.uuid4()), "not-an-id"
    asked = ",".join([ids[2], stranger, ids[0], nonsense, ids[1], ids[0].upper()])

    pages, cursor = [], None
    while True:
        params = {"ids": asked, "limit": "5", **({"cursor": cursor} if cursor else {})}
        status, reply = await get(client, "/v1/notifications/deliveries", secret, **params)
        assert status == 200
        pages.append(reply)
        cursor = reply["cursor"]
        assert reply["has_more"] is (cursor is not None)
        if cursor is None:
            break
    assert [len(page["devices"]) for page in pages] == [5, 5, 2]
    listed = [(d["notification_id"], d["device_id"]) for page in pages for d in page["devices"]]
    assert listed == sorted(set(listed)) and len(listed) == 12
    assert {notification_id for notification_id, _ in listed} == set(ids)
    first = pages[0]
    assert [n["id"] for n in first["notifications"]] == [ids[2], ids[0], ids[1]]
    assert all(n["channels"][0]["devices"]["delivered"] == 4 for n in first["notifications"])
    assert first["unknown_ids"] == [stranger, nonsense]

    # The same by POST, for more ids than a URL holds; the cursor works across both.
    response = await client.post(
        "/v1/notifications/deliveries", headers={"Authorization": f"Bearer {secret}"},
        json={"ids": asked.split(","), "limit": 5, "cursor": pages[0]["cursor"]})
    assert response.status == 200
    assert (await response.json())["devices"] == pages[1]["devices"]


@pytest.mark.parametrize("params,message", [
    ({"cursor": "bm90IGEgY3Vyc29y"}, "Invalid cursor"),
    ({"cursor": "%%%"}, "Invalid cursor"),
    ({"limit": "0"}, "limit must be an integer from 1 to 1000"),
    ({"limit": "1001"}, "limit must be an integer from 1 to 1000"),
    ({"limit": "ten"}, "limit must be an integer from 1 to 1000"),
])
async def test_bad_cursors_and_limits_are_400(client, users, params, message):
    secret = await make_key(client.app, "server")
    user_id, _ = await users.create()
    (notification_id,) = await client.app[STORE].enqueue_notifications(
        [(str(uuid.uuid4()), user_id)], NotificationContent("t", "T"), [], now_ms())
    for path, ids in ((f"/v1/notifications/{notification_id}/deliveries", {}),
                      ("/v1/notifications/deliveries", {"ids": notification_id})):
        assert await get(client, path, secret, **params, **ids) == (400, {"error": message})


async def test_bad_id_lists_are_400(client):
    secret = await make_key(client.app, "server")
    headers = {"Authorization": f"Bearer {secret}"}
    assert await get(client, "/v1/notifications/deliveries", secret) == (
        400, {"error": "ids is required: notification ids separated by commas"})
    assert (await get(client, "/v1/notifications/deliveries", secret, ids=""))[0] == 400
    too_many = [str(uuid.uuid4()) for _ in range(1001)]
    response = await client.post("/v1/notifications/deliveries", headers=headers,
                                 json={"ids": too_many})
    assert (response.status, await response.json()) == (
        400, {"error": "ids must name from 1 to 1000 notifications"})
    response = await client.post("/v1/notifications/deliveries", headers=headers,
                                 json={"ids": too_many[:1000]})
    reply = await response.json()
    assert response.status == 200 and len(reply["unknown_ids"]) == 1000
    response = await client.post("/v1/notifications/deliveries", headers=headers,
                                 json={"ids": [1]})
    assert response.status == 400


async def test_unknown_notifications_are_404(client, users):
    secret = await make_key(client.app, "server")
    for unknown in (str(uuid.uuid4()), "not-a-uuid"):
        assert await get(client, f"/v1/notifications/{unknown}/deliveries", secret) == (
            404, {"error": "Notification not found"})


async def test_only_server_keys_may_ask(client, users):
    user_id, headers = await users.headers()
    # A user's own notification is still not theirs to ask about here.
    (notification_id,) = await client.app[STORE].enqueue_notifications(
        [(str(uuid.uuid4()), user_id)], NotificationContent("t", "T"), [], now_ms())
    agent = await make_key(client.app, "agent")
    server = await make_key(client.app, "server")
    revoked = await make_key(client.app, "server", revoked=True)
    for path, params in ((f"/v1/notifications/{notification_id}/deliveries", {}),
                         ("/v1/notifications/deliveries", {"ids": notification_id})):
        response = await client.get(path, params=params, headers=headers)
        assert response.status == 403
        assert (await get(client, path, agent, **params)) == (
            403, {"error": "This route is not open to agent credentials"})
        response = await client.get(path, params=params)
        assert (response.status, await response.json()) == (
            401, {"error": "Authentication required"})
        assert (await get(client, path, revoked, **params))[0] == 401
        assert (await get(client, path, server, **params))[0] == 200
    response = await client.post("/v1/notifications/deliveries", headers=headers,
                                 json={"ids": [notification_id]})
    assert response.status == 403
