"""Hostile input on every route (both backends): each field of each route's valid request
replaced by a value of every wrong kind, and dropped; bodies that are not JSON objects; query
and path parameters and headers out of every range. Each answer is a 2xx the value happens to
earn or a 4xx with a JSON `{"error": ...}`, never a 5xx or a traceback; the server logs no
unhandled exception; no answer or log line holds a device token, an API key or a session
whole; and what users had before is still there afterwards.

The values are a fixed list, not random draws: a failure names the request that caused it, and
the same run finds it again.
"""

import logging

import aiohttp
import pytest
from aiohttp import web

from owlmetry.clock import iso_ms, now_ms
from owlmetry.http.app import create_app
from owlmetry.http.context import STORE
from owlmetry.http.serving import AppRunner
from tests.conftest import Users
from tests.http.test_auth import make_key
from tests.http.test_producer import GOOD

# A value of every JSON kind, and strings at every edge the server has a rule for.
VALUES = [
    None, True, False, 0, -1, 1.5, 2**63, -(2**63) - 1, 10**30, 1e308,
    "", " ", "x" * 70_000, "\u0000", "\ud800", "\U0001F600", "é" * 300, "../../etc/passwd",
    "%00", "2026-13-45T99:99:99Z", "1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
    [], [None], ["x"] * 3, [[[]]], {}, {"a": {"b": {"c": None}}}, {"": ""},
]
RAW_BODIES = [
    b"", b"{", b"}", b"\xff\xfe\x00", b"null", b"[]", b"1", b'"text"', b"[" * 5_000,
    b'{"a": NaN}', b'{"a": 1e999}', b'{"a": 1, "a": 2}', b"\xef\xbb\xbf{}", b'{"\\ud800": 1}',
]
QUERY_VALUES = ["", "-1", "0", "1.5", "abc", "99999999999999999999", "%00", "é", "x" * 3_000,
                "true", "null", "[]"]
PATH_IDS = ["abc", "x" * 3_000, "%2e%2e", "00000000-0000-0000-0000-000000000000", "%00", "é",
            "-1", "null"]
AUTHORIZATIONS = ["Bearer", "Bearer ", "Bearer " + "x" * 10_000, "Basic YTpi", "Bearer a.b.c",
                  "Bearer eyJhbGciOiJub25lIn0.e30.", "bearer", "Bearer \t"]

DEVICE = {"channel": "mobile_push", "platform": "ios", "token": "ab" * 32,
          "environment": "production", "app_version": "1.4", "device_model": "iPhone16,2",
          "os_version": "18.1"}
PREFERENCES = {"preferences": {"notifications": {"types": {"t": {"email": False}}}}}


def variants(valid: dict) -> list:
    """`valid` with each field replaced by each of VALUES, and without it; plus an unknown
    field, and each field's value nested one level down."""
    bodies = []
    for name in valid:
        bodies += [{**valid, name: value} for value in VALUES]
        bodies.append({key: value for key, value in valid.items() if key != name})
        bodies.append({**valid, name: {name: valid[name]}})
    bodies.append({**valid, "unknown_field": VALUES})
    return bodies


class Checker:
    def __init__(self, client):
        self.client = client
        self.seen = 0
        self.answers: list[str] = []

    async def call(self, method: str, path: str, headers: dict, **kwargs) -> int:
        response = await self.client.request(method, path, headers=headers, **kwargs)
        text = await response.text()
        self.answers.append(text)
        what = f"{method} {path[:80]} {str(kwargs)[:200]} {str(headers)[:80]}"
        assert response.status < 500, f"{response.status} for {what}: {text[:300]}"
        assert "Traceback" not in text, what
        if response.status >= 400:
            error = (await response.json()).get("error")
            assert isinstance(error, str) and error, what
        self.seen += 1
        return response.status

    async def bodies(self, method: str, path: str, headers: dict, valid: dict,
                     base: int = 299) -> None:
        """`valid` (answered `base` at most: the variants' base is a request the route takes)
        and its `variants`, then raw bodies."""
        assert await self.call(method, path, headers, json=valid) <= base, path
        for body in variants(valid):
            await self.call(method, path, headers, json=body)
        json_headers = {**headers, "Content-Type": "application/json"}
        for raw in RAW_BODIES:
            await self.call(method, path, json_headers, data=raw)
        await self.call(method, path, {**headers, "Content-Type": "text/plain"}, data=b"{}")

    async def queries(self, path: str, headers: dict, names: list[str]) -> None:
        for name in names:
            for value in QUERY_VALUES:
                await self.call("GET", path, headers, params={name: value})
            await self.call("GET", f"{path}?{name}=1&{name}=2", headers)

    async def path_ids(self, method: str, template: str, headers: dict, **kwargs) -> None:
        for bad in PATH_IDS:
            await self.call(method, template.replace("{id}", bad), headers, **kwargs)

    async def authorizations(self, method: str, path: str, **kwargs) -> None:
        for value in AUTHORIZATIONS:
            await self.call(method, path, {"Authorization": value}, **kwargs)
        await self.call(method, path, {"Cookie": "owlmetry_session=" + "x" * 5_000}, **kwargs)


@pytest.fixture
async def served(config):
    """The app on the runner `owlmetry serve` uses (its own connections answer what aiohttp's
    parser refuses), and a client session to it."""
    app = create_app(config)
    runner = AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    async with aiohttp.ClientSession(f"http://127.0.0.1:{runner.addresses[0][1]}") as session:
        yield app, session
    await runner.cleanup()


@pytest.fixture
def logged(caplog):
    """Everything logged meanwhile, every level."""
    caplog.set_level(logging.DEBUG)
    return caplog


async def test_no_hostile_request_gets_a_server_error_or_loses_what_was_stored(
        served, logged):
    app, client = served
    store = app[STORE]
    user_id, user = await Users(app).headers()
    secret = await make_key(app, "server")
    server = {"Authorization": f"Bearer {secret}"}
    check = Checker(client)
    assert await check.call("POST", "/v1/devices", user, json=DEVICE) == 201
    response = await client.post("/v1/notifications", headers=server,
                                 json={**GOOD, "user_ids": [user_id]})
    notification_id = (await response.json())["notification_ids"][0]
    before = [device.id for device in await store.list_devices(user_id)]

    # The user's routes.
    await check.bodies("POST", "/v1/devices", user, DEVICE)
    await check.bodies("PATCH", "/v1/auth/me", user, PREFERENCES)
    await check.bodies("POST", "/v1/notifications/mark-all-read", user, {"type": "t"})
    await check.bodies("PATCH", f"/v1/notifications/{notification_id}", user, {"read": True})
    await check.queries("/v1/notifications", user, ["read", "type", "cursor", "limit"])
    for method, template in (("DELETE", "/v1/devices/{id}"),
                             ("DELETE", "/v1/notifications/{id}"),
                             ("PATCH", "/v1/notifications/{id}")):
        await check.path_ids(method, template, user, json={"read": True})
    for method, path in (("GET", "/v1/devices"), ("GET", "/v1/auth/me"),
                         ("GET", "/v1/notifications"), ("GET", "/v1/notifications/unread-count")):
        await check.authorizations(method, path)

    # The producer's routes.
    await check.bodies("POST", "/v1/notifications", server,
                       {**GOOD, "user_ids": [user_id], "send_at": iso_ms(now_ms() + 86_400_000),
                        "priority": 5, "collapse_id": "c", "badge": "unread",
                        "ttl_seconds": 60, "sound": "default", "relevance_score": 0.5})
    for key in ["", "x" * 1_000, "é", " "]:
        await check.call("POST", "/v1/notifications", {**server, "Idempotency-Key": key},
                         json={**GOOD, "user_ids": [user_id]})
    await check.bodies("POST", "/v1/notifications/deliveries", server,
                       {"ids": [notification_id], "cursor": None, "limit": 10})
    await check.queries("/v1/notifications/deliveries", server, ["ids", "cursor", "limit"])
    await check.queries(f"/v1/notifications/{notification_id}/deliveries", server,
                        ["cursor", "limit"])
    await check.path_ids("GET", "/v1/notifications/{id}/deliveries", server)
    await check.path_ids("POST", "/v1/notifications/{id}/cancel", server)
    await check.authorizations("POST", "/v1/notifications", json={**GOOD, "user_ids": [user_id]})

    # Signing in.
    await check.bodies("POST", "/v1/auth/send-code", {}, {"email": "someone@example.com"})
    await check.bodies("POST", "/v1/auth/verify-code", {},
                       {"email": "someone@example.com", "code": "123456"}, base=401)

    assert check.seen > 1_000  # every loop above ran
    assert [record for record in logged.records if record.exc_info] == []
    session = user["Authorization"].removeprefix("Bearer ")
    for whole in (DEVICE["token"], secret, session):
        assert not any(whole in text for text in check.answers)
        assert whole not in logged.text
    assert (await client.get("/healthz")).status == 200
    devices = [device.id for device in await store.list_devices(user_id)]
    assert set(before) <= set(devices)
    inbox = await (await client.get("/v1/notifications", headers=user)).json()
    assert notification_id in [item["id"] for item in inbox["notifications"]]
