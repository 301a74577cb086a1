"""The inbox routes of section 4 as a user and their app see them, on both backends.

Notifications are written straight into the store (no channels, so no delivery work), with
chosen `created_at` values so that order and ties are known.
"""

import re
import uuid

import jwt
import pytest

from owlmetry.clock import iso_ms, now_ms
from owlmetry.credentials import create_api_key
from owlmetry.http.context import STORE, TOKENS
from owlmetry.store import NotificationContent

ISO_MS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
NOTIFICATION_KEYS = {"id", "type", "title", "body", "link", "team_id", "read_at", "created_at"}
BASE = 1705312800000  # 2024-01-15T10:00:00.000Z
MISSING = "00000000-0000-4000-8000-000000000000"
NOT_FOUND = {"error": "Notification not found"}
ROUTES = [
    ("GET", "/v1/notifications"),
    ("GET", "/v1/notifications/unread-count"),
    ("POST", "/v1/notifications/mark-all-read"),
    ("PATCH", f"/v1/notifications/{MISSING}"),
    ("DELETE", f"/v1/notifications/{MISSING}"),
]


async def notify(client, user_id, now=BASE, count=1, type="comment", **content) -> list[str]:
    """`count` notifications for one user, all created at `now`; their ids."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    written = await client.app[STORE].enqueue_notifications(
        [(notification_id, user_id) for notification_id in ids],
        NotificationContent(type=type, title=content.pop("title", "Hello"), **content), [], now)
    assert written == ids
    return ids


async def inbox(client, headers, **params):
    response = await client.get("/v1/notifications", params=params, headers=headers)
    return response.status, await response.json()


async def listed(client, headers, **params) -> list[dict]:
    status, reply = await inbox(client, headers, limit="200", **params)
    assert status == 200 and reply["has_more"] is False
    return reply["notifications"]


async def ids_listed(client, headers, **params) -> list[str]:
    return [n["id"] for n in await listed(client, headers, **params)]


async def walk(client, headers, limit, **params) -> list[dict]:
    """Every page of the inbox, checking each page's shape; all the notifications, in order."""
    seen, cursor = [], None
    while True:
        query = dict(params, limit=str(limit), **({"cursor": cursor} if cursor else {}))
        status, reply = await inbox(client, headers, **query)
        assert status == 200
        assert set(reply) == {"notifications", "cursor", "has_more"}
        page = reply["notifications"]
        seen += page
        if not reply["has_more"]:
            assert reply["cursor"] is None
            assert len(page) <= limit
            return seen
        assert len(page) == limit
        assert reply["cursor"] == f"{page[-1]['created_at']}|{page[-1]['id']}"
        cursor = reply["cursor"]
        assert len(seen) <= 1000, "the pages never end"


async def unread(client, headers) -> int:
    response = await client.get("/v1/notifications/unread-count", headers=headers)
    assert response.status == 200
    reply = await response.json()
    assert set(reply) == {"count"}
    return reply["count"]


async def patch(client, headers, notification_id, payload=None, data=None):
    response = await client.patch(
        f"/v1/notifications/{notification_id}", json=payload, data=data, headers=headers)
    return response.status, await response.json()


async def delete(client, headers, notification_id):
    response = await client.delete(f"/v1/notifications/{notification_id}", headers=headers)
    return response.status, await response.json()


async def mark_all(client, headers, payload=None, data=None):
    response = await client.post(
        "/v1/notifications/mark-all-read", json=payload, data=data, headers=headers)
    return response.status, await response.json()


def newest_first(created: list[tuple[int, str]]) -> list[str]:
    return [notification_id for _, notification_id in sorted(created, reverse=True)]


# ---- What a notification looks like ----------------------------------------------------------

async def test_a_notification_has_exactly_the_contract_keys_and_never_its_data(client, users):
    user_id, headers = await users.headers()
    (notification_id,) = await notify(
        client, user_id, BASE + 7, type="mention", title="Alice mentioned you", body="In #general",
        link="https://example.com/c/1", team_id="team-1", data={"secret_marker": "s3cr3t"})
    (plain_id,) = await notify(client, user_id, BASE)
    status, reply = await inbox(client, headers)
    assert status == 200
    assert reply == {
        "notifications": [
            {
                "id": notification_id, "type": "mention", "title": "Alice mentioned you",
                "body": "In #general", "link": "https://example.com/c/1", "team_id": "team-1",
                "read_at": None, "created_at": "2024-01-15T10:00:00.007Z",
            },
            {
                "id": plain_id, "type": "comment", "title": "Hello", "body": None, "link": None,
                "team_id": None, "read_at": None, "created_at": "2024-01-15T10:00:00.000Z",
            },
        ],
        "cursor": None,
        "has_more": False,
    }
    before = now_ms()
    status, patched = await patch(client, headers, notification_id, {"read": True})
    assert status == 200 and set(patched) == {"notification"}
    shown = patched["notification"]
    assert set(shown) == NOTIFICATION_KEYS
    assert ISO_MS.fullmatch(shown["read_at"]) and shown["read_at"] >= iso_ms(before)
    assert "s3cr3t" not in str(reply) + str(patched)
    assert (await listed(client, headers))[0] == shown


async def test_an_empty_inbox(client, users):
    _, headers = await users.headers()
    assert await inbox(client, headers) == (
        200, {"notifications": [], "cursor": None, "has_more": False})
    assert await unread(client, headers) == 0


# ---- Order and pages -------------------------------------------------------------------------

async def test_the_list_is_newest_first_by_created_at_then_id(client, users):
    user_id, headers = await users.headers()
    created = []
    for offset in (5, 0, 9, 5, 9, 1, 5):  # out of order, with ties
        for notification_id in await notify(client, user_id, BASE + offset):
            created.append((BASE + offset, notification_id))
    assert await ids_listed(client, headers) == newest_first(created)


@pytest.mark.parametrize("limit", [1, 2, 5, 6, 7, 24, 25, 200])
async def test_pages_give_every_notification_once_in_order_across_ties(client, users, limit):
    user_id, headers = await users.headers()
    created = []
    # 24 notifications over 6 moments, 4 at each: every page boundary can fall inside a tie.
    for moment in (3, 0, 5, 1, 4, 2):
        for notification_id in await notify(client, user_id, BASE + moment * 1000, count=4):
            created.append((BASE + moment * 1000, notification_id))
    pages = await walk(client, headers, limit)
    assert [n["id"] for n in pages] == newest_first(created)


async def test_a_page_that_ends_exactly_at_the_last_row_says_there_is_no_more(client, users):
    user_id, headers = await users.headers()
    await notify(client, user_id, count=4)
    status, first = await inbox(client, headers, limit="2")
    assert status == 200 and first["has_more"] is True and first["cursor"] is not None
    status, second = await inbox(client, headers, limit="2", cursor=first["cursor"])
    assert status == 200 and len(second["notifications"]) == 2
    assert (second["has_more"], second["cursor"]) == (False, None)


async def test_the_default_page_is_50_and_the_largest_200(client, users):
    user_id, headers = await users.headers()
    await notify(client, user_id, count=201)
    status, reply = await inbox(client, headers)
    assert status == 200 and len(reply["notifications"]) == 50 and reply["has_more"] is True
    status, reply = await inbox(client, headers, limit="200")
    assert status == 200 and len(reply["notifications"]) == 200 and reply["has_more"] is True
    status, rest = await inbox(client, headers, limit="200", cursor=reply["cursor"])
    assert status == 200 and len(rest["notifications"]) == 1 and rest["has_more"] is False


async def test_pages_keep_their_filters(client, users):
    user_id, headers = await users.headers()
    created = []
    for moment in range(10):
        kind = "mention" if moment % 2 else "comment"
        for notification_id in await notify(client, user_id, BASE + moment // 3, type=kind):
            created.append((BASE + moment // 3, notification_id, kind))
    mentions = [n for n in created if n[2] == "mention"]
    for notification_id in [n[1] for n in mentions[:2]]:
        assert (await patch(client, headers, notification_id))[0] == 200
    pages = await walk(client, headers, 1, type="mention", read_state="unread")
    assert [n["id"] for n in pages] == newest_first([n[:2] for n in mentions[2:]])


async def test_any_well_formed_cursor_is_a_position_in_the_keyset(client, users):
    user_id, headers = await users.headers()
    old = await notify(client, user_id, BASE)
    new = await notify(client, user_id, BASE + 1000)
    assert await ids_listed(client, headers, cursor=f"2099-01-01T00:00:00.000Z|{MISSING}") == new + old
    assert await ids_listed(client, headers, cursor=f"2024-01-15T10:00:00.500Z|{MISSING}") == old
    assert await ids_listed(client, headers, cursor=f"1970-01-01T00:00:00.000Z|{MISSING}") == []
    # The cursor of a notification deleted since still marks its place.
    status, first = await inbox(client, headers, limit="1")
    assert status == 200 and first["notifications"][0]["id"] == new[0]
    assert (await delete(client, headers, new[0]))[0] == 200
    assert await ids_listed(client, headers, cursor=first["cursor"]) == old
    assert await ids_listed(client, headers, cursor=first["cursor"].upper()) == old


# ---- Filters ---------------------------------------------------------------------------------

async def test_read_state_filters_read_and_unread(client, users):
    user_id, headers = await users.headers()
    ids = [(await notify(client, user_id, BASE + n))[0] for n in range(5)]
    for notification_id in ids[1:3]:
        assert (await patch(client, headers, notification_id))[0] == 200
    assert await ids_listed(client, headers, read_state="unread") == [ids[4], ids[3], ids[0]]
    assert await ids_listed(client, headers, read_state="read") == [ids[2], ids[1]]
    assert await ids_listed(client, headers, read_state="all") == ids[::-1]
    assert await ids_listed(client, headers) == ids[::-1]
    for n in await listed(client, headers, read_state="read"):
        assert ISO_MS.fullmatch(n["read_at"])
    for n in await listed(client, headers, read_state="unread"):
        assert n["read_at"] is None


async def test_type_is_an_exact_match(client, users):
    user_id, headers = await users.headers()
    mention = await notify(client, user_id, BASE + 2, type="mention")
    comments = await notify(client, user_id, BASE + 1, type="comment", count=2)
    await notify(client, user_id, BASE, type="mention.reply")
    assert await ids_listed(client, headers, type="mention") == mention
    assert sorted(await ids_listed(client, headers, type="comment")) == sorted(comments)
    assert await ids_listed(client, headers, type="Mention") == []
    assert await ids_listed(client, headers, type="ment") == []
    assert await ids_listed(client, headers, type="%") == []
    assert await ids_listed(client, headers, type="") == []
    assert len(await listed(client, headers)) == 4


# ---- Bad parameters --------------------------------------------------------------------------

async def test_a_limit_that_is_not_an_integer_from_1_to_200_is_400(client, users):
    _, headers = await users.headers()
    for limit in ["0", "201", "-1", "1000000000000", "abc", "1.5", "", " 5", "5 ", "+5", "1e2",
                  "5_0", "٥", "0x10"]:
        status, reply = await inbox(client, headers, limit=limit)
        assert status == 400, limit
        assert reply == {"error": "limit must be an integer from 1 to 200"}, limit
    for limit in ["1", "200", "007"]:
        status, _ = await inbox(client, headers, limit=limit)
        assert status == 200, limit


async def test_an_unknown_read_state_is_400_naming_it(client, users):
    _, headers = await users.headers()
    for read_state in ["", "none", "UNREAD", "unread ", "true", "read,unread"]:
        status, reply = await inbox(client, headers, read_state=read_state)
        assert status == 400, read_state
        assert "read_state" in reply["error"], read_state


async def test_a_malformed_cursor_is_400(client, users):
    user_id, headers = await users.headers()
    await notify(client, user_id)
    good_time = "2024-01-15T10:00:00.000Z"
    for cursor in [
        "", "null", "abc", good_time, f"{good_time}|", f"|{MISSING}", f"{good_time}{MISSING}",
        f"{good_time}|not-a-uuid", f"{good_time}|{MISSING}|{MISSING}", f"{MISSING}|{good_time}",
        f"2024-01-15T10:00:00Z|{MISSING}", f"2024-02-30T10:00:00.000Z|{MISSING}",
        f"1705312800000|{MISSING}", f"2024-01-15T10:00:00.000+00:00|{MISSING}",
        f" {good_time}|{MISSING}", f"{good_time}|{MISSING} ", f"{good_time}|{{{MISSING}}}",
    ]:
        status, reply = await inbox(client, headers, cursor=cursor)
        assert (status, reply) == (400, {"error": "Invalid cursor"}), cursor


# ---- Read, unread, unread count --------------------------------------------------------------

async def test_unread_count_follows_read_and_unread(client, users):
    user_id, headers = await users.headers()
    ids = await notify(client, user_id, count=3)
    assert await unread(client, headers) == 3
    status, reply = await patch(client, headers, ids[0], {"read": True})
    assert status == 200 and reply["notification"]["id"] == ids[0]
    assert ISO_MS.fullmatch(reply["notification"]["read_at"])
    assert await unread(client, headers) == 2
    assert (await patch(client, headers, ids[0], {"read": True}))[0] == 200
    assert await unread(client, headers) == 2
    status, reply = await patch(client, headers, ids[0], {"read": False})
    assert status == 200 and reply["notification"]["read_at"] is None
    assert await unread(client, headers) == 3
    assert (await patch(client, headers, ids[1], {"read": False}))[0] == 200  # already unread
    assert await unread(client, headers) == 3


async def test_patch_without_read_marks_read(client, users):
    user_id, headers = await users.headers()
    ids = await notify(client, user_id, count=3)
    for notification_id, kwargs in zip(ids, [{"payload": {}}, {"data": b""},
                                             {"payload": {"other": 1}}]):
        status, reply = await patch(client, headers, notification_id, **kwargs)
        assert status == 200, kwargs
        assert ISO_MS.fullmatch(reply["notification"]["read_at"]), kwargs
    assert await unread(client, headers) == 0


async def test_patch_with_a_bad_body_is_400_and_changes_nothing(client, users):
    user_id, headers = await users.headers()
    (notification_id,) = await notify(client, user_id)
    for kwargs, field in [
        ({"payload": {"read": "yes"}}, "read"), ({"payload": {"read": 1}}, "read"),
        ({"payload": {"read": 0}}, "read"), ({"payload": {"read": None}}, "read"),
        ({"payload": {"read": [True]}}, "read"), ({"payload": [True]}, "JSON"),
        ({"data": b"not json"}, "JSON"), ({"data": b'"read"'}, "JSON"), ({"data": b"null"}, "JSON"),
    ]:
        status, reply = await patch(client, headers, notification_id, **kwargs)
        assert status == 400, kwargs
        assert field in reply["error"], kwargs
    assert await unread(client, headers) == 1


# ---- Mark all read ---------------------------------------------------------------------------

async def test_mark_all_read_marks_every_unread_notification_once(client, users):
    user_id, headers = await users.headers()
    ids = await notify(client, user_id, count=3, type="comment")
    ids += await notify(client, user_id, BASE + 1, count=2, type="mention")
    assert (await patch(client, headers, ids[0]))[0] == 200
    assert (await delete(client, headers, ids[1]))[0] == 200
    assert await mark_all(client, headers) == (200, {"marked": 3})
    assert await unread(client, headers) == 0
    assert await ids_listed(client, headers, read_state="unread") == []
    assert await mark_all(client, headers) == (200, {"marked": 0})
    assert await ids_listed(client, headers, read_state="unread") == []


async def test_mark_all_read_with_a_type_marks_only_that_type(client, users):
    user_id, headers = await users.headers()
    comments = await notify(client, user_id, count=2, type="comment")
    mentions = await notify(client, user_id, BASE + 1, count=3, type="mention")
    assert await mark_all(client, headers, {"type": "mention"}) == (200, {"marked": 3})
    assert await unread(client, headers) == 2
    assert sorted(await ids_listed(client, headers, read_state="unread")) == sorted(comments)
    assert sorted(await ids_listed(client, headers, read_state="read")) == sorted(mentions)
    assert await mark_all(client, headers, {"type": "Comment"}) == (200, {"marked": 0})
    assert await mark_all(client, headers, {"type": "nothing-of-this-type"}) == (200, {"marked": 0})
    assert await unread(client, headers) == 2


async def test_mark_all_read_accepts_no_body_an_empty_object_or_a_null_type(client, users):
    user_id, headers = await users.headers()
    for kwargs in [{"data": b""}, {"data": b"  "}, {"payload": {}}, {"payload": {"type": None}},
                   {"payload": {"unknown": 1}}]:
        await notify(client, user_id, count=2)
        assert await mark_all(client, headers, **kwargs) == (200, {"marked": 2}), kwargs
    assert await unread(client, headers) == 0


async def test_mark_all_read_with_a_bad_body_is_400_and_marks_nothing(client, users):
    user_id, headers = await users.headers()
    await notify(client, user_id, count=2)
    for kwargs, field in [
        ({"payload": {"type": 1}}, "type"), ({"payload": {"type": ["comment"]}}, "type"),
        ({"payload": {"type": {"a": 1}}}, "type"), ({"payload": {"type": True}}, "type"),
        ({"payload": ["comment"]}, "JSON"), ({"data": b"comment"}, "JSON"),
        ({"data": b'"comment"'}, "JSON"), ({"data": b"null"}, "JSON"), ({"data": b"{"}, "JSON"),
    ]:
        status, reply = await mark_all(client, headers, **kwargs)
        assert status == 400, kwargs
        assert field in reply["error"], kwargs
    assert await unread(client, headers) == 2


# ---- Delete ----------------------------------------------------------------------------------

async def test_delete_hides_the_notification_from_every_inbox_route(client, users):
    user_id, headers = await users.headers()
    gone, kept = await notify(client, user_id, count=2)
    assert await delete(client, headers, gone.upper()) == (200, {"id": gone})
    assert await ids_listed(client, headers) == [kept]
    assert await ids_listed(client, headers, read_state="unread") == [kept]
    assert await ids_listed(client, headers, type="comment") == [kept]
    assert await unread(client, headers) == 1
    assert await delete(client, headers, gone) == (404, NOT_FOUND)
    for payload in ({"read": True}, {"read": False}):
        assert await patch(client, headers, gone, payload) == (404, NOT_FOUND)
    assert await mark_all(client, headers) == (200, {"marked": 1})


async def test_a_read_notification_can_be_deleted(client, users):
    user_id, headers = await users.headers()
    (notification_id,) = await notify(client, user_id)
    assert (await patch(client, headers, notification_id))[0] == 200
    assert await delete(client, headers, notification_id) == (200, {"id": notification_id})
    assert await ids_listed(client, headers, read_state="read") == []


# ---- Ownership and ids -----------------------------------------------------------------------

async def test_another_users_notification_is_invisible_and_404(client, users):
    alice_id, alice = await users.headers()
    bob_id, bob = await users.headers()
    (mine,) = await notify(client, alice_id)
    (theirs,) = await notify(client, bob_id, BASE + 1)
    assert await ids_listed(client, bob) == [theirs]
    assert await ids_listed(client, alice) == [mine]
    for payload in ({"read": True}, {"read": False}):
        assert await patch(client, bob, mine, payload) == (404, NOT_FOUND)
    assert await delete(client, bob, mine) == (404, NOT_FOUND)
    assert await mark_all(client, bob) == (200, {"marked": 1})
    assert await unread(client, bob) == 0
    assert await unread(client, alice) == 1
    assert await listed(client, alice) == (await listed(client, alice, read_state="unread"))
    assert await ids_listed(client, alice) == [mine]


@pytest.mark.parametrize("notification_id", [
    MISSING, "not-a-uuid", "12345", f"{{{MISSING}}}", MISSING.replace("-", ""), MISSING + "0",
    "unread-count", "mark-all-read",
])
async def test_an_unknown_or_malformed_id_is_404(client, users, notification_id):
    user_id, headers = await users.headers()
    await notify(client, user_id)
    for payload in ({"read": True}, {"read": False}):
        assert await patch(client, headers, notification_id, payload) == (404, NOT_FOUND)
    assert await delete(client, headers, notification_id) == (404, NOT_FOUND)
    assert await unread(client, headers) == 1


async def test_the_fixed_paths_are_not_taken_for_ids(client, users):
    user_id, headers = await users.headers()
    (notification_id,) = await notify(client, user_id)
    response = await client.get(f"/v1/notifications/{notification_id}", headers=headers)
    assert response.status == 405 and "error" in await response.json()
    response = await client.get("/v1/notifications/mark-all-read", headers=headers)
    assert response.status == 405 and "error" in await response.json()
    response = await client.post("/v1/notifications/unread-count", headers=headers)
    assert response.status == 405 and "error" in await response.json()
    assert await unread(client, headers) == 1


# ---- Who may call ----------------------------------------------------------------------------

async def call(client, method, path, headers=None):
    response = await client.request(method, path, headers=headers or {})
    return response.status, await response.json()


@pytest.mark.parametrize("method,path", ROUTES)
async def test_no_credentials_is_401(client, method, path):
    assert await call(client, method, path) == (401, {"error": "Authentication required"})


@pytest.mark.parametrize("kind", ["agent", "server"])
async def test_an_api_key_is_403_on_every_inbox_route(client, users, kind):
    user_id, _ = await users.headers()
    (notification_id,) = await notify(client, user_id)
    _, secret = await create_api_key(client.app[STORE], str(uuid.uuid4()), kind, None, now_ms())
    headers = {"Authorization": f"Bearer {secret}"}
    for method, path in ROUTES + [("PATCH", f"/v1/notifications/{notification_id}"),
                                  ("DELETE", f"/v1/notifications/{notification_id}")]:
        status, reply = await call(client, method, path, headers)
        assert status == 403, (method, path)
        assert "API keys are not accepted" in reply["error"]


@pytest.mark.parametrize("method,path", ROUTES)
async def test_a_valid_jwt_of_a_user_that_does_not_exist_is_401(client, method, path):
    token = jwt.encode({"sub": str(uuid.uuid4()), "email": "gone@example.com"},
                       client.app[TOKENS]._secret, algorithm="HS256")
    for headers in ({"Authorization": f"Bearer {token}"}, {"Cookie": f"token={token}"}):
        assert await call(client, method, path, headers) == (401, {"error": "User no longer exists"})


async def test_the_token_cookie_works_like_the_header(client, users):
    user_id, token = await users.create()
    (notification_id,) = await notify(client, user_id)
    cookie = {"Cookie": f"token={token}"}
    assert await call(client, "GET", "/v1/notifications/unread-count", cookie) == (200, {"count": 1})
    status, reply = await call(client, "PATCH", f"/v1/notifications/{notification_id}", cookie)
    assert status == 200 and reply["notification"]["read_at"] is not None
