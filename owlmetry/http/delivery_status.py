"""Delivery status for producers (server API keys only):
`GET /v1/notifications/{id}/deliveries`, and the same for up to 1,000 notifications at once,
`GET /v1/notifications/deliveries?ids=a,b,...` (or, for more ids than a URL holds,
`POST /v1/notifications/deliveries` with `{"ids": [...]}`).

Owns these routes' query rules, the JSON shape of a notification's status, of a device's
answer and of a removed device's audit record (which `owlmetry devices removed` prints too),
and the cursor: an opaque string (base64url of the last device's notification and device ids)
for the keyset the store pages by. What the answers mean is the dispatcher's; the rows are the
store's (`owlmetry/store/delivery_status.py`).
"""

import base64
import binascii
import re

from aiohttp import web

from owlmetry.clock import iso_ms
from owlmetry.http.auth import callers
from owlmetry.http.context import STORE
from owlmetry.http.errors import ApiError, json_response
from owlmetry.http.validation import parse_json_object, path_uuid
from owlmetry.ids import UUID_TEXT, normalize_id
from owlmetry.store import (
    RECORDED_OUTCOMES,
    ChannelStatus,
    DeliveryStatus,
    DeviceRemoval,
    DeviceStatus,
    NotificationStatus,
)
from owlmetry.store.delivery_status import RETRYING

MAX_IDS = 1_000
DEFAULT_LIMIT = 500
MAX_LIMIT = 1_000
LIMIT_TEXT = re.compile(r"[0-9]{1,9}")
NOT_FOUND = "Notification not found"
COUNTED = (*(outcome.value for outcome in RECORDED_OUTCOMES), RETRYING)


def time_or_none(ms: int | None) -> str | None:
    return iso_ms(ms) if ms is not None else None


def channel_json(channel: ChannelStatus) -> dict:
    return {
        "channel": channel.channel,
        "status": channel.status.value,
        "reason": channel.reason,
        "attempts": channel.attempts,
        "created_at": iso_ms(channel.created_at),
        "finished_at": time_or_none(channel.finished_at),
        "next_attempt_at": time_or_none(channel.next_attempt_at),
        "devices": {outcome: channel.devices.get(outcome, 0) for outcome in COUNTED},
    }


def notification_json(status: NotificationStatus) -> dict:
    return {"id": status.id, "user_id": status.user_id, "created_at": iso_ms(status.created_at),
            "channels": [channel_json(channel) for channel in status.channels]}


def removal_json(removal: DeviceRemoval) -> dict:
    """A removed device's audit record; the token only as its first characters."""
    return {
        "device_id": removal.device_id,
        "user_id": removal.user_id,
        "channel": removal.channel,
        "platform": removal.platform,
        "environment": removal.environment,
        "token": removal.token_hint,
        "notification_id": removal.notification_id,
        "status": removal.status,
        "reason": removal.reason,
        "provider_timestamp": time_or_none(removal.provider_at),
        "removed_at": iso_ms(removal.removed_at),
    }


def device_json(device: DeviceStatus) -> dict:
    return {
        "notification_id": device.notification_id,
        "device_id": device.device_id,
        "channel": device.channel,
        "platform": device.platform,
        "environment": device.environment,
        "outcome": device.outcome,
        "status": device.status,
        "reason": device.reason,
        "apns_id": device.apns_id,
        "attempts": device.attempts,
        "first_attempt_at": time_or_none(device.first_attempt_at),
        "answered_at": iso_ms(device.answered_at),
        "removal": removal_json(device.removal) if device.removal is not None else None,
    }


def cursor_of(device: DeviceStatus) -> str:
    text = f"{device.notification_id}|{device.device_id}".encode()
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def parse_cursor(text: str | None) -> tuple[str, str] | None:
    """The keyset a cursor from `cursor_of` names (None for none); 400 for anything else."""
    if text is None:
        return None
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(400, "Invalid cursor") from None
    notification_id, separator, device_id = decoded.partition("|")
    if not separator or not UUID_TEXT.fullmatch(notification_id) \
            or not UUID_TEXT.fullmatch(device_id):
        raise ApiError(400, "Invalid cursor")
    return notification_id, device_id


def parse_limit(value) -> int:
    """`limit`, the most devices a page lists: from the query's text or a body's number."""
    if value is None:
        return DEFAULT_LIMIT
    if isinstance(value, str) and LIMIT_TEXT.fullmatch(value):
        value = int(value)
    if type(value) is not int or not 1 <= value <= MAX_LIMIT:
        raise ApiError(400, f"limit must be an integer from 1 to {MAX_LIMIT}")
    return value


def parse_ids(given: list) -> tuple[list[str], dict[str, str]]:
    """The ids as sent, once each, in order, and the stored form of each that is a uuid."""
    if not given or len(given) > MAX_IDS:
        raise ApiError(400, f"ids must name from 1 to {MAX_IDS} notifications")
    if not all(isinstance(each, str) and each for each in given):
        raise ApiError(400, "ids must be non-empty strings")
    distinct = list(dict.fromkeys(given))
    normalized = {each: uid for each in distinct if (uid := normalize_id(each)) is not None}
    return distinct, normalized


async def page_of(request: web.Request, found: dict[str, NotificationStatus], cursor: str | None,
                  limit) -> dict:
    """One page of the devices of the notifications `found`, with its cursor."""
    after = parse_cursor(cursor)
    limit = parse_limit(limit)
    pending = any(channel.status == DeliveryStatus.PENDING
                  for status in found.values() for channel in status.channels)
    # One row more than the page tells whether another page follows.
    devices = await request.app[STORE].device_statuses(list(found), after, limit + 1, pending)
    page, has_more = devices[:limit], len(devices) > limit
    return {"devices": [device_json(device) for device in page],
            "cursor": cursor_of(page[-1]) if has_more else None, "has_more": has_more}


@callers("server")
async def one_notification(request: web.Request) -> web.Response:
    notification_id = path_uuid(request, NOT_FOUND)
    found = await request.app[STORE].notification_statuses([notification_id])
    if notification_id not in found:
        raise ApiError(404, NOT_FOUND)
    page = await page_of(request, found, request.query.get("cursor"),
                         request.query.get("limit"))
    return json_response({"notification": notification_json(found[notification_id]), **page})


async def many_notifications(request: web.Request, given: list, cursor, limit) -> web.Response:
    distinct, normalized = parse_ids(given)
    found = await request.app[STORE].notification_statuses(list(dict.fromkeys(
        normalized.values())))
    known = [uid for uid in dict.fromkeys(normalized.values()) if uid in found]
    page = await page_of(request, found, cursor, limit)
    return json_response({
        "notifications": [notification_json(found[uid]) for uid in known],
        "unknown_ids": [each for each in distinct if normalized.get(each) not in found],
        **page,
    })


@callers("server")
async def many_by_query(request: web.Request) -> web.Response:
    text = request.query.get("ids")
    if text is None:
        raise ApiError(400, "ids is required: notification ids separated by commas")
    return await many_notifications(request, [each.strip() for each in text.split(",")],
                                    request.query.get("cursor"), request.query.get("limit"))


@callers("server")
async def many_by_body(request: web.Request) -> web.Response:
    body = parse_json_object(await request.read())
    given = body.get("ids")
    if not isinstance(given, list):
        raise ApiError(400, "ids is required and must be an array of notification ids")
    cursor = body.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise ApiError(400, "Invalid cursor")
    return await many_notifications(request, given, cursor, body.get("limit"))


routes = [
    web.get("/v1/notifications/deliveries", many_by_query, allow_head=False),
    web.post("/v1/notifications/deliveries", many_by_body),
    web.get("/v1/notifications/{id:[^/]+}/deliveries", one_notification, allow_head=False),
]
