"""The server's HTTP/1 connections: aiohttp's protocol with the server's own rules on top.

Owns what happens before a request reaches the app or when it cannot: a request head must
arrive within the header timeout (counted from the connection's opening, or from the first
byte of a later request), and while a request body is incomplete the client must send
something at least every body timeout (nginx's client_header_timeout and client_body_timeout);
a late head or body is answered 408 and the connection closed. The errors aiohttp's parser
answers itself (a line or header over its limit, a NUL in a header, garbage) are JSON
`{"error"}` with a fitting status (400, 414, 431) instead of plain text, and are logged as the
client's mistake (debug), never as a server error with a traceback. It must not know routes,
credentials or the store.

It is the one module that relies on aiohttp's protocol internals, each checked at import (an
aiohttp release without them fails here, naming the internal, rather than serving without its
timeouts): `RequestHandler`'s `_waiter` (the protocol waits for a request head),
`_messages` (the queue of parsed heads, where aiohttp itself puts its parse errors) and
`_request_count` (heads parsed), and `web_protocol._ErrInfo` (a parse error in that queue).
"""

import asyncio
import dataclasses
import inspect
import logging
import re
from http import HTTPStatus

import aiohttp
from aiohttp import web, web_protocol
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.streams import EMPTY_PAYLOAD

from owlmetry.http.errors import ApiError, error_response

log = logging.getLogger("owlmetry.http")

# nginx's 8 KiB header buffers less the CRLF; set here, not left to aiohttp's defaults.
MAX_LINE_BYTES = 8190
MAX_FIELD_BYTES = 8190
MAX_HEADERS = 128
LIMITS = {"max_line_size": MAX_LINE_BYTES, "max_field_size": MAX_FIELD_BYTES,
          "max_headers": MAX_HEADERS}
DEFAULT_TIMEOUT_S = 60  # nginx's default for both

# A request line as aiohttp's pure-Python parser reports it (method, space); the C parser
# reports the request target alone: origin-form, `*`, or absolute-form.
REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ |/|\*|[A-Za-z][A-Za-z0-9+.-]*://")


@dataclasses.dataclass(frozen=True)
class Timeouts:
    header_s: float = DEFAULT_TIMEOUT_S
    body_s: float = DEFAULT_TIMEOUT_S


class RequestBodyTimeout(ApiError, TimeoutError):
    """What reading a body that stopped arriving raises: an ApiError for the error middleware
    to answer, and a TimeoutError for aiohttp, which may still be draining that body after an
    answer (its lingering read) and ends that quietly on a TimeoutError only."""

    def __init__(self, seconds: float):
        super().__init__(408, f"The request body stopped arriving (nothing for {seconds:g} s)")


class RequestHeadTimeout(BadHttpMessage):
    pass


def check_internals() -> None:
    version = aiohttp.__version__
    slots = set(getattr(web_protocol.RequestHandler, "__slots__", ()))
    for name in ("_waiter", "_messages", "_request_count"):
        if name not in slots:
            raise ImportError(f"aiohttp {version}: RequestHandler.{name} is gone; "
                              "owlmetry/http/protocol.py needs it")
    fields = [field.name for field in getattr(web_protocol._ErrInfo, "__attrs_attrs__", ())]
    if fields[:3] != ["status", "exc", "message"]:
        raise ImportError(f"aiohttp {version}: web_protocol._ErrInfo is not (status, exc, "
                          "message); owlmetry/http/protocol.py needs it")
    expected = {"handle_error": ["self", "request", "status", "exc", "message"],
                "finish_response": ["self", "request", "resp", "start_time"],
                "data_received": ["self", "data"]}
    for name, parameters in expected.items():
        found = list(inspect.signature(getattr(web_protocol.RequestHandler, name)).parameters)
        if found != parameters:
            raise ImportError(f"aiohttp {version}: RequestHandler.{name}{tuple(found)} changed; "
                              "owlmetry/http/protocol.py overrides it")


check_internals()


def offends_request_line(exc: LineTooLong, chunk: bytes) -> bool:
    """Whether the line over its limit is the request line (414) rather than a header (431).

    aiohttp reports the first 100 bytes of what overflowed: the request line or target, a
    header line, name or value. Where those bytes are in the chunk that failed, what precedes
    them on their line tells: a method and a space, or a header's name and colon."""
    start = exc.args[0] if exc.args else b""
    start = bytes(start).removesuffix(b"...") if isinstance(start, bytes | bytearray) else b""
    position = chunk.find(start) if start else -1
    if position > 0:
        before = chunk[chunk.rfind(b"\n", 0, position) + 1:position]
        if before:
            return b":" not in before
    return REQUEST_LINE.match(start) is not None


def answer_for(status: int, exc: BaseException | None, chunk: bytes) -> tuple[int, str]:
    if isinstance(exc, RequestHeadTimeout):
        return 408, str(exc.message)
    if isinstance(exc, LineTooLong):
        if offends_request_line(exc, chunk):
            return 414, f"Request line too long (the limit is {MAX_LINE_BYTES} bytes)"
        return 431, f"Request header too large (the limit is {MAX_FIELD_BYTES} bytes a header)"
    if isinstance(exc, BadHttpMessage) and "Too many headers" in exc.message:
        return 431, f"Too many request headers (the limit is {MAX_HEADERS})"
    if status == 400:
        return 400, "Malformed HTTP request"
    if status == 500:
        return 500, "Internal server error"
    try:
        return status, HTTPStatus(status).phrase
    except ValueError:
        return status, "Error"


class GuardedRequestHandler(web_protocol.RequestHandler):
    """aiohttp's protocol with the timeouts and JSON answers described above."""

    def __init__(self, manager, *, timeouts: Timeouts, **kwargs):
        super().__init__(manager, **kwargs)
        self.timeouts = timeouts
        self.head_timer: asyncio.TimerHandle | None = None
        self.head_started = False  # bytes of a head arrived (a silent connection is just closed)
        self.body: aiohttp.StreamReader | None = None  # the body still arriving
        self.body_timer: asyncio.TimerHandle | None = None
        self.body_timed_out = False
        self.last_read = 0.0
        self.failed_chunk = b""  # the bytes a parse error came from, to name its status

    def waiting_for_head(self) -> bool:
        return self._waiter is not None and not self._waiter.done()

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.last_read = self._loop.time()
        self.head_timer = self._loop.call_later(self.timeouts.header_s, self.head_timed_out)

    def connection_lost(self, exc) -> None:
        for timer in (self.head_timer, self.body_timer):
            if timer is not None:
                timer.cancel()
        self.head_timer = self.body_timer = self.body = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        heads = self._request_count
        super().data_received(data)  # data is b"" when aiohttp re-parses what it buffered
        if data:
            self.last_read = self._loop.time()
        if self._request_count != heads:
            self.head_started = False
            if self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None
            message, payload = self._messages[-1] if self._messages else (None, None)
            if isinstance(message, web_protocol._ErrInfo):
                self.failed_chunk = data
            elif payload is not None and not payload.is_eof():
                self.body = payload
                if self.body_timer is None:
                    self.body_timer = self._loop.call_at(
                        self.last_read + self.timeouts.body_s, self.body_check)
        elif data and (self.body is None or self.body.is_eof()):  # a head's bytes, not a body's
            self.body = None
            self.head_started = True
            if self.head_timer is None:
                self.head_timer = self._loop.call_later(self.timeouts.header_s,
                                                        self.head_timed_out)

    def head_timed_out(self) -> None:
        self.head_timer = None
        if not self.waiting_for_head():
            return
        if not self.head_started:
            self.force_close()
            return
        # Queued as aiohttp queues its own parse errors, so the answer goes through
        # handle_error below (and the access log), then the connection closes.
        timeout = RequestHeadTimeout(
            f"The request head did not arrive in time (the limit is {self.timeouts.header_s:g} s)")
        self._messages.append(
            (web_protocol._ErrInfo(status=408, exc=timeout, message=timeout.message), EMPTY_PAYLOAD))
        self._waiter.set_result(None)

    def body_check(self) -> None:
        self.body_timer = None
        body = self.body
        if body is None or body.is_eof() or self.transport is None:
            self.body = None
            return
        due = self.last_read + self.timeouts.body_s
        if self._loop.time() < due:
            self.body_timer = self._loop.call_at(due, self.body_check)
            return
        self.body = None
        self.body_timed_out = True
        self.close()  # read nothing more; the connection ends after the answer
        body.set_exception(RequestBodyTimeout(self.timeouts.body_s))
        body.feed_eof()  # no lingering read of a body that is not coming

    async def finish_response(self, request, resp, start_time):
        if self.body_timed_out and isinstance(resp, web.StreamResponse) and not resp.prepared:
            resp.force_close()
        return await super().finish_response(request, resp, start_time)

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        status, text = answer_for(status, exc, self.failed_chunk)
        self.failed_chunk = b""
        if status >= 500:
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
        else:
            log.debug("answered %s to a malformed or late request from %s: %s",
                      status, request.remote, type(exc).__name__)
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was under way; the error cannot be sent")
        response = error_response(status, text)
        response.force_close()
        return response


class Server(web.Server):
    """aiohttp's server whose connections are `GuardedRequestHandler`s."""

    def __init__(self, handler, *, timeouts: Timeouts, **kwargs):
        self.timeouts = timeouts
        self.handler_kwargs = {name: value for name, value in kwargs.items()
                               if name not in ("request_factory", "handler_cancellation", "loop")}
        super().__init__(handler, **kwargs)

    def __call__(self) -> GuardedRequestHandler:
        return GuardedRequestHandler(self, loop=asyncio.get_running_loop(),
                                     timeouts=self.timeouts, **self.handler_kwargs)
