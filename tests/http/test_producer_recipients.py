"""Ids are ids whatever their spelling, and no recipient is dropped in silence (both backends).

A producer may send a user's id in upper case, braced or as a `urn:uuid:` URN: the user gets the
notification, once. Ids that name no user come back in `unknown_user_ids`, as sent. Device and
notification ids in paths are taken in the same spellings.
"""

import uuid

import pytest

from owlmetry.http import producer
from owlmetry.http.context import STORE
from owlmetry.ids import normalize_id
from owlmetry.notify import dispatcher
from tests.http.test_auth import make_key
from tests.http.test_devices import body
from tests.http.test_inbox import notify
from tests.http.test_producer import GOOD, post

ID = "0b6f2c1e-8d4a-4c3e-9f7a-2e5d1c0b9a88"


@pytest.mark.parametrize("spelling", [
    ID, ID.upper(), "{" + ID + "}", "{" + ID.upper() + "}", "urn:uuid:" + ID,
    "URN:UUID:" + ID.upper(), "Urn:Uuid:" + ID,
])
def test_every_spelling_of_a_uuid_is_the_same_id(spelling):
    assert normalize_id(spelling) == ID


@pytest.mark.parametrize("text", [
    "", "nope", ID[:-1], ID + "0", " " + ID, "{" + ID, ID + "}", "urn:uuid:{" + ID + "}",
    ID.replace("-", ""), "urn:" + ID, "{{" + ID + "}}",
])
def test_anything_else_names_no_row(text):
    assert normalize_id(text) is None


async def test_a_user_named_in_any_spelling_is_notified_once(client, users):
    secret = await make_key(client.app, "server")
    user_id, _ = await users.create()
    spellings = [user_id.upper(), "{" + user_id + "}", "urn:uuid:" + user_id, user_id]

    status, reply = await post(client, {**GOOD, "user_ids": spellings}, secret)

    assert status == 202 and reply["unknown_user_ids"] == []
    [notification_id] = reply["notification_ids"]
    inbox = await client.app[STORE].list_notifications(user_id, "all", None, None, 10)
    assert [n.id for n in inbox] == [notification_id]


async def test_unknown_recipients_are_reported_as_sent(client, users):
    secret = await make_key(client.app, "server")
    known, _ = await users.create()
    stranger = str(uuid.uuid4()).upper()
    sent = ["nope", known.upper(), stranger, "nope", "{" + stranger.lower() + "}", ""]

    status, reply = await post(client, {**GOOD, "user_ids": sent}, secret)

    assert status == 202
    assert len(reply["notification_ids"]) == 1
    assert reply["unknown_user_ids"] == ["nope", stranger, "{" + stranger.lower() + "}", ""]


async def test_nobody_known_is_202_with_every_id_reported(client):
    secret = await make_key(client.app, "server")
    stranger = str(uuid.uuid4())
    assert await post(client, {**GOOD, "user_ids": [stranger]}, secret) == (
        202, {"notification_ids": [], "unknown_user_ids": [stranger]})


async def test_device_and_notification_ids_in_paths_take_any_spelling(client, users):
    user_id, headers = await users.headers()
    response = await client.post("/v1/devices", headers=headers, json=body("ab" * 16))
    device_id = (await response.json())["device"]["id"]
    response = await client.delete("/v1/devices/{" + device_id.upper() + "}", headers=headers)
    assert (response.status, await response.json()) == (200, {"id": device_id})

    [notification_id] = await notify(client, user_id)
    response = await client.patch(f"/v1/notifications/urn:uuid:{notification_id.upper()}",
                                  headers=headers, json={"read": True})
    assert response.status == 200
    assert (await response.json())["notification"]["id"] == notification_id


async def test_a_long_list_is_read_in_slices_with_the_same_answer(client, users, monkeypatch):
    # Slices of 3: repeats, spellings and strangers land in different slices than their twins.
    monkeypatch.setattr(producer, "RECIPIENT_SLICE", 3)
    monkeypatch.setattr(dispatcher, "ENQUEUE_SLICE", 2)
    secret = await make_key(client.app, "server")
    first, _ = await users.create()
    second, _ = await users.create()
    third, _ = await users.create()
    stranger = str(uuid.uuid4())
    sent = [second, "nope", first.upper(), stranger, third, "{" + second + "}", "nope",
            first, "urn:uuid:" + third, stranger.upper()]

    status, reply = await post(client, {**GOOD, "user_ids": sent}, secret)

    assert status == 202
    assert reply["unknown_user_ids"] == ["nope", stranger, stranger.upper()]
    store = client.app[STORE]
    owners = []
    for notification_id in reply["notification_ids"]:
        for user_id in (first, second, third):
            inbox = await store.list_notifications(user_id, "all", None, None, 10)
            owners += [user_id for n in inbox if n.id == notification_id]
    assert owners == [second, first, third]
