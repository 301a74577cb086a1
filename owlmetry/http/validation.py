"""Request checks more than one route module shares: JSON bodies and ids in paths.

Owns what a request body or path id must look like before a route looks inside it; every
failure is an `ApiError` the error middleware renders. Route-specific field rules stay with
their routes, and nothing here touches the store.
"""

import orjson

from owlmetry.http.errors import ApiError
from owlmetry.ids import normalize_id

NUL_MESSAGE = "Text must not contain NUL characters (\\u0000)"


def parse_json_object(raw: bytes) -> dict:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "Request body must be valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object")
    # A NUL cannot be stored as text (PostgreSQL refuses it, SQLite cuts the text short there).
    # Only a body that spells one out is walked.
    if b"\\u0000" in raw and contains_nul(body):
        raise ApiError(400, NUL_MESSAGE)
    return body


def contains_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(key) or contains_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(contains_nul(item) for item in value)
    return False


def query_text(request, name: str) -> str | None:
    """A query parameter that will be compared with stored text."""
    value = request.query.get(name)
    if value is not None and "\x00" in value:
        raise ApiError(400, NUL_MESSAGE)
    return value


def parse_optional_json_object(raw: bytes) -> dict:
    """`parse_json_object`, except that an empty body (or only whitespace) is `{}`."""
    return parse_json_object(raw) if raw.strip() else {}


def path_uuid(request, not_found: str) -> str:
    """The `{id}` of the path as rows store it (`normalize_id`); a 404 with `not_found` when it
    is not a uuid (then it names nothing)."""
    row_id = normalize_id(request.match_info["id"])
    if row_id is None:
        raise ApiError(404, not_found)
    return row_id
