"""The Devices API as today's Owlmetry clients use it (`mobile_push` with a `platform`), beside
the seed's `ios_push`, on both backends; the iOS app's own request replayed byte for byte."""

import secrets

import orjson
import pytest

from owlmetry.http.context import STORE
from tests.http.test_devices import DEVICE_KEYS, listed, register

IOS_TOKEN = "9f" * 32  # 64 lower-case hex, as the app sends it
# The shape FCM registration tokens have had in practice: case matters, ':' separates.
FCM_TOKEN = "eKabc123xQ:APA91bGhijklmnopQrstuvwxyz-_" + "AbCd" * 28


def mobile_push(platform="ios", token=IOS_TOKEN, **fields):
    return {"channel": "mobile_push", "platform": platform, "token": token, **fields}


async def test_the_ios_apps_registration_is_201_and_decodes_as_the_app_does(client, users):
    """owlmetry-ios `DevicesService.swift` (research §8): snake_case JSON, Bearer JWT; the app
    reads `device.id` from the answer."""
    _, headers = await users.headers()
    raw = orjson.dumps({"channel": "mobile_push", "platform": "ios", "token": IOS_TOKEN,
                        "environment": "production", "app_version": "1.4",
                        "device_model": "iPhone16,2", "os_version": "18.1"})
    response = await client.post("/v1/devices", data=raw, headers={
        **headers, "Content-Type": "application/json"})
    assert response.status == 201
    device = orjson.loads(await response.read())["device"]
    assert isinstance(device["id"], str) and device["id"]
    assert list(device) == DEVICE_KEYS
    assert (device["channel"], device["platform"], device["environment"]) == (
        "mobile_push", "ios", "production")
    assert (device["app_version"], device["device_model"], device["os_version"]) == (
        "1.4", "iPhone16,2", "18.1")
    assert IOS_TOKEN not in str(device)
    assert await listed(client, headers) == [device]


async def test_an_android_device_registers_with_its_fcm_token_kept_as_sent(client, users):
    user_id, headers = await users.headers()
    status, reply = await register(client, headers, mobile_push("android", FCM_TOKEN,
                                                                 environment="sandbox"))
    assert status == 201
    assert (reply["device"]["channel"], reply["device"]["platform"]) == ("mobile_push", "android")
    assert reply["device"]["environment"] == "sandbox"
    assert await client.app[STORE].execute(
        "SELECT token, platform FROM user_devices WHERE user_id = $1", user_id) == [
        (FCM_TOKEN, "android")]
    # The same token in another case is another token: FCM tokens are case-sensitive.
    status, other = await register(client, headers, mobile_push("android", FCM_TOKEN.lower()))
    assert status == 201 and other["device"]["id"] != reply["device"]["id"]


@pytest.mark.parametrize("payload", [
    mobile_push("windows"), mobile_push("IOS"), mobile_push(""), mobile_push(1),
    mobile_push(["ios"]), mobile_push(None),
    {"channel": "mobile_push", "token": IOS_TOKEN},  # missing
    {"channel": "ios_push", "platform": "android", "token": IOS_TOKEN},  # the seed's is iOS
    {"channel": "ios_push", "platform": "web", "token": IOS_TOKEN},
])
async def test_a_bad_or_missing_platform_is_400_naming_it(client, users, payload):
    _, headers = await users.headers()
    status, reply = await register(client, headers, payload)
    assert status == 400
    assert "platform" in reply["error"]
    assert await listed(client, headers) == []


async def test_upstreams_words_for_an_unknown_platform(client, users):
    _, headers = await users.headers()
    status, reply = await register(client, headers, mobile_push("windows"))
    assert (status, reply["error"]) == (
        400, """Invalid platform 'windows': platform must be "ios" or "android\"""")


@pytest.mark.parametrize("payload", [
    mobile_push("android", "has space"), mobile_push("android", "x" * 2049),
    mobile_push("android", "ünïcode"), mobile_push("android", ""),
    mobile_push("ios", FCM_TOKEN),  # an iOS device's token is APNs hex
    mobile_push("ios", "ab" * 7),
])
async def test_a_token_not_of_the_platform_is_400_naming_the_token(client, users, payload):
    _, headers = await users.headers()
    status, reply = await register(client, headers, payload)
    assert status == 400 and "token" in reply["error"]
    assert await listed(client, headers) == []


@pytest.mark.parametrize("platform", ["ios", None])
async def test_the_seeds_ios_push_may_say_ios_or_nothing(client, users, platform):
    _, headers = await users.headers()
    payload = {"channel": "ios_push", "token": IOS_TOKEN}
    if platform is not None:
        payload["platform"] = platform
    status, reply = await register(client, headers, payload)
    assert status == 201
    assert (reply["device"]["channel"], reply["device"]["platform"]) == ("ios_push", "ios")


async def test_the_token_is_the_key_across_channels_and_platforms(client, users):
    _, alice = await users.headers()
    _, bob = await users.headers()
    status, seed = await register(client, alice, {"channel": "ios_push", "token": IOS_TOKEN})
    assert status == 201
    # Today's app registers the same device (upper case: the same APNs token): the same row,
    # now with the channel it was sent with.
    status, today = await register(client, alice, mobile_push("ios", IOS_TOKEN.upper()))
    assert status == 201 and today["device"]["id"] == seed["device"]["id"]
    assert today["device"]["channel"] == "mobile_push"
    # A token that reads as both (hex is URL-safe) moves to its last registration, platform too.
    status, moved = await register(client, bob, mobile_push("android", IOS_TOKEN))
    assert status == 201 and moved["device"]["id"] == seed["device"]["id"]
    assert (moved["device"]["platform"], moved["device"]["created_at"]) == (
        "android", seed["device"]["created_at"])
    assert await listed(client, alice) == []
    assert [d["id"] for d in await listed(client, bob)] == [seed["device"]["id"]]


async def test_the_longest_fcm_token_registers_refreshes_and_moves(client, users):
    """2,048 characters of random URL-safe text, which nothing compresses: the token is the
    registry's unique key, and its index entry must fit (PostgreSQL holds 2,704 bytes; 4,096
    characters, the bound before, failed there with a database error)."""
    longest = secrets.token_urlsafe(1536)
    assert len(longest) == 2048
    _, alice = await users.headers()
    status, first = await register(client, alice, mobile_push("android", longest))
    assert status == 201
    status, again = await register(client, alice, mobile_push("android", longest,
                                                               app_version="2.0"))
    assert (status, again["device"]["id"]) == (201, first["device"]["id"])
    assert again["device"]["app_version"] == "2.0"
    bob_id, bob = await users.headers()
    status, moved = await register(client, bob, mobile_push("android", longest))
    assert (status, moved["device"]["id"]) == (201, first["device"]["id"])
    assert await listed(client, alice) == []
    assert await client.app[STORE].execute(
        "SELECT user_id FROM user_devices WHERE token = $1", longest) == [(bob_id,)]
    status, reply = await register(client, bob, mobile_push("android", longest + "A"))
    assert status == 400 and "1 to 2048 characters" in reply["error"]
