"""The access log: one JSON line per request on the `owlmetry.access` logger (ACCESS_LOG=true).

Owns what a line holds: time (when the request arrived), method, route template, path, status,
duration, client address and scheme (as the app saw them, after `forwarded`), the caller, and
the response size. It plugs into aiohttp's access-log hook rather than being a middleware, so
requests that never reach a handler (a malformed request line) get a line too.
It must never write what could carry a secret: no headers (Authorization, Cookie, Set-Cookie),
no bodies, no query string; long path segments are masked (`redact.mask_path`).
"""

import logging
import sys

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from owlmetry.clock import iso_ms, now_ms
from owlmetry.http.context import CALLER
from owlmetry.http.forwarded import SEEN_AS
from owlmetry.redact import mask_path

LOGGER_NAME = "owlmetry.access"


def route_template(request: web.BaseRequest) -> str | None:
    """`/v1/devices/{id}` for a matched route; None when nothing matched (404, bad request)."""
    try:
        resource = request.match_info.route.resource
    except (AssertionError, AttributeError):  # no routing happened: aiohttp asserts
        return None
    return resource.canonical if resource is not None else None


def body_size(response: web.StreamResponse) -> int:
    # The app answers with whole bodies, whose length is known; `body_length` (what went on
    # the wire, headers included) is the figure for anything streamed.
    length = response.content_length
    return length if length is not None else response.body_length


def access_record(request: web.BaseRequest, response: web.StreamResponse, seconds: float) -> dict:
    seen = request.get(SEEN_AS, request)
    caller = seen.get(CALLER)
    return {
        "time": iso_ms(now_ms() - round(seconds * 1000)),
        "method": request.method,
        "route": route_template(request),
        "path": mask_path(request.path),
        "status": response.status,
        "duration_ms": round(seconds * 1000, 2),
        "client_ip": seen.remote,
        "scheme": seen.scheme,
        "caller": caller.kind if caller else None,
        "user_id": caller.user_id if caller else None,
        "key_id": caller.key_id if caller else None,
        "response_bytes": body_size(response),
    }


class JsonAccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        try:
            line = orjson.dumps(access_record(request, response, time)).decode()
        except Exception:
            # A log line is never worth a failed request; say why once per occurrence.
            self.logger.exception("cannot write an access log line")
            return
        self.logger.info(line)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def runner_options(enabled: bool) -> dict:
    """The keyword arguments for `web.run_app` / `web.AppRunner` that turn the log on or off."""
    if not enabled:
        return {"access_log": None}
    return {"access_log": logging.getLogger(LOGGER_NAME), "access_log_class": JsonAccessLogger}


def write_to_stdout() -> None:
    """Send the lines to stdout as they are, without the level/name prefix of the other logs
    (those go to stderr), so that a collector can read stdout as JSON lines."""
    logger = logging.getLogger(LOGGER_NAME)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
