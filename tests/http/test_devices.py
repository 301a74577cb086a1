"""The Devices API as an iOS app and its user see it, on both backends."""

import asyncio
import re

import pytest

from owlmetry.http.context import STORE

TOKEN = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
ISO_MS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DEVICE_KEYS = [
    "id", "channel", "platform", "environment", "app_version", "device_model", "os_version",
    "last_seen_at", "created_at",
]


def body(token=TOKEN, **fields):
    return {"channel": "ios_push", "token": token, **fields}


async def register(client, headers, payload):
    response = await client.post("/v1/devices", json=payload, headers=headers)
    return response.status, await response.json()


async def listed(client, headers):
    response = await client.get("/v1/devices", headers=headers)
    assert response.status == 200
    return (await response.json())["devices"]


async def test_register_returns_the_device_without_its_token(client, users):
    _, headers = await users.headers()
    status, reply = await register(client, headers, body(
        environment="sandbox", app_version="2.1.0", device_model="iPhone15,3", os_version="iOS 18.2",
    ))
    assert status == 201
    device = reply["device"]
    assert list(device) == DEVICE_KEYS
    assert UUID.fullmatch(device["id"])
    assert (device["channel"], device["platform"]) == ("ios_push", "ios")
    assert device["environment"] == "sandbox"
    assert (device["app_version"], device["device_model"], device["os_version"]) == (
        "2.1.0", "iPhone15,3", "iOS 18.2")
    assert ISO_MS.fullmatch(device["last_seen_at"]) and device["last_seen_at"] == device["created_at"]
    assert TOKEN not in str(reply)
    assert await listed(client, headers) == [device]


@pytest.mark.parametrize("environment", [None, "production", "Sandbox", "staging", ""])
async def test_anything_but_sandbox_is_production(client, users, environment):
    _, headers = await users.headers()
    payload = body() if environment is None else body(environment=environment)
    status, reply = await register(client, headers, payload)
    assert status == 201
    assert reply["device"]["environment"] == "production"


async def test_refresh_keeps_id_and_created_at_and_replaces_metadata(client, users):
    _, headers = await users.headers()
    _, first = await register(client, headers, body(
        environment="sandbox", app_version="1.0", device_model="iPhone15,3", os_version="iOS 18.2"))
    await asyncio.sleep(0.005)  # let the clock move on by a few milliseconds
    status, second = await register(client, headers, body(app_version="1.1"))
    assert status == 201
    before, after = first["device"], second["device"]
    assert after["id"] == before["id"]
    assert after["created_at"] == before["created_at"]
    assert after["last_seen_at"] > before["last_seen_at"]
    assert after["environment"] == "production"
    assert (after["app_version"], after["device_model"], after["os_version"]) == ("1.1", None, None)
    assert await listed(client, headers) == [after]


async def test_the_same_token_in_upper_case_is_the_same_device(client, users):
    _, headers = await users.headers()
    _, lower = await register(client, headers, body(TOKEN))
    _, upper = await register(client, headers, body(TOKEN.upper()))
    assert upper["device"]["id"] == lower["device"]["id"]
    assert len(await listed(client, headers)) == 1


async def test_ownership_moves_to_the_last_user_who_registers_a_token(client, users):
    _, alice = await users.headers()
    _, bob = await users.headers()
    _, first = await register(client, alice, body())
    _, second = await register(client, bob, body())
    assert second["device"]["id"] == first["device"]["id"]
    assert await listed(client, alice) == []
    assert [d["id"] for d in await listed(client, bob)] == [first["device"]["id"]]


async def test_list_shows_only_the_callers_devices_newest_first(client, users):
    _, alice = await users.headers()
    _, bob = await users.headers()
    ids = []
    for n in range(3):
        _, reply = await register(client, alice, body(f"{n:02x}" * 16))
        ids.append(reply["device"]["id"])
        await asyncio.sleep(0.005)
    await register(client, bob, body("ff" * 16))
    await asyncio.sleep(0.005)
    await register(client, alice, body("00" * 16))  # refresh moves the first one to the top
    assert [d["id"] for d in await listed(client, alice)] == [ids[0], ids[2], ids[1]]
    assert len(await listed(client, bob)) == 1


async def test_delete_removes_the_callers_device(client, users):
    _, headers = await users.headers()
    _, reply = await register(client, headers, body())
    device_id = reply["device"]["id"]
    response = await client.delete(f"/v1/devices/{device_id.upper()}", headers=headers)
    assert response.status == 200
    assert await response.json() == {"id": device_id}
    assert await listed(client, headers) == []
    again = await client.delete(f"/v1/devices/{device_id}", headers=headers)
    assert again.status == 404
    assert await again.json() == {"error": "Device not found"}


@pytest.mark.parametrize("device_id", [
    "00000000-0000-4000-8000-000000000000", "not-a-uuid", "12345", "{00000000-0000-4000-8000-000000000000}",
])
async def test_delete_of_an_unknown_or_malformed_id_is_404(client, users, device_id):
    _, headers = await users.headers()
    response = await client.delete(f"/v1/devices/{device_id}", headers=headers)
    assert response.status == 404
    assert await response.json() == {"error": "Device not found"}


async def test_delete_of_another_users_device_is_404_and_keeps_it(client, users):
    _, alice = await users.headers()
    _, mallory = await users.headers()
    _, reply = await register(client, alice, body())
    response = await client.delete(f"/v1/devices/{reply['device']['id']}", headers=mallory)
    assert response.status == 404
    assert await response.json() == {"error": "Device not found"}
    assert len(await listed(client, alice)) == 1


BAD_BODIES = [
    ({"token": TOKEN}, "channel"),
    (body(channel="android_push"), "channel"),
    (body(channel=1), "channel"),
    (body(channel=None), "channel"),
    ({"channel": "ios_push"}, "token"),
    (body(token=""), "token"),
    (body(token=123), "token"),
    (body(token=None), "token"),
    (body(token="zz" * 16), "token"),
    (body(token="abc" * 11), "token"),  # odd length
    (body(token="ab" * 7), "token"),  # 14 characters
    (body(token="ab" * 101), "token"),  # 202 characters
    (body(token=" " + "ab" * 16), "token"),
    (body(environment=1), "environment"),
    (body(app_version="x" * 51), "app_version"),
    (body(app_version=2), "app_version"),
    (body(device_model="x" * 101), "device_model"),
    (body(device_model=["iPhone"]), "device_model"),
    (body(os_version="x" * 51), "os_version"),
    (body(os_version={"v": 1}), "os_version"),
]


@pytest.mark.parametrize("payload,field", BAD_BODIES)
async def test_invalid_fields_are_400_naming_the_field(client, users, payload, field):
    _, headers = await users.headers()
    status, reply = await register(client, headers, payload)
    assert status == 400
    assert field in reply["error"]
    assert await listed(client, headers) == []


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'"text"', b"null", b"{\"channel\":", b"\xff\xfe"])
async def test_a_body_that_is_not_a_json_object_is_400(client, users, raw):
    _, headers = await users.headers()
    response = await client.post("/v1/devices", data=raw, headers=headers)
    assert response.status == 400
    assert "JSON" in (await response.json())["error"]


async def test_boundaries_of_the_rules_are_accepted(client, users):
    _, headers = await users.headers()
    for payload in (
        body("ab" * 8), body("AB" * 100),
        body("cd" * 16, app_version="x" * 50, device_model="y" * 100, os_version="z" * 50),
        body("ef" * 16, app_version=None, device_model=None, os_version=None, unknown_field=[1]),
    ):
        status, _ = await register(client, headers, payload)
        assert status == 201
    assert len(await listed(client, headers)) == 4


async def test_a_body_over_64_kib_is_413(client, users):
    _, headers = await users.headers()
    payload = body(padding="x" * (64 * 1024))
    status, reply = await register(client, headers, payload)
    assert status == 413
    assert "error" in reply
    assert await listed(client, headers) == []


async def test_unknown_routes_and_methods_answer_json(client, users):
    _, headers = await users.headers()
    missing = await client.get("/v1/nothing-here", headers=headers)
    assert missing.status == 404 and await missing.json() == {"error": "Not found"}
    wrong = await client.put("/v1/devices", headers=headers)
    assert wrong.status == 405 and "error" in await wrong.json()


async def test_healthz(client):
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_200_concurrent_registrations_of_one_token_by_20_users_make_one_row(client, users):
    callers = [await users.headers() for _ in range(20)]
    replies = await asyncio.gather(*(
        register(client, callers[n % 20][1], body(TOKEN, app_version=str(n))) for n in range(200)
    ))
    assert [status for status, _ in replies] == [201] * 200
    assert len({reply["device"]["id"] for _, reply in replies}) == 1
    lists = await asyncio.gather(*(listed(client, headers) for _, headers in callers))
    assert sorted(len(devices) for devices in lists) == [0] * 19 + [1]
    rows = await client.app[STORE].execute("SELECT user_id FROM user_devices WHERE token = $1", TOKEN)
    assert len(rows) == 1


async def test_500_concurrent_distinct_registrations_are_all_stored(client, users):
    callers = [await users.headers() for _ in range(10)]
    replies = await asyncio.gather(*(
        register(client, callers[n % 10][1], body(f"{n:064x}")) for n in range(500)
    ))
    assert [status for status, _ in replies] == [201] * 500
    lists = await asyncio.gather(*(listed(client, headers) for _, headers in callers))
    assert [len(devices) for devices in lists] == [50] * 10
    assert len({d["id"] for devices in lists for d in devices}) == 500
