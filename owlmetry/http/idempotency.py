"""The `Idempotency-Key` header of POST /v1/notifications: its rules, and the answers of
`owlmetry.idempotency`'s outcomes.

A key is 1 to 255 printable ASCII characters, sent once; anything else is a 400 before the body
is read. The answer replayed from a stored one carries `Idempotent-Replayed: true`. Must not
hold the protocol itself (`owlmetry.idempotency`) nor the route's rules (`producer`).
"""

from aiohttp import web

from owlmetry.http.context import CALLER, CONFIG, STORE
from owlmetry.http.errors import ApiError, error_response, json_response
from owlmetry.idempotency import (
    HoldLost,
    Keyed,
    KeyReused,
    StillInProgress,
    Timings,
    Work,
    answer_keyed,
    on_record,
    request_hash,
)

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
RETRY_AFTER_S = 1


def idempotency_key(request: web.Request) -> str | None:
    """The request's key; None without the header."""
    values = request.headers.getall(HEADER, [])
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(400, f"{HEADER} may be sent once")
    key = values[0]
    if not 0 < len(key) <= MAX_KEY_LENGTH or not all(" " <= c <= "~" for c in key):
        raise ApiError(400, f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    return key


async def key_on_record(request: web.Request, key: str) -> bool:
    """Whether this API key used `key` before (and it has not expired), with whatever body."""
    return await on_record(request.app[STORE], request[CALLER].key_id, key,
                           Timings.of(request.app[CONFIG]))


async def idempotent_answer(request: web.Request, key: str, body: dict,
                            work: Work) -> web.Response:
    """The 202 of the request under `key` (this API key's), made by `work` once whatever the
    retries."""
    keyed = Keyed(request[CALLER].key_id, key, request_hash(body))
    try:
        answer, replayed = await answer_keyed(request.app[STORE], keyed, work,
                                              Timings.of(request.app[CONFIG]))
    except KeyReused:
        raise ApiError(409, f"This {HEADER} was used with a different request body; a new "
                            "request needs a new key") from None
    except StillInProgress:
        return error_response(409, f"A request with this {HEADER} is still in progress; retry "
                                   "later", {"Retry-After": str(RETRY_AFTER_S)})
    except HoldLost:
        return error_response(503, f"The request could not be finished now; retry it with the "
                                   f"same {HEADER}", {"Retry-After": str(RETRY_AFTER_S)})
    response = json_response(answer, status=202)
    if replayed:
        response.headers[REPLAYED] = "true"
    return response
