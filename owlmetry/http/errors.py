"""JSON errors: every failure leaves the server as `{"error": "<message>"}` with its status.

Owns `ApiError` (what handlers raise) and the middleware that renders it, aiohttp's own HTTP
errors (404, 405, 413, ...) and anything unexpected, which is logged and answered as a bare
500: no traceback or internal detail ever reaches a client.
"""

import logging

import orjson
from aiohttp import web

from owlmetry.redact import mask_path

log = logging.getLogger("owlmetry.http")


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(payload: dict, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def error_response(status: int, message: str, headers=None) -> web.Response:
    response = json_response({"error": message}, status)
    if headers:
        response.headers.update(headers)
    return response


# Every route's, except the producer's, which reads its larger body itself.
MAX_BODY_BYTES = 64 * 1024


def body_too_large(limit: int) -> ApiError:
    size = f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit >> 10} KiB"
    return ApiError(413, f"Request body too large (the limit is {size})")


# aiohttp's reasons are fine messages, except the ones that read oddly in an API.
MESSAGES = {
    404: "Not found",
    405: "Method not allowed",
    413: body_too_large(MAX_BODY_BYTES).message,
}


@web.middleware
async def json_errors(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, MESSAGES.get(exc.status, exc.reason), allow)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, mask_path(request.path))
        return error_response(500, "Internal server error")
