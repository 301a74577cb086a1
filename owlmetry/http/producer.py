"""The producer route: `POST /v1/notifications` (server API keys only) -> 202 with the ids.

Owns the rules a notification request must meet, including "every channel can carry it"
(an APNs payload over 4 KiB, push options included, is refused here, not discovered per device
later; the push options' own rules are `owlmetry.push_options`'), and which recipients are
users: ids in any spelling `owlmetry.ids.normalize_id` takes; the ones that name no user are
listed in the answer, never dropped in silence. The work itself is the dispatcher's: this
module only validates and enqueues (under an `Idempotency-Key`, once:
`owlmetry.http.idempotency`).
"""

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable

from aiohttp import web

from owlmetry import push_options
from owlmetry.clock import iso_ms
from owlmetry.http import delivery_status
from owlmetry.http.auth import callers
from owlmetry.http.context import CLOCK, CONFIG, DISPATCHER, STORE
from owlmetry.http.errors import ApiError, body_too_large, json_response
from owlmetry.http.idempotency import idempotency_key, idempotent_answer, key_on_record
from owlmetry.http.scheduled import SendAtPast, parse_send_at
from owlmetry.http.validation import parse_json_object
from owlmetry.idempotency import Entries, notify_entries, scheduling, sending, user_ids_of
from owlmetry.ids import normalize_ids
from owlmetry.notify.channels import check_content
from owlmetry.notify.releaser import schedule
from owlmetry.store import NotificationContent, Store

MAX_PRODUCER_BODY_BYTES = 4 * 1024 * 1024
MAX_RECIPIENTS = 50_000
RECIPIENT_SLICE = 1_000
# Slices whose lookups may be out at once: during a fan-out each round trip waits behind the
# answers' writes and the loop's turns (20 ms, against 3 quiet), and 50 of them one after the
# other took a POST of 50,000 a second before its enqueue began (benchmarks/RESULTS.md).
RECIPIENT_READS = 4
TEXT_LIMITS = {"type": 100, "title": 256, "body": 4000, "link": 2048, "team_id": 100}
REQUIRED = ("type", "title")


async def read_body(request: web.Request, limit: int) -> bytes:
    """The body, up to `limit` bytes (this route takes more than the app-wide limit)."""
    if request.content_length is not None and request.content_length > limit:
        raise body_too_large(limit)
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise body_too_large(limit)
    return bytes(body)


def parse_user_ids(body: dict) -> list[str]:
    user_ids = body.get("user_ids")
    if not isinstance(user_ids, list) or not user_ids:
        raise ApiError(400, "user_ids is required and must be a non-empty array of user ids")
    if len(user_ids) > MAX_RECIPIENTS:
        raise ApiError(400, f"user_ids may list at most {MAX_RECIPIENTS} users per request")
    if not all(isinstance(user_id, str) for user_id in user_ids):
        raise ApiError(400, "user_ids must contain only strings")
    return user_ids


async def recipient_entries(user_ids: list[str]) -> Entries:
    """Each entry of `user_ids` once, as sent, with the user id it spells (`normalize_id`), in
    order; a slice at a time, so that a list of 50,000 holds the event loop (and every other
    request) for a few ms at a time."""
    entries: dict[str, str | None] = {}
    for start in range(0, len(user_ids), RECIPIENT_SLICE):
        if start:
            await asyncio.sleep(0)
        entries.update(normalize_ids([given for given in user_ids[start:start + RECIPIENT_SLICE]
                                      if given not in entries]))
    return list(entries.items())


async def known_recipients(store: Store, entries: Entries) -> tuple[list[str], list[str]]:
    """The users `entries` spell that exist, as stored and once each, in order; and the entries
    that name no user, as sent, in order. Looked up a slice at a time, with up to
    RECIPIENT_READS slices' reads under way at once."""
    user_ids = user_ids_of(entries)
    existing: set[str] = set()
    reads: collections.deque[asyncio.Future] = collections.deque()
    try:
        for start in range(0, len(user_ids), RECIPIENT_SLICE):
            reads.append(asyncio.ensure_future(
                store.existing_user_ids(user_ids[start:start + RECIPIENT_SLICE])))
            if len(reads) == RECIPIENT_READS:
                existing |= await reads.popleft()
            else:
                await asyncio.sleep(0)  # the next slice's work in a turn of its own
        while reads:
            existing |= await reads.popleft()
    finally:
        for read in reads:
            read.cancel()
        await asyncio.gather(*reads, return_exceptions=True)
    return ([user_id for user_id in user_ids if user_id in existing],
            [given for given, user_id in entries if user_id not in existing])


def parse_content(body: dict) -> NotificationContent:
    fields = {}
    for name, limit in TEXT_LIMITS.items():
        value = body.get(name)
        if name in REQUIRED:
            if not isinstance(value, str) or not value.strip():
                raise ApiError(400, f"{name} is required and must be a non-empty string")
        elif value is not None and not isinstance(value, str):
            raise ApiError(400, f"{name} must be a string or null")
        if value is not None and len(value) > limit:
            raise ApiError(400, f"{name} must be at most {limit} characters")
        fields[name] = value
    data = body.get("data")
    if data is not None and not isinstance(data, dict):
        raise ApiError(400, "data must be a JSON object or null")
    try:
        options = push_options.parse(body, int(time.time()))
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return NotificationContent(data=data, options=options, **fields)


@callers("server")
async def create_notifications(request: web.Request) -> web.Response:
    key = idempotency_key(request)
    body = parse_json_object(await read_body(request, MAX_PRODUCER_BODY_BYTES))
    user_ids = parse_user_ids(body)
    content = parse_content(body)
    try:
        check_content(content, request.app[CONFIG])
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    now = request.app[CLOCK]()
    try:
        send_at = parse_send_at(body, now, request.app[CONFIG].schedule_horizon_days)
    except SendAtPast as exc:
        # The retry of a request accepted in its time gets that request's answer.
        if key is None or not await key_on_record(request, key):
            raise
        send_at = exc.send_at
    # An immediate send holds the claims from its first read of the database on (the claims'
    # round trips slowed a POST of 50,000 several times: benchmarks/RESULTS.md, "where a POST
    # of 50,000 waits").
    holding = (request.app[DISPATCHER].producing() if send_at is None
               else contextlib.nullcontext())
    async with holding:
        return await accept(request, key, body, user_ids, content, now, send_at)


async def accept(request: web.Request, key: str | None, body: dict, user_ids: list[str],
                 content: NotificationContent, now: int, send_at: int | None) -> web.Response:
    """The valid request's recipients held for `send_at` (checked first), or enqueued now (the
    enqueue finds who is a user: a lookup of every recipient before it was a tenth of a
    PostgreSQL POST of 50,000 during a fan-out, benchmarks/RESULTS.md, session 16)."""
    store = request.app[STORE]
    entries = await recipient_entries(user_ids)
    if send_at is not None:  # held until then (http/scheduled.py)
        recipients, unknown = await known_recipients(store, entries)

        def held(users: list[str], content_id: str | None = None) -> Awaitable[list[str]]:
            return schedule(store, users, content, send_at, now, content_id)
        if key is not None:
            return await idempotent_answer(request, key, body, scheduling(
                store, recipients, unknown, held, iso_ms(send_at)))
        ids = await held(recipients) if recipients else []
        return json_response({"notification_ids": ids, "unknown_user_ids": unknown,
                              "send_at": iso_ms(send_at)}, status=202)
    dispatcher = request.app[DISPATCHER]
    if key is not None:
        return await idempotent_answer(request, key, body, sending(
            store, entries,
            lambda users, content_id: dispatcher.enqueue_found(users, content, content_id)))
    answer = await notify_entries(entries, lambda users: dispatcher.enqueue_found(users, content))
    return json_response(answer, status=202)


routes = [web.post("/v1/notifications", create_notifications)]
# What producers ask after the 202 (its own module).
routes += delivery_status.routes
