"""Scheduled notifications at the producer's door: `send_at` on `POST /v1/notifications`, and
`POST /v1/notifications/{id}/cancel` (server API keys only).

Owns what a valid `send_at` is (an ISO 8601 time with a UTC offset, not in the past beyond a
minute's clock skew, at most SCHEDULE_HORIZON_DAYS ahead; a time past since is `SendAtPast`, which a
retry under an `Idempotency-Key` may overrule) and the cancel route's answers. Holding
and releasing is `owlmetry.notify.releaser`'s; the rules of cancelling (only before the release
has started) are the store's, which applies them atomically.
"""

from datetime import UTC, datetime, timedelta

from aiohttp import web

from owlmetry.clock import iso_ms
from owlmetry.http.auth import callers
from owlmetry.http.context import CLOCK, STORE
from owlmetry.http.errors import ApiError, json_response
from owlmetry.http.validation import path_uuid

DAY_MS = 24 * 60 * 60 * 1000
# A `send_at` this far in the past is taken as "now" (the producer's clock and ours differ, the
# request took a while): it is released at once. Earlier than that is a mistake, refused.
SEND_AT_TOLERANCE_MS = 60_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FORMAT_HINT = "an ISO 8601 time with a UTC offset, like 2026-12-24T09:00:00+01:00 or ...Z"
NOT_FOUND = "Notification not found"
STARTED = "Notification delivery has already started; it can no longer be cancelled"


class SendAtPast(ApiError):
    """A `send_at` past the tolerance: a 400, unless the request is a retry of one accepted in
    its time (the producer route decides)."""

    def __init__(self, send_at: int, now: int):
        super().__init__(400, f"send_at is in the past (now is {iso_ms(now)})")
        self.send_at = send_at


def parse_send_at(body: dict, now: int, horizon_days: int) -> int | None:
    """The body's `send_at` in epoch milliseconds; None when absent or null (send now)."""
    value = body.get("send_at")
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"send_at must be {FORMAT_HINT}")
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ApiError(400, f"send_at must be {FORMAT_HINT}") from None
    if when.tzinfo is None:
        raise ApiError(400, f"send_at must have a UTC offset: {FORMAT_HINT}")
    send_at = (when - EPOCH) // timedelta(milliseconds=1)
    if send_at < now - SEND_AT_TOLERANCE_MS:
        raise SendAtPast(send_at, now)
    if send_at > now + horizon_days * DAY_MS:
        raise ApiError(400, f"send_at must be at most {horizon_days} days ahead "
                            "(SCHEDULE_HORIZON_DAYS)")
    return send_at


@callers("server")
async def cancel_notification(request: web.Request) -> web.Response:
    """200 with the notification's state once cancelled (again: the same answer); 409 once its
    release has started or it was never scheduled; 404 for an id that names nothing."""
    notification_id = path_uuid(request, NOT_FOUND)
    state = await request.app[STORE].cancel_scheduled(notification_id, request.app[CLOCK]())
    if state is None:
        raise ApiError(404, NOT_FOUND)
    if state.started or state.cancelled_at is None:
        raise ApiError(409, STARTED)
    return json_response({"id": notification_id, "state": "cancelled",
                          "send_at": iso_ms(state.send_at),
                          "cancelled_at": iso_ms(state.cancelled_at)})


routes = [web.post("/v1/notifications/{id:[^/]+}/cancel", cancel_notification)]
