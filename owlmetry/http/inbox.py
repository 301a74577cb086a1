"""The user's inbox: `GET /v1/notifications`, `GET /v1/notifications/unread-count`,
`POST /v1/notifications/mark-all-read`, `PATCH /v1/notifications/{id}` and
`DELETE /v1/notifications/{id}` (user-only).

Owns the query and body rules of these routes, the keyset cursor's text
(`<created_at as 2024-01-15T10:00:00.000Z>|<id>`) and the notification's JSON shape, which never
carries `data`. It must not create notifications: the producer route (`POST /v1/notifications`,
server keys) lives in `producer.py`.
"""

import re

from aiohttp import web

from owlmetry.clock import iso_ms, now_ms, parse_iso_ms
from owlmetry.http.auth import callers, user_gone
from owlmetry.http.context import CALLER, STORE
from owlmetry.http.errors import ApiError, json_response
from owlmetry.http.validation import (
    parse_optional_json_object,
    path_uuid,
    query_text,
)
from owlmetry.ids import UUID_TEXT
from owlmetry.store import DeleteResult, Missing, Notification, ReadState

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
LIMIT_TEXT = re.compile(r"[0-9]{1,9}")
NOT_FOUND = "Notification not found"


def notification_json(notification: Notification) -> dict:
    return {
        "id": notification.id,
        "type": notification.type,
        "title": notification.title,
        "body": notification.body,
        "link": notification.link,
        "team_id": notification.team_id,
        "read_at": iso_ms(notification.read_at) if notification.read_at is not None else None,
        "created_at": iso_ms(notification.created_at),
    }


def cursor_of(notification: Notification) -> str:
    return f"{iso_ms(notification.created_at)}|{notification.id}"


def parse_cursor(text: str) -> tuple[int, str]:
    """The (created_at, id) keyset a cursor from `cursor_of` names; 400 for anything else."""
    created_at, separator, notification_id = text.partition("|")
    if not separator or not UUID_TEXT.fullmatch(notification_id):
        raise ApiError(400, "Invalid cursor")
    try:
        return parse_iso_ms(created_at), notification_id.lower()
    except ValueError:
        raise ApiError(400, "Invalid cursor") from None


def parse_limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not LIMIT_TEXT.fullmatch(text) or not 1 <= int(text) <= MAX_LIMIT:
        raise ApiError(400, f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(text)


@callers("user")
async def list_notifications(request: web.Request) -> web.Response:
    user_id = request[CALLER].user_id
    query = request.query
    try:
        read_state = ReadState(query.get("read_state", ReadState.ALL))
    except ValueError:
        raise ApiError(400, 'read_state must be "unread", "read" or "all"') from None
    type_ = query_text(request, "type")
    cursor = query.get("cursor")
    before = parse_cursor(cursor) if cursor is not None else None
    limit = parse_limit(query.get("limit"))
    # One row more than the page tells whether another page follows.
    rows = await request.app[STORE].list_notifications(user_id, read_state, type_, before, limit + 1)
    if rows is None:
        raise user_gone()
    page, has_more = rows[:limit], len(rows) > limit
    return json_response({
        "notifications": [notification_json(notification) for notification in page],
        "cursor": cursor_of(page[-1]) if has_more else None,
        "has_more": has_more,
    })


@callers("user")
async def unread_count(request: web.Request) -> web.Response:
    count = await request.app[STORE].unread_count(request[CALLER].user_id)
    if count is None:
        raise user_gone()
    return json_response({"count": count})


@callers("user")
async def mark_all_read(request: web.Request) -> web.Response:
    user_id = request[CALLER].user_id
    type_ = parse_optional_json_object(await request.read()).get("type")
    if type_ is not None and not isinstance(type_, str):
        raise ApiError(400, "type must be a string or null")
    marked = await request.app[STORE].mark_all_read(user_id, type_, now_ms())
    if marked is None:
        raise user_gone()
    return json_response({"marked": marked})


@callers("user")
async def set_read(request: web.Request) -> web.Response:
    user_id = request[CALLER].user_id
    notification_id = path_uuid(request, NOT_FOUND)
    read = parse_optional_json_object(await request.read()).get("read", True)
    if not isinstance(read, bool):
        raise ApiError(400, "read must be true or false")
    found = await request.app[STORE].set_read(user_id, notification_id, read, now_ms())
    if found is Missing.NO_USER:
        raise user_gone()
    if found is Missing.NOT_FOUND:
        raise ApiError(404, NOT_FOUND)
    return json_response({"notification": notification_json(found)})


@callers("user")
async def delete_notification(request: web.Request) -> web.Response:
    user_id = request[CALLER].user_id
    notification_id = path_uuid(request, NOT_FOUND)
    result = await request.app[STORE].delete_notification(user_id, notification_id, now_ms())
    if result is DeleteResult.NO_USER:
        raise user_gone()
    if result is DeleteResult.NOT_FOUND:
        raise ApiError(404, NOT_FOUND)
    return json_response({"id": notification_id})


# The fixed paths are plain resources, which aiohttp matches before the `{id}` pattern; a
# method they lack falls through to `{id}`, where a name that is not a uuid is a 404.
routes = [
    web.get("/v1/notifications", list_notifications, allow_head=False),
    web.get("/v1/notifications/unread-count", unread_count, allow_head=False),
    web.post("/v1/notifications/mark-all-read", mark_all_read),
    web.patch("/v1/notifications/{id:[^/]+}", set_read),
    web.delete("/v1/notifications/{id:[^/]+}", delete_notification),
]
