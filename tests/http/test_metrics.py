"""GET /metrics as an operator reads it: the exposition parsed, on SQLite and on PostgreSQL,
with pushes going to the in-project mock APNs."""

import uuid

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

import owlmetry
from owlmetry.clock import now_ms
from owlmetry.http import metrics
from owlmetry.http.app import create_app
from owlmetry.http.context import DISPATCHER, STORE
from owlmetry.store import DeviceRegistration, Platform
from tests.http.test_auth import make_key
from tests.notify.conftest import token, user_with_devices, wait_done

NOTIFICATION = {"type": "feedback.new", "title": "New feedback", "body": "Someone wrote"}


async def scrape(client) -> tuple[dict, str]:
    """{(sample name, frozenset of label pairs): value} and the exposition's text."""
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    text = await response.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        assert family.documentation, f"{family.name} has no HELP text"
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, text


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def requests(samples: dict, method: str, route: str, status: int) -> float | None:
    return value(samples, "owlmetry_http_requests_total", method=method, route=route,
                 status=str(status))


def family(samples: dict, name: str, label: str = "environment", **where) -> dict:
    """The samples named `name` (and labelled `where`), by the value of their `label`."""
    return {dict(labels)[label]: v for (sample, labels), v in samples.items()
            if sample == name and where.items() <= dict(labels).items()}


def device_body(device_token: str, environment: str = "production") -> dict:
    return {"channel": "ios_push", "token": device_token, "environment": environment}


async def test_requests_are_counted_by_route_template_and_real_status(client, users):
    _, headers = await users.headers()
    agent = {"Authorization": f"Bearer {await make_key(client.app, 'agent')}"}
    created = await client.post("/v1/devices", headers=headers, json=device_body(token(1)))
    assert created.status == 201
    device_id = (await created.json())["device"]["id"]
    calls = [
        ("GET", "/v1/devices", headers, None, 200),
        ("GET", "/v1/devices", {}, None, 401),
        ("GET", "/v1/devices", agent, None, 403),
        ("DELETE", f"/v1/devices/{uuid.uuid4()}", headers, None, 404),
        ("DELETE", f"/v1/devices/{device_id}", headers, None, 200),
        ("GET", f"/no/such/{uuid.uuid4()}", headers, None, 404),
        ("POST", "/v1/devices", headers, b"{" + b" " * 70_000 + b"}", 413),
    ]
    for method, path, call_headers, body, status in calls:
        response = await client.request(method, path, headers=call_headers, data=body)
        assert response.status == status, (method, path)
    await scrape(client)  # a scrape is not a request it counts

    samples, text = await scrape(client)

    assert requests(samples, "POST", "/v1/devices", 201) == 1
    assert requests(samples, "POST", "/v1/devices", 413) == 1
    assert requests(samples, "GET", "/v1/devices", 200) == 1
    assert requests(samples, "GET", "/v1/devices", 401) == 1
    assert requests(samples, "GET", "/v1/devices", 403) == 1
    assert requests(samples, "DELETE", "/v1/devices/{id}", 404) == 1
    assert requests(samples, "DELETE", "/v1/devices/{id}", 200) == 1
    assert requests(samples, "GET", "unmatched", 404) == 1
    # Routes are templates, never paths: ids do not reach the labels; /metrics is not counted.
    routes = {dict(labels)["route"] for (name, labels) in samples
              if name == "owlmetry_http_requests_total"}
    assert routes == {"/v1/devices", "/v1/devices/{id}", "unmatched"}
    assert device_id not in text
    assert value(samples, "owlmetry_http_request_duration_seconds_count",
                 method="DELETE", route="/v1/devices/{id}") == 2
    assert value(samples, "owlmetry_http_request_duration_seconds_bucket",
                 method="GET", route="/v1/devices", le="+Inf") == 3
    build = {dict(labels)["version"] for (name, labels) in samples if name == "owlmetry_build_info"}
    assert build == {owlmetry.__version__}


async def test_the_device_gauge_follows_registrations_and_deletions(client, users):
    _, alice = await users.headers()
    _, bob = await users.headers()
    ids = []
    for headers, device_token, environment in [(alice, token(1), "production"),
                                               (alice, token(2), "sandbox"),
                                               (bob, token(3), "production"),
                                               (bob, token(1), "production")]:  # taken over
        response = await client.post("/v1/devices", headers=headers,
                                     json=device_body(device_token, environment))
        assert response.status == 201
        ids.append((await response.json())["device"]["id"])
    samples, _ = await scrape(client)
    assert family(samples, "owlmetry_registered_devices", channel="ios_push") == {"production": 2, "sandbox": 1}

    assert (await client.delete(f"/v1/devices/{ids[2]}", headers=bob)).status == 200
    android = {"channel": "mobile_push", "platform": "android", "token": "fcm:" + "a" * 150,
               "environment": "sandbox"}
    assert (await client.post("/v1/devices", headers=bob, json=android)).status == 201
    samples, _ = await scrape(client)
    # By the channel a device registered with.
    assert family(samples, "owlmetry_registered_devices", channel="ios_push") == {
        "production": 1, "sandbox": 1}
    assert family(samples, "owlmetry_registered_devices", channel="mobile_push") == {
        "production": 0, "sandbox": 1}
    assert value(samples, "owlmetry_database_up") == 1


async def test_a_fan_out_shows_in_flight_then_pushes_by_outcome(
        config, aiohttp_client, mocks, fcm_mock, mobile_push):  # noqa: F811
    client = await aiohttp_client(create_app(config,
                                             channels={"mobile_push": mobile_push()}))
    store = client.app[STORE]
    secret = await make_key(client.app, "server")
    users = [await user_with_devices(store, ["production", "sandbox"], n * 2) for n in range(5)]
    android = [f"{'dead' if n == 0 else 'fcm'}{n}:APA91b" + "Xy_-" * 36 for n in range(5)]
    for (user_id, _), device_token in zip(users, android, strict=True):
        await store.register_device(str(uuid.uuid4()), user_id, DeviceRegistration(
            "mobile_push", device_token, "production", None, None, None, Platform.ANDROID),
            now_ms())
    dead = [tokens[0] for _, tokens in users[:2]]  # two production tokens Apple gave up on
    for device_token in dead:
        mocks.production.behaviour.unregistered[device_token] = now_ms() + 60_000
    fcm_mock.behaviour.dead_prefixes = ("dead",)  # and one Android token FCM does not know
    # Answers held back long enough to look at the pushes while they are on the wire.
    for mock in (mocks.production, mocks.sandbox, fcm_mock):
        mock.behaviour.latency_s = 2.0
    samples, _ = await scrape(client)
    assert family(samples, "owlmetry_registered_devices", channel="ios_push") == {"production": 5, "sandbox": 5}

    response = await client.post("/v1/notifications", headers={"Authorization": f"Bearer {secret}"},
                                 json={**NOTIFICATION, "user_ids": [u for u, _ in users]})
    ids = (await response.json())["notification_ids"]
    await mocks.production.requests_seen(5)
    await mocks.sandbox.requests_seen(5)
    await fcm_mock.requests_seen(5)
    samples, _ = await scrape(client)

    # FCM's connections are labelled "fcm": one host for both environments.
    assert family(samples, "owlmetry_channel_in_flight") == {
        "production": 5, "sandbox": 5, "fcm": 5}
    assert family(samples, "owlmetry_channel_queued") == {"production": 0, "sandbox": 0, "fcm": 0}
    assert all(n >= 1 for n in family(samples, "owlmetry_channel_connections").values())
    assert value(samples, "owlmetry_dispatcher_devices_in_flight") == 15
    assert value(samples, "owlmetry_dispatcher_deliveries_held") == 5
    # Claimed under a lease: pending, not due.
    assert value(samples, "owlmetry_deliveries_pending", state="later") == 5
    assert value(samples, "owlmetry_deliveries_pending", state="due") == 0

    await wait_done(store, ids)
    await client.app[DISPATCHER].recorder.flush()
    samples, text = await scrape(client)

    assert family(samples, "owlmetry_pushes_total", "outcome") == {
        "delivered": 12, "removed": 3, "failed": 0, "skipped": 0}
    assert value(samples, "owlmetry_deliveries_total", channel="mobile_push", status="sent") == 5
    assert family(samples, "owlmetry_registered_devices", channel="ios_push") == {"production": 3, "sandbox": 5}
    assert family(samples, "owlmetry_channel_in_flight") == {"production": 0, "sandbox": 0,
                                                             "fcm": 0}
    assert all(n >= 1 for n in family(samples, "owlmetry_channel_connections").values())
    assert value(samples, "owlmetry_dispatcher_devices_in_flight") == 0
    assert value(samples, "owlmetry_deliveries_pending", state="later") == 0
    # Nothing secret is exposed: no device token, API key, provider token (JWT) or access token.
    for secret_text in [secret, *(t for _, tokens in users for t in tokens), *android,
                        *(jwt.decode() for jwt in mocks.production.stats.provider_tokens),
                        *(bearer.decode()[7:] for bearer in fcm_mock.stats.provider_tokens)]:
        assert secret_text not in text
    assert "eyJ" not in text  # the start of every JWT


async def test_deliveries_nobody_claims_are_due(config, aiohttp_client, mobile_push):  # noqa: F811
    client = await aiohttp_client(create_app(config,
                                             channels={"mobile_push": mobile_push()}))
    await client.app[DISPATCHER].stop()  # a server whose dispatcher has stopped claiming
    store = client.app[STORE]
    user_ids = [(await user_with_devices(store, ["production"], n))[0] for n in range(3)]
    secret = await make_key(client.app, "server")
    response = await client.post("/v1/notifications", headers={"Authorization": f"Bearer {secret}"},
                                 json={**NOTIFICATION, "user_ids": user_ids})
    assert response.status == 202

    samples, _ = await scrape(client)

    assert value(samples, "owlmetry_deliveries_pending", state="due") == 3
    assert value(samples, "owlmetry_deliveries_pending", state="later") == 0
    assert value(samples, "owlmetry_dispatcher_devices_in_flight") == 0


async def test_without_a_database_the_scrape_still_answers_and_says_so(client, users):
    _, headers = await users.headers()
    assert (await client.get("/v1/devices", headers=headers)).status == 200
    await client.app[STORE].close()  # the database is gone from under the server

    assert (await client.get("/v1/devices", headers=headers)).status == 500
    samples, text = await scrape(client)

    assert value(samples, "owlmetry_database_up") == 0
    assert family(samples, "owlmetry_registered_devices", channel="ios_push") == {}
    assert family(samples, "owlmetry_deliveries_pending", "state") == {}
    assert "Traceback" not in text
    # What the server knows by itself is still there, the failure counted with its status.
    assert requests(samples, "GET", "/v1/devices", 500) == 1
    assert requests(samples, "GET", "/v1/devices", 200) == 1
    assert value(samples, "owlmetry_pushes_total", channel="mobile_push", outcome="delivered") == 0


async def test_a_database_that_hangs_costs_its_families_not_the_scrape(
        client, database_url, monkeypatch):
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite readers are never blocked by a writer (WAL)")
    monkeypatch.setattr(metrics, "STORE_TIMEOUT_S", 0.3)
    blocker = await asyncpg.connect(database_url)
    try:
        locked = blocker.transaction()
        await locked.start()
        await blocker.execute("LOCK TABLE user_devices IN ACCESS EXCLUSIVE MODE")
        samples, _ = await scrape(client)
        assert value(samples, "owlmetry_database_up") == 0
        assert family(samples, "owlmetry_registered_devices", channel="ios_push") == {}
        await locked.rollback()
    finally:
        await blocker.close()

    samples, _ = await scrape(client)
    assert value(samples, "owlmetry_database_up") == 1
    assert family(samples, "owlmetry_registered_devices", channel="ios_push") == {"production": 0, "sandbox": 0}
