"""The Owlmetry iOS app (owlmetry/owlmetry-ios 87c9868) as a client, call by call: its exact
requests (research field-2026-12 §8) and its answers decoded the way its Swift models decode
them, on both backends. A field the app declares required must be there with its type; an
optional one may be absent or null; anything else is ignored, as JSONDecoder ignores it."""

import uuid

import pytest

from owlmetry.clock import now_ms
from owlmetry.http.context import STORE
from owlmetry.store import NotificationContent
from tests.http.test_auth import make_key

STRING, BOOL, INT = str, bool, int


class Optional:
    def __init__(self, kind):
        self.kind = kind


def decode(value, model, where="$"):
    """Fail as Swift's JSONDecoder would on `value` against `model` (a dict of fields, a list
    of one model, a dict-of model `{str: model}`, or a type)."""
    if isinstance(model, Optional):
        if value is not None:
            decode(value, model.kind, where)
        return
    if isinstance(model, list):
        assert isinstance(value, list), f"{where}: expected an array"
        for i, item in enumerate(value):
            decode(item, model[0], f"{where}[{i}]")
        return
    if isinstance(model, dict) and set(model) == {str}:
        assert isinstance(value, dict), f"{where}: expected a dictionary"
        for key, item in value.items():
            decode(item, model[str], f"{where}.{key}")
        return
    if isinstance(model, dict):
        assert isinstance(value, dict), f"{where}: expected an object"
        for name, kind in model.items():
            if not isinstance(kind, Optional):
                assert name in value, f"{where}.{name}: required by the app, missing"
            decode(value.get(name), kind, f"{where}.{name}")
        return
    assert isinstance(value, model) and not (model is INT and isinstance(value, bool)), \
        f"{where}: expected {model.__name__}, got {value!r}"


# The app's models (snake_case keys on the wire, converted by its decoder).
DEVICE_ENVELOPE = {"device": {"id": STRING}}
NOTIFICATION = {"id": STRING, "type": STRING, "title": STRING, "body": Optional(STRING),
                "link": Optional(STRING), "team_id": Optional(STRING),
                "read_at": Optional(STRING), "created_at": STRING}
INBOX_PAGE = {"notifications": [NOTIFICATION], "cursor": Optional(STRING),
              "has_more": Optional(BOOL)}
UNREAD_COUNT = {"count": INT}
MARKED = {"marked": INT}
ANY_OBJECT: dict = {}
PREFERENCES_ENVELOPE = {"user": {"preferences": Optional(
    {"notifications": Optional({"types": Optional({str: {str: BOOL}})})})}}
DASHBOARD_ENVELOPE = {"user": {"preferences": Optional({"ui": Optional({"dashboard": Optional(
    {"magnitudeWindowHours": Optional(INT)})})})}}


class App:
    """The app's APIClient: Bearer JWT, JSON bodies, `{"error"}` decoded on failure."""

    def __init__(self, client, jwt):
        self.client = client
        self.headers = {"Authorization": f"Bearer {jwt}", "Accept": "application/json"}

    async def call(self, method, path, model, *, json=None, params=None, status=200):
        response = await self.client.request(method, path, json=json, params=params,
                                             headers=self.headers)
        body = await response.json()
        assert response.status == status, body
        decode(body, model)
        return body


@pytest.fixture
async def app(client, users):
    user_id, jwt = await users.create("owner@example.com")
    the_app = App(client, jwt)
    the_app.user_id = user_id
    return the_app


async def test_the_app_registers_its_device_as_it_does_today(app):
    token = uuid.uuid4().hex + uuid.uuid4().hex  # 64 lower-case hex, as the app sends it
    body = {"channel": "mobile_push", "platform": "ios", "token": token,
            "environment": "production", "app_version": "1.4", "device_model": "iPhone16,2",
            "os_version": "18.1"}
    first = await app.call("POST", "/v1/devices", DEVICE_ENVELOPE, json=body, status=201)
    again = await app.call("POST", "/v1/devices", DEVICE_ENVELOPE, json=body, status=201)
    assert first["device"]["id"] == again["device"]["id"]
    assert first["device"]["platform"] == "ios"


async def test_the_app_reads_and_works_its_inbox(app, client):
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for offset, notification_id in enumerate(ids):
        await client.app[STORE].enqueue_notifications(
            [(notification_id, app.user_id)],
            NotificationContent("feedback.new", f"Feedback {offset}", link=f"/f/{offset}"),
            [], now_ms() + offset)

    # The list, as NotificationsService asks for it: absent parameters omitted, limit 50.
    page = await app.call("GET", "/v1/notifications", INBOX_PAGE, params={"limit": "50"})
    assert [n["id"] for n in page["notifications"]] == ids[::-1]
    unread = await app.call("GET", "/v1/notifications", INBOX_PAGE,
                            params={"read_state": "unread", "type": "feedback.new",
                                    "limit": "2"})
    assert len(unread["notifications"]) == 2 and unread["has_more"] is True
    rest = await app.call("GET", "/v1/notifications", INBOX_PAGE,
                          params={"read_state": "unread", "type": "feedback.new",
                                  "cursor": unread["cursor"], "limit": "2"})
    assert [n["id"] for n in rest["notifications"]] == [ids[0]]
    assert (await app.call("GET", "/v1/notifications/unread-count", UNREAD_COUNT))["count"] == 3

    await app.call("PATCH", f"/v1/notifications/{ids[0]}", ANY_OBJECT, json={"read": True})
    assert (await app.call("GET", "/v1/notifications/unread-count", UNREAD_COUNT))["count"] == 2
    marked = await app.call("POST", "/v1/notifications/mark-all-read", MARKED,
                            json={"type": None})
    assert marked["marked"] == 2
    await app.call("DELETE", f"/v1/notifications/{ids[1]}", ANY_OBJECT)
    page = await app.call("GET", "/v1/notifications", INBOX_PAGE, params={"limit": "50"})
    assert [n["id"] for n in page["notifications"]] == [ids[2], ids[0]]
    assert all(n["read_at"] for n in page["notifications"])


async def test_the_app_reads_and_switches_its_notification_preferences(app):
    me = await app.call("GET", "/v1/auth/me", PREFERENCES_ENVELOPE)
    assert me["user"]["preferences"]["notifications"]["types"] == {}
    # One type and channel per PATCH, as NotificationPreferencesView sends them.
    for type_, channel, value in [("issue.new", "email", True), ("issue.new", "mobile_push", False),
                                  ("feedback.new", "in_app", False)]:
        await app.call("PATCH", "/v1/auth/me", PREFERENCES_ENVELOPE, json={
            "preferences": {"notifications": {"types": {type_: {channel: value}}}}})
    me = await app.call("GET", "/v1/auth/me", PREFERENCES_ENVELOPE)
    assert me["user"]["preferences"]["notifications"]["types"] == {
        "issue.new": {"email": True, "mobile_push": False}, "feedback.new": {"in_app": False}}


async def test_the_app_keeps_its_dashboard_window_in_its_preferences(app):
    # Sent without snake-casing: the key is literally camelCase on the wire.
    await app.call("PATCH", "/v1/auth/me", DASHBOARD_ENVELOPE, json={
        "preferences": {"ui": {"dashboard": {"magnitudeWindowHours": 168}}}})
    me = await app.call("GET", "/v1/auth/me", DASHBOARD_ENVELOPE)
    assert me["user"]["preferences"]["ui"]["dashboard"]["magnitudeWindowHours"] == 168


async def test_the_app_decodes_errors_as_error_objects(app, client):
    for method, path, body in [("POST", "/v1/devices", {"channel": "mobile_push", "token": "ab"}),
                               ("PATCH", "/v1/auth/me", {"preferences": {"x": 1}}),
                               ("DELETE", f"/v1/notifications/{uuid.uuid4()}", None)]:
        response = await client.request(method, path, json=body, headers=app.headers)
        assert response.status in (400, 404)
        decode(await response.json(), {"error": STRING})
    key = await make_key(client.app, "server")
    refused = await client.get("/v1/devices", headers={"Authorization": f"Bearer {key}"})
    assert refused.status == 403
    decode(await refused.json(), {"error": STRING})
