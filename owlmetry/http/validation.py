"""Request checks more than one route module shares: JSON bodies and ids in paths.

Owns what a request body or path id must look like before a route looks inside it; every
failure is an `ApiError` the error middleware renders. Route-specific field rules stay with
their routes, and nothing here touches the store.
"""

import re

import orjson

from owlmetry.http.errors import ApiError

UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def parse_json_object(raw: bytes) -> dict:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "Request body must be valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object")
    return body


def parse_optional_json_object(raw: bytes) -> dict:
    """`parse_json_object`, except that an empty body (or only whitespace) is `{}`."""
    return parse_json_object(raw) if raw.strip() else {}
