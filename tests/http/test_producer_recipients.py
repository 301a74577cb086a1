"""Ids are ids whatever their spelling, and no recipient is dropped in silence (both backends).

A producer may send a user's id in upper case, braced or as a `urn:uuid:` URN: the user gets the
notification, once. Ids that name no user come back in `unknown_user_ids`, as sent. Device and
notification ids in paths are taken in the same spellings.
"""

import asyncio
import uuid

import pytest

from owlmetry.clock import iso_ms, now_ms
from owlmetry.http import producer
from owlmetry.http.context import STORE
from owlmetry.idempotency import HOUR_MS
from owlmetry.ids import normalize_id
from owlmetry.notify import dispatcher
from owlmetry.store import DatabaseUnavailable
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


async def post_a_mixed_list_and_check_the_answer(client, users, scheduled=False) -> None:
    """POST three users named in several spellings, twice over, among strangers and junk (for
    now, or `scheduled` an hour ahead); the answer and the inboxes (or the held recipients)
    must be those of one lookup of the whole list."""
    secret = await make_key(client.app, "server")
    first, _ = await users.create()
    second, _ = await users.create()
    third, _ = await users.create()
    stranger = str(uuid.uuid4())
    sent = [second, "nope", first.upper(), stranger, third, "{" + second + "}", "nope",
            first, "urn:uuid:" + third, stranger.upper()]
    request = {**GOOD, "user_ids": sent}
    if scheduled:
        request["send_at"] = iso_ms(now_ms() + HOUR_MS)

    status, reply = await post(client, request, secret)

    assert status == 202
    assert reply["unknown_user_ids"] == ["nope", stranger, stranger.upper()]
    store = client.app[STORE]
    if scheduled:
        held = dict(await store.execute(
            "SELECT notification_id, user_id FROM scheduled_recipients"))
        owners = [held[notification_id] for notification_id in reply["notification_ids"]]
    else:
        owners = []
        for notification_id in reply["notification_ids"]:
            for user_id in (first, second, third):
                inbox = await store.list_notifications(user_id, "all", None, None, 10)
                owners += [user_id for n in inbox if n.id == notification_id]
    assert owners == [second, first, third]


@pytest.mark.parametrize("scheduled", [False, True], ids=["now", "scheduled"])
async def test_a_long_list_is_read_in_slices_with_the_same_answer(
        client, users, monkeypatch, scheduled):
    # Slices of 3: repeats, spellings and strangers land in different slices than their twins.
    monkeypatch.setattr(producer, "RECIPIENT_SLICE", 3)
    monkeypatch.setattr(dispatcher, "ENQUEUE_SLICE", 2)
    await post_a_mixed_list_and_check_the_answer(client, users, scheduled)


async def test_a_send_now_looks_nobody_up_before_its_enqueue(client, users, monkeypatch):
    # The enqueue's own write is the check of who is a user: no lookup of the list before it.
    store = client.app[STORE]
    looked_up = []

    async def existing_user_ids(user_ids):
        looked_up.append(user_ids)
        return set()

    monkeypatch.setattr(store, "existing_user_ids", existing_user_ids)
    await post_a_mixed_list_and_check_the_answer(client, users)
    assert looked_up == []


async def test_the_recipients_lookups_are_out_together_and_answer_in_order(
        client, users, monkeypatch):
    # A send held for later is checked before it is held (its recipients' rows refer to
    # users). Slices of one id (the list names four: three users and a stranger), 3 lookups at
    # a time: the first lookup is held until the third has begun (one after the other, it
    # never would), and the answer is the one-at-a-time one.
    monkeypatch.setattr(producer, "RECIPIENT_SLICE", 1)
    monkeypatch.setattr(producer, "RECIPIENT_READS", 3)
    store = client.app[STORE]
    lookup = store.existing_user_ids
    begun, out, most_out = asyncio.Event(), [0], [0]

    async def existing_user_ids(user_ids):
        out[0] += 1
        most_out[0] = max(most_out[0], out[0])
        if out[0] == 3:
            begun.set()
        await asyncio.wait_for(begun.wait(), 30)
        try:
            return await lookup(user_ids)
        finally:
            out[0] -= 1

    monkeypatch.setattr(store, "existing_user_ids", existing_user_ids)
    await post_a_mixed_list_and_check_the_answer(client, users, scheduled=True)
    assert most_out[0] == 3


async def test_a_failed_lookup_fails_the_request_and_leaves_none_running(
        client, users, monkeypatch):
    monkeypatch.setattr(producer, "RECIPIENT_SLICE", 1)
    store = client.app[STORE]
    secret = await make_key(client.app, "server")
    user_ids = [(await users.create())[0] for _ in range(6)]
    lookup, calls = store.existing_user_ids, []

    async def existing_user_ids(ids):
        calls.append(ids)
        if len(calls) == 2:
            raise DatabaseUnavailable("unreachable", "the test's")
        return await lookup(ids)

    monkeypatch.setattr(store, "existing_user_ids", existing_user_ids)
    status, _ = await post(client, {**GOOD, "user_ids": user_ids,
                                    "send_at": iso_ms(now_ms() + HOUR_MS)}, secret)

    assert status == 503
    running = [task for task in asyncio.all_tasks()
               if "existing_user_ids" in repr(task.get_coro())]
    assert running == []
    assert await store.execute("SELECT count(*) FROM scheduled_sends") == [(0,)]
